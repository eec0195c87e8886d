//! Runs after ingest: claiming due timers, loading and committing activations, releasing a
//! claim, the scheduler's next wake-up, and listing and inspecting runs.

use super::rows::{
    and_equals, fetch_newest_first, journal_from_row, parse_json, parse_run_status, run_columns,
    run_from_row,
};
use super::{SqliteStore, live_statuses};
use crate::clock::{Clock, Timestamp};
use crate::contacts::normalize_email;
use crate::ids::{RunId, TenantId};
use crate::journeys::{RunInput, RunStatus};
use crate::store::{
    ActivationCommit, ActivationInput, ClaimedRun, EmailStatus, Lease, RunFilter, RunRecord,
    RunTransition, StoreResult,
};
use sqlx::{QueryBuilder, Row, Sqlite};

/// Rows per multi-row INSERT (well under SQLite's bound-variable limit).
const INSERT_CHUNK: usize = 200;

/// The run, its input and its journal, read in one snapshot; scoped to `tenant` if given.
pub(super) async fn activation(
    store: &SqliteStore,
    tenant: Option<&TenantId>,
    run_id: &RunId,
) -> StoreResult<Option<ActivationInput>> {
    let mut tx = store.pool.begin().await?;
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        ", input FROM runs WHERE id = ?"
    ))
    .bind(run_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let run = run_from_row(&row)?;
    if tenant.is_some_and(|t| *t != run.tenant_id) {
        tx.rollback().await?;
        return Ok(None);
    }
    let input: RunInput = parse_json("run input", row.try_get::<&str, _>("input")?)?;
    let journal = sqlx::query(
        "SELECT seq, kind, request, response, recorded_at FROM journal \
         WHERE run_id = ? ORDER BY seq",
    )
    .bind(run_id.as_str())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(journal_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().await?;
    Ok(Some(ActivationInput {
        run,
        input,
        journal,
    }))
}

pub(super) async fn claim_due_runs(
    store: &SqliteStore,
    now: Timestamp,
    lease: &Lease,
    limit: u32,
) -> StoreResult<Vec<ClaimedRun>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (_writer, mut tx) = store.legacy_write().await?;
    // Timers of runs that are no longer live are never claimed (whoever ends a run outside
    // an activation should delete its timer in the same transaction).
    let rows = sqlx::query(concat!(
        "UPDATE timers SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 \
         WHERE run_id IN (\
             SELECT t.run_id FROM timers t JOIN runs r ON r.id = t.run_id \
             WHERE t.due_at <= ? AND (t.lease_until IS NULL OR t.lease_until < ?) \
             AND r.status IN ",
        live_statuses!(),
        " ORDER BY t.due_at, t.run_id LIMIT ?) \
         RETURNING run_id, tenant_id, due_at"
    ))
    .bind(&lease.owner)
    .bind(lease.until_real.0)
    .bind(now.0)
    .bind(lease.now_real.0)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("due_at")?,
                ClaimedRun {
                    run_id: RunId(row.try_get("run_id")?),
                    tenant_id: TenantId(row.try_get("tenant_id")?),
                },
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING does not keep the subquery's order.
    claimed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.run_id.cmp(&b.1.run_id)));
    Ok(claimed.into_iter().map(|(_, run)| run).collect())
}

