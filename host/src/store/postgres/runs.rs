//! Implements [`crate::store::RunQueue`] and [`crate::store::RunReads`].
//!
//! Runs after ingest: claiming due timers, loading and committing activations, releasing a
//! claim, the scheduler's next wake-up, and listing and inspecting runs.
//!
//! Concurrency. A claim (the fair claim flow, its statements in `claims`) picks due, unleased
//! timers of live runs with `FOR UPDATE OF timers SKIP LOCKED` and leases them, so schedulers
//! of several processes take disjoint runs without waiting on each other (and skip a timer that
//! a commit, a deletion or a merge is changing). A commit locks its run row, then checks the run is still live and its
//! timer still leased by the committer: of two activations of one run (say a lease expired and
//! another process claimed it), exactly one commits. Locks are taken run first, timer second,
//! by every writer.

use super::rows::{and_equals, fetch_newest_first, journal_from_json};
use super::tx::PgTx;
use super::usage::add_usage;
use super::{PgStore, live_statuses, tenant_not_suspended};
use crate::clock::{Clock, Timestamp};
use crate::ids::{RunId, TenantId};
use crate::journeys::{RunInput, RunStatus};
use crate::store::RunQueue;
use crate::store::RunReads;
use crate::store::codec::{parse_json, parse_run_status, to_json};
use crate::store::flows;
use crate::store::rows::run_columns;
use crate::store::rows::run_from_row;
use crate::store::{
    ActivationCommit, ActivationInput, Lease, RunFilter, RunRecord, RunTransition, StoreResult,
};
use crate::usage::UsageTally;
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use std::sync::Arc;

