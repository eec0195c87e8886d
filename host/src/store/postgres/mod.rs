//! The PostgreSQL backend of [`crate::store::Store`]: for hosted deployments, where several host processes
//! share one database, so every write is safe against concurrent writers of other processes.
//!
//! Concurrency, in one place (each submodule's doc says how it applies it):
//! * Transactions run at READ COMMITTED; a read-modify-write first locks what it modifies.
//! * Identity resolution takes transaction-scoped advisory locks on a 64-bit hash of
//!   (tenant, kind, value) for every identifying value, always in one global order (`identity`),
//!   and locks the contact rows it reads (`SELECT … FOR UPDATE`, together, in id order),
//!   re-reading one that a concurrent transaction deleted or merged away meanwhile. An ingest
//!   batch takes the advisory locks of all its items (and of their idempotency keys), then
//!   their contacts' row locks, up front in those orders, so two batches never wait on each
//!   other in a cycle. The partial unique indexes (live rows only) are the final guard, and a
//!   batch PostgreSQL still picks as a deadlock victim is run again.
//! * Claims of due work (`claim_due_runs`, `claim_outbox`) are one `UPDATE … WHERE … IN
//!   (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`: concurrent schedulers take
//!   disjoint rows without waiting, and the lease columns keep a claim until it expires.
//! * `commit_activations` locks each run row (in id order, so two committers cannot
//!   deadlock) and checks it is live and its timer leased by the committer before writing; deleting a contact, a merge's re-pointing and a commit all lock
//!   run rows first, so they serialise per run.
//!
//! Round trips, not the server, bound throughput here (a statement costs ~0.1–0.2 ms on
//! loopback), so the hot paths count statements: a resolution looks all its values up in one,
//! an ingest batch writes its events in one (and the memberships of the people it created in
//! another: `deferred_joins`), a commit writes journal, emails, run and timer in one.
//! Connections use generic plans (each statement planned once per connection, never per
//! execution): the statements look rows up by full index keys driven by the values, and the
//! batch ones are shaped so that no plan can scan a whole table. Sequential scans are off
//! (`SESSION_SETTINGS`), so a plan made on a table analyzed while it was tiny still walks the
//! index once the table has grown. The other plans rely on statistics as usual; `connect` warns
//! when autovacuum is off. Without statistics, indexes that serve a statement cost the same
//! on a small table, so which one a connection's plan walks is chance, kept for the
//! connection's life (measured: a person's counts on `events_by_name`, every event of the
//! tenant in the window, at 10–60 ms a count).
//!
//! Dialect notes: JSON is JSONB except the journal's request and response, which are JSON
//! (exact text: replay compares them and hands them back to guests, and JSONB rewrites
//! numbers such as `1e16` and refuses `\u0000`).
//!
//! Two clocks meet here, as in SQLite: `due_at`, `created_at`, `wake_at` … are on the host clock
//! (which a dev may advance), while leases (`lease_until`) and the outbox's `next_attempt_at` are
//! on the real clock, so advancing the dev clock never breaks a claim.
//!
//! This module owns connecting and the migrations; each concern of [`crate::store::Store`] is
//! implemented in its own file, queries and row mapping beside it: `tenancy` (`Tenancy`,
//! `Operators`, `HostSettings`), `ingest` (`EventIngest`), `contacts` (`Contacts`), `membership`
//! (`ManualMemberships`, and the bucket primitives), `buckets` (`BucketReads`), `backfills`
//! (`Backfills`), `reconciles` (`Reconciles`), `runs` (`RunQueue`, `RunReads`), `effects`
//! (`RunEffects`), `outbox` (`Outbox`), `history` (`History`), `templates`
//! (`EmailTemplates`), `preferences` (`EmailPreferences`), `journeys` (`JourneyAdmin`) and
//! `limits` (`TenantLimitStore`), `usage` (`UsageReads`, and the sharded counter upsert the
//! transactions that do the work end with), `claims` (the fair claim's steps). `tx` holds the transaction the shared flows run in ([`tx::PgTx`]: what it remembers
//! between statements, its deferred writes); `identity` its advisory locks, contact lookups
//! and identity primitives; `rows` the column lists and row mapping.

/// `CROSS JOIN LATERAL` the live contact `c` of each row of `$row`, with the contact's
/// `$columns` (e.g. `"c.properties"`): one lookup each on the full key of `contacts_live_key`.
/// Fenced (`OFFSET 0`) so the planner cannot make it a plain join: with a generic plan made
/// before the tables have statistics, a plain join scanned every contact of the tenant per
/// membership (measured in the reconcile job: 1.5 s for a page of 500 members of 15,000
/// contacts, against 2 ms this way). For pages and lists, which walk their own index and look
/// each row's contact up; a count over a whole bucket wants a hash join instead.
macro_rules! live_contact_of {
    ($row:literal, $columns:literal) => {
        concat!(
            "CROSS JOIN LATERAL (SELECT ",
            $columns,
            " FROM contacts c WHERE c.tenant_id = ",
            $row,
            ".tenant_id AND c.key = ",
            $row,
            ".contact_key AND c.deleted_at IS NULL OFFSET 0) c"
        )
    };
}

