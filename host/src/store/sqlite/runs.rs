//! Implements [`crate::store::RunQueue`] and [`crate::store::RunReads`].
//!
//! Runs after ingest: claiming due timers, loading and committing activations, releasing a
//! claim, the scheduler's next wake-up, and listing and inspecting runs.

use super::rows::{
    ListQuery, and_equals, collect, fetch_newest_first, journal_from_row, parse_json,
    parse_run_status,
};
use super::tx::{SqliteTx, run_sync};
use super::usage::add_usage;
use super::{SqliteStore, live_statuses, tenant_not_suspended, tenant_number};
use crate::clock::{Clock, Timestamp};
use crate::ids::{RunId, TenantId};
use crate::journeys::{RunInput, RunStatus};
use crate::store::RunQueue;
use crate::store::RunReads;
use crate::store::flows;
use crate::store::rows::run_columns;
use crate::store::rows::run_from_row;
use crate::store::{
    ActivationCommit, ActivationInput, Lease, RunFilter, RunRecord, RunTransition, StoreResult,
};
use crate::usage::UsageTally;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::sync::Arc;

#[async_trait]
impl RunReads for SqliteStore {
    /// The tenant's run, its input and its journal, read in one snapshot.
    async fn run_detail(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>> {
        let tenant = tenant.clone();
        let run_id = run_id.clone();
        self.read(move |tx| read_activation(tx, &tenant, &run_id))
            .await
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        filter: &RunFilter,
    ) -> StoreResult<Vec<RunRecord>> {
        let mut query = ListQuery::new(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE tenant_id = "
        ));
        query.push_bind(tenant.as_str().to_owned());
        and_equals(&mut query, "journey_id", filter.journey_id.as_deref());
        and_equals(&mut query, "contact_key", filter.contact_key.as_deref());
        and_equals(&mut query, "status", filter.status.map(RunStatus::as_str));
        if filter.live_only {
            query.push(concat!(" AND status IN ", live_statuses!()));
        }
        let limit = filter.limit;
        self.read(move |tx| fetch_newest_first(tx, query, limit, |row| run_from_row(row)))
            .await
    }
}

/// [`activation`] inside a transaction the caller holds (a read, or a claim's write).
pub(super) fn read_activation(
    tx: &Connection,
    tenant: &TenantId,
    run_id: &RunId,
) -> StoreResult<Option<ActivationInput>> {
    let mut statement = tx.prepare_cached(concat!(
        "SELECT ",
        run_columns!(),
        ", input FROM runs WHERE id = ?1 AND tenant_id = ?2"
    ))?;
    let mut rows = statement.query([run_id.as_str(), tenant.as_str()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let run = run_from_row(row)?;
    let input: RunInput = parse_json("run input", &row.get::<_, String>("input")?)?;
    let mut statement = tx.prepare_cached(
        "SELECT seq, kind, request, response, recorded_at FROM journal \
         WHERE run_id = ?1 ORDER BY seq",
    )?;
    let journal = collect(statement.query([run_id.as_str()])?, journal_from_row)?;
    Ok(Some(ActivationInput {
        run,
        input,
        journal,
    }))
}

#[async_trait]
impl RunQueue for SqliteStore {
    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
        default_in_flight: u32,
    ) -> StoreResult<Vec<ActivationInput>> {
        let lease = lease.clone();
        self.write_without_memberships(move |tx| {
            run_sync(flows::fair_claim::claim_due_runs(
                &mut SqliteTx::new(tx),
                now,
                &lease,
                limit,
                default_in_flight,
            ))
        })
        .await
    }

    /// Group commit: every activation in one write transaction, each checked and written on its
    /// own (a lost lease skips only that one); the ones written are counted in their tenants'
    /// usage last.
    async fn commit_activations(&self, commits: Arc<[ActivationCommit]>) -> StoreResult<Vec<bool>> {
        self.write_without_memberships(move |tx| {
            let mut usage = UsageTally::default();
            let mut written = Vec::with_capacity(commits.len());
            for commit in commits.iter() {
                let ours = commit_one(tx, commit)?;
                if ours {
                    usage.activation(&commit.tenant_id, commit.now, commit.guest_cpu);
                }
                written.push(ours);
            }
            add_usage(tx, &usage)?;
            Ok(written)
        })
        .await
    }

    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        let run_id = run_id.clone();
        let lease_owner = lease_owner.to_owned();
        self.write_without_memberships(move |tx| {
            tx.prepare_cached(
                "UPDATE timers SET lease_owner = NULL, lease_until = NULL, due_at = ?1 \
                     WHERE run_id = ?2 AND lease_owner = ?3",
            )?
            .execute(params![retry_at.0, run_id.as_str(), lease_owner])?;
            Ok(())
        })
        .await
    }

    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>> {
        let now_real = Clock::real_now().0;
        let due: Option<i64> = self
            .read(move |tx| {
                Ok(tx
                    .prepare_cached(concat!(
                        "SELECT MIN(t.due_at) FROM timers t JOIN runs r ON r.id = t.run_id \
                         WHERE (t.lease_until IS NULL OR t.lease_until < ?1) AND r.status IN ",
                        live_statuses!(),
                        // A suspended tenant's due timers would wake the scheduler in a loop.
                        " AND ",
                        tenant_not_suspended!("t.tenant_id")
                    ))?
                    .query_row([now_real], |row| row.get(0))?)
            })
            .await?;
        Ok(due.map(Timestamp))
    }
}

