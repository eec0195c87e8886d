//! The runs an ingest batch starts, kept in memory and inserted together, each with its first
//! timer, in one statement instead of one per run (a new user's sign-up starts a welcome run,
//! a fifth of the bench's events).
//!
//! Safe to defer: the enrollment guards read the person's runs up front and count the batch's
//! own starts (`batch_enrollment`), and every statement of the batch that reads or moves runs
//! by person (a guard read not answered up front, ending runs, re-pointing history) writes the
//! kept ones first. The one-live-run index stays the final guard: a start it refuses at the
//! insert means another writer started that run meanwhile, which the batch already answered
//! as started — so the batch rolls back and runs again, starting each run as it goes.

use super::live_statuses;
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::StoreResult;
use crate::store::flows::NewRun;
use sqlx::PgConnection;

/// A run to insert (active, due at once).
pub(super) struct PendingRun {
    pub id: RunId,
    pub tenant: TenantId,
    pub journey_id: String,
    pub module_hash: String,
    pub contact_key: String,
    pub input: String,
    pub at: Timestamp,
}

impl PendingRun {
    pub(super) fn of(run: &NewRun<'_>, id: RunId) -> Self {
        Self {
            id,
            tenant: run.tenant.clone(),
            journey_id: run.candidate.journey_id.clone(),
            module_hash: run.candidate.module_hash.clone(),
            contact_key: run.contact_key.to_owned(),
            input: run.input.to_owned(),
            at: run.at,
        }
    }
}

/// Runs from arrays, one per column, each with its first timer; the one-live-run index skips
/// a run whose journey already has a live run for the person. Answers the runs inserted.
const INSERT_RUNS: &str = concat!(
    "WITH run AS (\
         INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, status, input, \
         created_at, updated_at, activations) \
         SELECT r.id, r.tenant_id, r.journey_id, r.module_hash, r.contact_key, 'active', \
         r.input::jsonb, r.at, r.at, 0 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::int8[]) AS r(id, tenant_id, journey_id, module_hash, contact_key, input, at) \
         ON CONFLICT (tenant_id, journey_id, contact_key) WHERE status IN ",
    live_statuses!(),
    " DO NOTHING RETURNING id, tenant_id, created_at) \
     INSERT INTO timers (run_id, tenant_id, due_at) SELECT id, tenant_id, created_at FROM run"
);

/// Insert `runs` in one statement: whether every one was inserted.
pub(super) async fn insert_runs(conn: &mut PgConnection, runs: &[PendingRun]) -> StoreResult<bool> {
    if runs.is_empty() {
        return Ok(true);
    }
    let inserted = sqlx::query(INSERT_RUNS)
        .bind(runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>())
        .bind(
            runs.iter()
                .map(|r| r.journey_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|r| r.module_hash.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|r| r.contact_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|r| r.input.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.at.0).collect::<Vec<_>>())
        .execute(conn)
        .await?
        .rows_affected();
    Ok(inserted == runs.len() as u64)
}
