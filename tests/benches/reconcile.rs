//! Reconcile benchmark: the reconcile job's passes over a large bucket, on the store the host
//! uses (SQLite always; PostgreSQL on a fresh database when `WAYMARK_TEST_DATABASE_URL` is
//! set), driven through the `Store` interface the job calls.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench reconcile
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench reconcile
//! ```
//!
//! Setup: `WAYMARK_BENCH_MEMBERS` [100000] people each send one `app.active` (batches of
//! 1,000), for the `went-dormant` bucket (active once, not in the last 7 days) with a dwell
//! reaction three days in. It measures:
//!
//! 1. **Absence joins**: 7 days later, the passes (500 rows each) that join all of them.
//! 2. **One criteria pass over every membership**: re-evaluating each member once.
//! 3. **Dwell**: 3 days later, the passes that fire the dwell for all of them.
//! 4. **Ingest while a pass runs**: `WAYMARK_BENCH_INGEST` [100000] new events (batches of 1,000)
//!    alone, then again while a task runs criteria passes one after the other, then alone once
//!    more (ingest alone is the mean of the two runs). The passes are paced as the job paces
//!    them (`waymark::reconcile_job::pace`: at most `WRITER_SHARE` of the writer's time); the
//!    ratio must be at least 0.8.
//!
//! On PostgreSQL the bench runs `ANALYZE` after the setup and after each phase's first pass,
//! as autovacuum would (the bench machine's server has it off).
//!
//! `WAYMARK_BENCH_BACKENDS` [sqlite,postgres] picks the backends (PostgreSQL still needs
//! `WAYMARK_TEST_DATABASE_URL`).
//!
//! Run through `cargo bench` only.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{env_or, machine, today, under_cargo_bench};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use waymark::buckets::reconcile_rules::Pass;
use waymark::buckets::{
    BucketDef, BucketKind, BucketRegistry, Condition, DwellSchedule, ReactionDef, ReactionOn,
};
use waymark::clock::Timestamp;
use waymark::contacts::Identity;
use waymark::ids::{EventId, TenantId};
use waymark::ingest::IngestItem;
use waymark::journeys::EntryLimit;
use waymark::journeys::router::RunCandidate;
use waymark::store::{IngestRouting, NewEvent, Store};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;
const BATCH: u32 = 500;
const MIN_INGEST_RATIO: f64 = 0.8;

struct Routing(Arc<BucketRegistry>);

impl IngestRouting for Routing {
    fn journeys(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<RunCandidate> {
        Vec::new()
    }
    fn exits(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }
    fn buckets(&self, _: &TenantId) -> Option<Arc<BucketRegistry>> {
        Some(self.0.clone())
    }
}

fn went_dormant() -> BucketDef {
    let criteria = json!({"type": "all", "conditions": [
        {"type": "event", "event": "app.active", "check": "exists"},
        {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 7 * DAY},
    ]});
    BucketDef {
        id: "went-dormant".into(),
        name: "Went dormant".into(),
        description: None,
        enabled: true,
        kind: BucketKind::Computed,
        criteria: Some(Condition::from_json(&criteria).unwrap()),
        time_based: None,
        fast_expiry: false,
        min_dwell_ms: None,
        max_dwell_ms: None,
        entry_limit: EntryLimit::Unlimited,
        reactions: vec![ReactionDef {
            journey_id: "bucket-went-dormant-on-dwell-after-259200000".into(),
            handler: "h".into(),
            on: ReactionOn::Dwell {
                schedule: DwellSchedule::After(3 * DAY as u64),
            },
        }],
    }
}

fn active(tenant: &TenantId, user: &str, at: i64) -> IngestItem {
    IngestItem {
        routing: None,
        event: NewEvent {
            id: EventId::generate(),
            tenant_id: tenant.clone(),
            name: "app.active".into(),
            identity: Identity::new(Some(user), None, None),
            event_properties: Map::new(),
            contact_properties: Map::new(),
            idempotency_key: None,
            occurred_at: Timestamp(at),
            received_at: Timestamp(at),
        },
        candidates: vec![],
    }
}

async fn ingest_people(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    routing: &Arc<dyn IngestRouting>,
    prefix: &str,
    count: usize,
    at: i64,
) -> Duration {
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|i| active(tenant, &format!("{prefix}{i}"), at))
            .collect::<Vec<_>>();
        store.ingest(batch.into(), routing.clone()).await.unwrap();
    }
    started.elapsed()
}

/// Passes of `pass` at `at` until one reads less than a batch: (passes, transitions, time).
/// On PostgreSQL the statistics are refreshed after the first pass, as autovacuum would once
/// the pass changed a table by a tenth.
#[allow(clippy::too_many_arguments)]
async fn drain(
    database_url: Option<&str>,
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    bucket: &BucketDef,
    routing: &Arc<dyn IngestRouting>,
    pass: Pass,
    at: i64,
    max_passes: usize,
) -> (usize, usize, Duration) {
    let started = Instant::now();
    let (mut passes, mut transitions) = (0, 0);
    while passes < max_passes {
        let report = store
            .reconcile_pass(tenant, bucket, pass, Timestamp(at), BATCH, routing.clone())
            .await
            .unwrap();
        passes += 1;
        transitions += report.transitions.len();
        if passes == 1 {
            analyze(database_url).await;
        }
        if report.examined < BATCH as usize {
            break;
        }
    }
    (passes, transitions, started.elapsed())
}

/// Refresh PostgreSQL's statistics, as autovacuum does after a table changed by a tenth (this
/// machine's server runs with autovacuum off; without statistics the planner guesses one row
/// for every table and picks joins by accident).
async fn analyze(database_url: Option<&str>) {
    use sqlx::Connection;
    let Some(url) = database_url else { return };
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
}