pub(super) async fn commit_activation(
    store: &SqliteStore,
    commit: ActivationCommit,
) -> StoreResult<bool> {
    let (_writer, mut tx) = store.legacy_write().await?;
    let run_id = commit.run_id.as_str();
    let tenant = commit.tenant_id.as_str();

    let state = sqlx::query(
        "SELECT r.status, t.lease_owner FROM runs r LEFT JOIN timers t ON t.run_id = r.id \
         WHERE r.id = ? AND r.tenant_id = ?",
    )
    .bind(run_id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let still_ours = match state {
        None => false,
        Some(row) => {
            let status = parse_run_status(row.try_get("status")?)?;
            let owner: Option<String> = row.try_get("lease_owner")?;
            !status.is_terminal() && owner.as_deref() == Some(commit.lease_owner.as_str())
        }
    };
    if !still_ours {
        tx.rollback().await?;
        return Ok(false);
    }

    for chunk in commit.journal.chunks(INSERT_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO journal (run_id, seq, tenant_id, kind, request, response, \
             recorded_at) ",
        );
        insert.push_values(chunk, |mut row, entry| {
            row.push_bind(run_id)
                .push_bind(i64::from(entry.seq))
                .push_bind(tenant)
                .push_bind(entry.kind.as_str())
                .push_bind(entry.request.to_string())
                .push_bind(entry.response.to_string())
                .push_bind(entry.recorded_at.0);
        });
        insert.build().execute(&mut *tx).await?;
    }

    // A new email is deliverable at once: `next_attempt_at` is on the real clock.
    let queued_at = Clock::real_now().0;
    for chunk in commit.emails.chunks(INSERT_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO emails (id, tenant_id, run_id, step_seq, contact_key, to_address, \
             template, subject, body, status, attempts, created_at, next_attempt_at) ",
        );
        insert.push_values(chunk, |mut row, email| {
            row.push_bind(email.id.as_str())
                .push_bind(email.tenant_id.as_str())
                .push_bind(email.run_id.as_str())
                .push_bind(i64::from(email.step_seq))
                .push_bind(email.contact_key.as_str())
                .push_bind(normalize_email(&email.to).unwrap_or_else(|| email.to.clone()))
                .push_bind(email.template.as_str())
                .push_bind(email.subject.as_str())
                .push_bind(email.body.as_str())
                .push_bind(EmailStatus::Queued.as_str())
                .push_bind(0_i64)
                .push_bind(email.created_at.0)
                .push_bind(queued_at);
        });
        insert.build().execute(&mut *tx).await?;
    }

    match &commit.transition {
        RunTransition::Waiting { wake_at } => {
            sqlx::query(
                "UPDATE runs SET status = 'waiting', wake_at = ?, updated_at = ?, \
                 activations = activations + 1, error = NULL WHERE id = ?",
            )
            .bind(wake_at.0)
            .bind(commit.now.0)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE timers SET due_at = ?, lease_owner = NULL, lease_until = NULL, \
                 attempts = 0 WHERE run_id = ?",
            )
            .bind(wake_at.0)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        }
        RunTransition::Completed | RunTransition::Failed { .. } => {
            let (status, error) = match &commit.transition {
                RunTransition::Failed { error } => (RunStatus::Failed, Some(error.as_str())),
                _ => (RunStatus::Completed, None),
            };
            sqlx::query(
                "UPDATE runs SET status = ?, error = ?, wake_at = NULL, updated_at = ?, \
                 activations = activations + 1 WHERE id = ?",
            )
            .bind(status.as_str())
            .bind(error)
            .bind(commit.now.0)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM timers WHERE run_id = ?")
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
    }

    tx.commit().await?;
    Ok(true)
}

pub(super) async fn release_run(
    store: &SqliteStore,
    run_id: &RunId,
    lease_owner: &str,
    retry_at: Timestamp,
) -> StoreResult<()> {
    let (_writer, mut tx) = store.legacy_write().await?;
    sqlx::query(
        "UPDATE timers SET lease_owner = NULL, lease_until = NULL, due_at = ? \
         WHERE run_id = ? AND lease_owner = ?",
    )
    .bind(retry_at.0)
    .bind(run_id.as_str())
    .bind(lease_owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn next_due_at(store: &SqliteStore) -> StoreResult<Option<Timestamp>> {
    let now_real = Clock::real_now().0;
    let due: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT MIN(t.due_at) FROM timers t JOIN runs r ON r.id = t.run_id \
         WHERE (t.lease_until IS NULL OR t.lease_until < ?) AND r.status IN ",
        live_statuses!()
    ))
    .bind(now_real)
    .fetch_one(&store.pool)
    .await?;
    Ok(due.map(Timestamp))
}

pub(super) async fn list_runs(
    store: &SqliteStore,
    tenant: &TenantId,
    filter: &RunFilter,
) -> StoreResult<Vec<RunRecord>> {
    let mut query = QueryBuilder::<Sqlite>::new(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE tenant_id = "
    ));
    query.push_bind(tenant.as_str());
    and_equals(&mut query, "journey_id", filter.journey_id.as_deref());
    and_equals(&mut query, "contact_key", filter.contact_key.as_deref());
    and_equals(&mut query, "status", filter.status.map(RunStatus::as_str));
    if filter.live_only {
        query.push(concat!(" AND status IN ", live_statuses!()));
    }
    fetch_newest_first(&store.pool, query, filter.limit, run_from_row).await
}