fn commit_one(tx: &Transaction<'_>, commit: &ActivationCommit) -> StoreResult<bool> {
    let run_id = commit.run_id.as_str();
    let tenant = commit.tenant_id.as_str();

    let state = tx
        .prepare_cached(
            "SELECT r.status, t.lease_owner FROM runs r \
                     LEFT JOIN timers t ON t.run_id = r.id \
                     WHERE r.id = ?1 AND r.tenant_id = ?2",
        )?
        .query_row(params![run_id, tenant], |row| {
            Ok((
                row.get::<_, String>("status")?,
                row.get::<_, Option<String>>("lease_owner")?,
            ))
        })
        .optional()?;
    let still_ours = match state {
        None => false,
        Some((status, owner)) => {
            !parse_run_status(&status)?.is_terminal()
                && owner.as_deref() == Some(commit.lease_owner.as_str())
        }
    };
    if !still_ours {
        // Nothing was written: committing the empty transaction changes nothing.
        return Ok(false);
    }

    let mut insert = tx.prepare_cached(
        "INSERT INTO journal (run_id, seq, tenant_id, kind, request, response, \
                 recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for entry in &commit.journal {
        insert.execute(params![
            run_id,
            i64::from(entry.seq),
            tenant,
            entry.kind.as_str(),
            entry.request.to_string(),
            entry.response.to_string(),
            entry.recorded_at.0,
        ])?;
    }

    super::outbox::insert_emails(tx, &commit.emails)?;

    super::effects::insert_effects(tx, run_id, tenant, &commit.effects, commit.now.0)?;

    match &commit.transition {
        RunTransition::Waiting { wake_at, wait } => {
            tx.prepare_cached(
                "UPDATE runs SET status = 'waiting', wake_at = ?1, updated_at = ?2, \
                         activations = activations + 1, error = NULL WHERE id = ?3",
            )?
            .execute(params![wake_at.0, commit.now.0, run_id])?;
            // An awaited event received after the activation looked is a wake-up the
            // ingest could not give (it did not see this wait yet): due at once.
            let (event_name, since, seen) = match wait {
                Some(w) => (Some(w.event_name.as_str()), w.since.0, w.seen),
                None => (None, 0, 0),
            };
            tx.prepare_cached(concat!(
                "UPDATE timers SET due_at = CASE WHEN ?3 IS NOT NULL AND (\
                             SELECT COUNT(*) FROM events e JOIN runs r ON r.id = timers.run_id \
                             WHERE e.tenant = ",
                tenant_number!("r.tenant_id"),
                " AND e.contact_key = r.contact_key \
                             AND e.name = ?3 AND e.received_at >= ?4) > ?5 \
                           THEN MIN(?1, ?6) ELSE ?1 END, \
                         wait_event = ?3, lease_owner = NULL, lease_until = NULL, attempts = 0 \
                         WHERE run_id = ?2"
            ))?
            .execute(params![
                wake_at.0,
                run_id,
                event_name,
                since,
                i64::try_from(seen).unwrap_or(i64::MAX),
                commit.now.0
            ])?;
        }
        RunTransition::Completed | RunTransition::Failed { .. } => {
            let (status, error) = match &commit.transition {
                RunTransition::Failed { error } => (RunStatus::Failed, Some(error.as_str())),
                _ => (RunStatus::Completed, None),
            };
            tx.prepare_cached(
                "UPDATE runs SET status = ?1, error = ?2, wake_at = NULL, \
                         updated_at = ?3, activations = activations + 1 WHERE id = ?4",
            )?
            .execute(params![status.as_str(), error, commit.now.0, run_id])?;
            tx.prepare_cached("DELETE FROM timers WHERE run_id = ?1")?
                .execute([run_id])?;
        }
    }
    Ok(true)
}