#[async_trait]
impl RunReads for PgStore {
    /// The tenant's run, its input and its journal, read by one statement (so from one snapshot).
    async fn run_detail(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            ", input::text AS input, COALESCE((\
                 SELECT json_agg(json_build_array(j.seq, j.kind, j.request, j.response, \
                 j.recorded_at) ORDER BY j.seq) FROM journal j WHERE j.run_id = r.id), '[]')::text \
             AS journal FROM runs r WHERE r.id = $1 AND r.tenant_id = $2"
        ))
        .bind(run_id.as_str())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(activation_from_row).transpose()
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        filter: &RunFilter,
    ) -> StoreResult<Vec<RunRecord>> {
        let mut query = QueryBuilder::<Postgres>::new(concat!(
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
        fetch_newest_first(&self.pool, query, filter.limit, run_from_row).await
    }
}

/// An [`ActivationInput`] from a row of [`run_columns!`], `input` and `journal` (a JSON array).
pub(super) fn activation_from_row(row: &PgRow) -> StoreResult<ActivationInput> {
    let input: RunInput = parse_json("run input", row.try_get("input")?)?;
    Ok(ActivationInput {
        run: run_from_row(row)?,
        input,
        journal: journal_from_json(row.try_get("journal")?)?,
    })
}

#[async_trait]
impl RunQueue for PgStore {
    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
        default_in_flight: u32,
    ) -> StoreResult<Vec<ActivationInput>> {
        let mut tx = self.pool.begin().await?;
        let claimed = flows::fair_claim::claim_due_runs(
            &mut PgTx::new(&mut tx),
            now,
            lease,
            limit,
            default_in_flight,
        )
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Group commit: every activation in one transaction, each checked and written on its own (a
    /// lost lease skips only that one). Runs are locked in id order, so two hosts committing
    /// overlapping sets cannot deadlock; the activations written are counted in their tenants'
    /// usage by the last statement (see `usage`).
    async fn commit_activations(&self, commits: Arc<[ActivationCommit]>) -> StoreResult<Vec<bool>> {
        let mut order: Vec<usize> = (0..commits.len()).collect();
        order.sort_by(|&a, &b| commits[a].run_id.cmp(&commits[b].run_id));
        let mut written = vec![false; commits.len()];
        let mut usage = UsageTally::default();
        let mut tx = self.pool.begin().await?;
        for index in order {
            let commit = &commits[index];
            written[index] = commit_one(&mut tx, commit).await?;
            if written[index] {
                usage.activation(&commit.tenant_id, commit.now, commit.guest_cpu);
            }
        }
        add_usage(&mut tx, &usage).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE timers SET lease_owner = NULL, lease_until = NULL, due_at = $1 \
             WHERE run_id = $2 AND lease_owner = $3",
        )
        .bind(retry_at.0)
        .bind(run_id.as_str())
        .bind(lease_owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>> {
        let now_real = Clock::real_now().0;
        // The first claimable timer in `timers_by_due` order: a walk that stops at the first
        // unleased timer of a live run of a tenant not suspended (whose due timers would wake
        // the scheduler in a loop), however many runs sleep behind it (MIN over a join could
        // be planned as a pass over every timer).
        let due: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT t.due_at FROM timers t \
             WHERE (t.lease_until IS NULL OR t.lease_until < $1) \
             AND (SELECT r.status FROM runs r WHERE r.id = t.run_id) IN ",
            live_statuses!(),
            " AND ",
            tenant_not_suspended!("t.tenant_id"),
            " ORDER BY t.due_at LIMIT 1"
        ))
        .bind(now_real)
        .fetch_optional(&self.pool)
        .await?;
        Ok(due.map(Timestamp))
    }
}

/// The writes of a commit, one statement: journal rows (from arrays), the run's status, then
/// the timer statement that follows (`$9` is the run's new `wake_at`). Emails are queued
/// before it ([`super::outbox::insert_emails`]).
macro_rules! commit_writes {
    ($timer:literal) => {
        concat!(
            "WITH journal_rows AS (\
                 INSERT INTO journal (run_id, seq, tenant_id, kind, request, response, \
                 recorded_at) \
                 SELECT $1, j.seq, $2, j.kind, j.request::json, j.response::json, \
                 j.recorded_at \
                 FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::int8[]) \
                 AS j(seq, kind, request, response, recorded_at)), \
             run_row AS (\
                 UPDATE runs SET status = $8, wake_at = $9, error = $10, updated_at = $11, \
                 activations = activations + 1 WHERE id = $1) ",
            $timer
        )
    };
}

async fn commit_one(conn: &mut PgConnection, commit: &ActivationCommit) -> StoreResult<bool> {
    let run_id = commit.run_id.as_str();

    // Lock the run (a concurrent commit, deletion or merge of it finishes first), then read
    // its timer with a snapshot taken after the lock.
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE")
            .bind(run_id)
            .bind(commit.tenant_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let live = match status {
        None => false,
        Some(status) => !parse_run_status(&status)?.is_terminal(),
    };
    let owner: Option<Option<String>> =
        sqlx::query_scalar("SELECT lease_owner FROM timers WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await?;
    if !live || owner.flatten().as_deref() != Some(commit.lease_owner.as_str()) {
        // Nothing written for this one; the lock it took is released with the transaction.
        return Ok(false);
    }

    super::effects::insert_effects(
        conn,
        run_id,
        commit.tenant_id.as_str(),
        &commit.effects,
        commit.now.0,
    )
    .await?;
    let journal = &commit.journal;
    super::outbox::insert_emails(conn, &commit.emails).await?;
    let (status, wake_at, error) = match &commit.transition {
        RunTransition::Waiting { wake_at, .. } => (RunStatus::Waiting, Some(wake_at.0), None),
        RunTransition::Completed => (RunStatus::Completed, None, None),
        RunTransition::Failed { error } => (RunStatus::Failed, None, Some(error.as_str())),
    };
    let wait = match &commit.transition {
        RunTransition::Waiting { wait, .. } => wait.as_ref(),
        _ => None,
    };
    let sql = match &commit.transition {
        // An awaited event received after the activation looked is a wake-up the ingest could
        // not give (it did not see this wait yet): due at once.
        RunTransition::Waiting { .. } => commit_writes!(
            "UPDATE timers SET due_at = CASE WHEN $12::text IS NOT NULL AND (\
                 SELECT COUNT(*) FROM events e JOIN runs r ON r.id = timers.run_id \
                 WHERE e.tenant_id = r.tenant_id AND e.contact_key = r.contact_key \
                 AND e.name = $12 AND e.received_at >= $13) > $14 \
               THEN LEAST($9, $11) ELSE $9 END, \
             wait_event = $12, lease_owner = NULL, lease_until = NULL, attempts = 0 \
             WHERE run_id = $1"
        ),
        RunTransition::Completed | RunTransition::Failed { .. } => {
            commit_writes!("DELETE FROM timers WHERE run_id = $1")
        }
    };
    sqlx::query(sql)
        .bind(run_id)
        .bind(commit.tenant_id.as_str())
        .bind(journal.iter().map(|e| i64::from(e.seq)).collect::<Vec<_>>())
        .bind(journal.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(
            journal
                .iter()
                .map(|e| to_json("journal request", &e.request))
                .collect::<StoreResult<Vec<_>>>()?,
        )
        .bind(
            journal
                .iter()
                .map(|e| to_json("journal response", &e.response))
                .collect::<StoreResult<Vec<_>>>()?,
        )
        .bind(journal.iter().map(|e| e.recorded_at.0).collect::<Vec<_>>())
        .bind(status.as_str())
        .bind(wake_at)
        .bind(error)
        .bind(commit.now.0)
        .bind(wait.map(|w| w.event_name.as_str()))
        .bind(wait.map_or(0, |w| w.since.0))
        .bind(wait.map_or(0, |w| i64::try_from(w.seen).unwrap_or(i64::MAX)))
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// An event just stored, as the runs waiting for it see it.
pub(super) struct AwaitedEvent<'a> {
    pub tenant_id: &'a str,
    pub contact_key: &'a str,
    pub name: &'a str,
    pub received_at: Timestamp,
}

/// Make the timers of the runs waiting for these events (`wait-for-event`: same person, same
/// name) due when the event came: they wake, and their activation decides whether the event is
/// the one (see `runtime::events`).
pub(super) async fn wake_waiting_runs(
    conn: &mut PgConnection,
    events: &[AwaitedEvent<'_>],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(concat!(
        "UPDATE timers t SET due_at = e.received_at \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) \
           AS e(tenant_id, contact_key, name, received_at) \
         JOIN runs r ON r.tenant_id = e.tenant_id AND r.contact_key = e.contact_key \
         WHERE t.run_id = r.id AND t.wait_event = e.name AND t.due_at > e.received_at \
         AND r.status IN ",
        live_statuses!()
    ))
    .bind(events.iter().map(|e| e.tenant_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.contact_key).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.name).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.received_at.0).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