async fn bench(
    label: &str,
    store: Arc<dyn Store>,
    database_url: Option<&str>,
    members: usize,
    ingest: usize,
) -> bool {
    let (tenant, _) = store.create_tenant("bench", Timestamp(T0)).await.unwrap();
    let tenant = tenant.id;
    let bucket = went_dormant();
    let routing: Arc<dyn IngestRouting> =
        Arc::new(Routing(Arc::new(BucketRegistry::from_buckets([
            bucket.clone()
        ]))));
    println!("\n## {label}: {members} memberships");
    let took = ingest_people(&store, &tenant, &routing, "p", members, T0).await;
    println!("setup: {members} app.active in {:.1}s", took.as_secs_f64());
    analyze(database_url).await;

    let limit = members / BATCH as usize + 2;
    let join_at = T0 + 7 * DAY + 1;
    let (passes, joined, took) = drain(
        database_url,
        &store,
        &tenant,
        &bucket,
        &routing,
        Pass::AbsenceJoins,
        join_at,
        limit,
    )
    .await;
    println!(
        "absence joins: {joined} joined in {passes} passes, {:.2}s ({:.1} ms per {BATCH}-row pass, {:.0} joins/s)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / passes as f64,
        joined as f64 / took.as_secs_f64()
    );
    analyze(database_url).await;

    let (passes, left, took) = drain(
        database_url,
        &store,
        &tenant,
        &bucket,
        &routing,
        Pass::CriteriaLeaves,
        join_at + DAY,
        limit,
    )
    .await;
    println!(
        "criteria pass over all {members} memberships: {:.2}s in {passes} passes ({:.1} ms per pass, {left} left)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / passes as f64
    );

    let (passes, fired, took) = drain(
        database_url,
        &store,
        &tenant,
        &bucket,
        &routing,
        Pass::Dwell(DwellSchedule::After(3 * DAY as u64)),
        join_at + 3 * DAY,
        limit,
    )
    .await;
    println!(
        "dwell: {fired} fired in {passes} passes, {:.2}s ({:.1} ms per pass)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / passes as f64
    );

    // Ingest alone, while criteria passes run back to back, then alone again: the rate alone
    // is the mean of the runs either side, so neither the first run's warm-up nor the
    // database's growth favours one side.
    let at = join_at + 4 * DAY;
    let alone_before = ingest_people(&store, &tenant, &routing, "a", ingest, at).await;
    let running = Arc::new(AtomicBool::new(true));
    let sweeper = {
        let (store, tenant, bucket, routing, running) = (
            store.clone(),
            tenant.clone(),
            bucket.clone(),
            routing.clone(),
            running.clone(),
        );
        tokio::spawn(async move {
            let mut passes = 0usize;
            while running.load(Ordering::Relaxed) {
                let started = Instant::now();
                store
                    .reconcile_pass(
                        &tenant,
                        &bucket,
                        Pass::CriteriaLeaves,
                        Timestamp(at),
                        BATCH,
                        routing.clone(),
                    )
                    .await
                    .unwrap();
                // As the job does: rest so the passes take at most their share of the writer.
                waymark::reconcile_job::pace(started.elapsed()).await;
                passes += 1;
            }
            passes
        })
    };
    let during = ingest_people(&store, &tenant, &routing, "b", ingest, at).await;
    running.store(false, Ordering::Relaxed);
    let sweeps = sweeper.await.unwrap();
    let alone_after = ingest_people(&store, &tenant, &routing, "c", ingest, at).await;
    let rate = |took: Duration| ingest as f64 / took.as_secs_f64();
    let (alone_rate, during_rate) = ((rate(alone_before) + rate(alone_after)) / 2.0, rate(during));
    let ratio = during_rate / alone_rate;
    println!(
        "ingest: {alone_rate:.0} events/s alone, {during_rate:.0} events/s while {sweeps} criteria passes ran ({ratio:.2}; target >= {MIN_INGEST_RATIO})"
    );
    ratio >= MIN_INGEST_RATIO
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !under_cargo_bench("reconcile", "reconcile") {
        return;
    }
    let members: usize = env_or("WAYMARK_BENCH_MEMBERS", 100_000);
    let ingest: usize = env_or("WAYMARK_BENCH_INGEST", 100_000);
    let backends = env_or("WAYMARK_BENCH_BACKENDS", "sqlite,postgres".to_owned());
    let wants = |name: &str| backends.split(',').any(|b| b.trim() == name);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# reconcile bench, {}", today());
    println!("{}; load average before: {}", machine(), load.trim());
    let mut ok = true;

    let dir = tempfile::tempdir().unwrap();
    if wants("sqlite") {
        let sqlite: Arc<dyn Store> = Arc::new(
            waymark::store::sqlite::SqliteStore::open(&dir.path().join("waymark.db"))
                .await
                .unwrap(),
        );
        ok &= bench("SQLite", sqlite, None, members, ingest).await;
    }

    if wants("postgres") && support::postgres_url().is_some() {
        let db = support::TestDatabase::create().await;
        let pg: Arc<dyn Store> = Arc::new(
            waymark::store::postgres::PgStore::connect(&db.url)
                .await
                .unwrap(),
        );
        ok &= bench("PostgreSQL", pg, Some(&db.url), members, ingest).await;
    }
    if !ok {
        eprintln!("ingest during a reconcile pass fell below {MIN_INGEST_RATIO} of ingest alone");
        std::process::exit(1);
    }
}