mod backfills;
mod batch_contacts;
mod batch_counts;
mod batch_enrollment;
mod buckets;
mod claims;
mod contacts;
mod deferred_joins;
mod deferred_runs;
mod effects;
mod history;
mod identity;
mod ingest;
mod journeys;
mod limits;
mod membership;
mod modules;
mod outbox;
pub(crate) mod preferences;
mod reconciles;
mod rows;
mod runs;
mod senders;
mod templates;
mod tenancy;
#[cfg(test)]
mod tests;
mod tx;
mod usage;

use super::{StoreError, StoreResult};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// Connections per host process.
const MAX_CONNECTIONS: u32 = 16;
/// How long a caller waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The live statuses, as SQL: a run in one of them holds the one-live-run slot and may have a
/// timer. Must match the partial unique index `runs_one_live_per_contact`.
macro_rules! live_statuses {
    () => {
        "('active', 'waiting')"
    };
}
use live_statuses;

/// SQL that holds while the tenant whose id is the SQL `$id` is not suspended: due runs and
/// queued emails of a suspended tenant wait (migration 0021). A scalar subquery, one primary
/// key seek per candidate row, which the planner never turns into a join.
macro_rules! tenant_not_suspended {
    ($id:literal) => {
        concat!(
            "(SELECT s.suspended_at FROM tenants s WHERE s.id = ",
            $id,
            ") IS NULL"
        )
    };
}
use tenant_not_suspended;

/// How many times a transaction PostgreSQL aborted as a deadlock victim (or for a
/// serialization failure) is run in all, for the writes that are safe to run again whole.
const MAX_ATTEMPTS: usize = 3;

/// Whether the error is one that running the same transaction again can cure: SQLSTATE 40P01
/// (deadlock detected) or 40001 (serialization failure).
fn is_transient(error: &StoreError) -> bool {
    match error {
        StoreError::Database(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40P01" || code == "40001"),
        _ => false,
    }
}

/// The schema migrations, embedded in the binary: every file in `migrations/postgres` (the
/// path is relative to `host/Cargo.toml`). sqlx takes an advisory lock while migrating, so
/// host processes starting together apply them once. Cargo does not notice a new file in
/// that directory by itself: touch this file (or `cargo clean -p waymark`) after adding one.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL store. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connect a pool to the database at `url` and apply the migrations it lacks.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Every statement here is written to plan well without its parameter
                    // values (lookups on the full key of an index, driven by the values), and
                    // re-planning the larger ones on each execution (which PostgreSQL does
                    // when a custom plan looks cheaper, e.g. for a short array) costs more
                    // than running them: plan each prepared statement once per connection.
                    // JIT compilation is for long analytical queries; for these short ones it
                    // costs tens of milliseconds per execution whenever a cost estimate (e.g.
                    // over a table without statistics yet) crosses `jit_above_cost`. And a
                    // plan is never a whole-table scan when an index can serve (see
                    // `SESSION_SETTINGS`).
                    sqlx::raw_sql(SESSION_SETTINGS)
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
            .connect(url)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", redact(url))))?;
        MIGRATOR.run(&pool).await?;
        warn_without_autovacuum(&pool).await;
        Ok(PgStore { pool })
    }
}

/// Every connection's settings (why: `PgStore::connect`). `enable_seqscan = off` makes a whole
/// table scan the last resort, not a ban (a statement with no index to use still scans): a
/// generic plan made just after a table was analyzed at one page (a fresh database's first
/// minute, where autovacuum analyzes after 50 rows) scans it, and keeps scanning it until the
/// next ANALYZE replans, while the table grows by thousands of rows a second. Measured: a
/// person's event counts planned that way on an events table analyzed at 30 rows took 10 ms a
/// name once it held 100,000 rows, against 0.03 ms on `events_by_contact`. Every statement here
/// is an index lookup or walks an index, so none wants a sequential scan.
const SESSION_SETTINGS: &str =
    "SET plan_cache_mode = force_generic_plan; SET jit = off; SET enable_seqscan = off";

/// Warn when the server does not vacuum by itself: the host refreshes planner statistics
/// (`HostSettings::refresh_statistics`), but only VACUUM reclaims the dead rows that updates
/// (timers, leases, runs) leave behind.
async fn warn_without_autovacuum(pool: &PgPool) {
    let setting: Result<String, _> = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await;
    if let Ok(value) = setting
        && value != "on"
    {
        tracing::warn!(
            "PostgreSQL runs with autovacuum = {value}: Waymark keeps its tables' planner \
             statistics itself, but dead rows are reclaimed only by VACUUM; turn autovacuum on \
             (or VACUUM regularly)"
        );
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

impl crate::store::Engine for PgStore {}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn urls_in_errors_lose_their_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/waymark"),
            "postgres://app@db:5432/waymark"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
