//! Ingest benchmark: the real `waymark` binary over real HTTP, against the raw insert speed of
//! the same database.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench ingest
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench ingest
//! ```
//!
//! For each backend (SQLite always; PostgreSQL, on a fresh database, when
//! `WAYMARK_TEST_DATABASE_URL` is set) it starts `waymark serve --rate-limit 0
//! --tenant-ingest-rate 0` (no per-key or per-tenant limit) on a temporary data dir with no
//! modules and measures:
//!
//! 1. single `POST /v1/events` from concurrent keep-alive clients: events/s, p50/p99 latency;
//! 2. `POST /v1/events/batch` of 1,000 events with a few requests in flight: events/s and
//!    p50/p99 per request;
//! 3. after stopping the server: the raw speed of inserting as many rows of the same shape (id,
//!    tenant, key, name, JSON properties, timestamps, the same indexes as `events`) into a
//!    scratch table of the same database with multi-row INSERTs, ~1,000 rows per transaction;
//!    printed as the ratio Waymark events/s ÷ raw rows/s for 1 and 2;
//! 4. unless `WAYMARK_BENCH_BUCKETS=0`: 1 and 2 on a second server (its own data dir and
//!    PostgreSQL database) with the `fifty-buckets` test module loaded
//!    (`tests/guests/fifty-buckets`: 50 computed buckets, 45 about events and properties this
//!    workload never sends, 5 about ones it does; no journeys), same workload. Printed:
//!    events/s, p50/p99 and the ratio with 50 buckets ÷ with none (target >= 0.70x), plus the
//!    bucket transitions stored, so the buckets visibly did work. The module is built first, as
//!    the end-to-end tests build theirs (`waymark build` of the examples and test guests).
//!
//! The two servers run side by side and are measured interleaved: each phase's requests go in
//! slices (`WAYMARK_BENCH_SLICES`), every slice to one server and then the other (the order
//! reversed on every other slice), each server's figures summed over its own slices. A drift in
//! the machine's speed then lands on both alike, so the ratio compares like with like; a
//! server's CPU while the other is measured is reported when it is not negligible.
//!
//! Events are realistic: ~20% from new users (user id and email), the rest from returning
//! users; event and contact properties with a few keys; a unique idempotency key on half.
//!
//! Environment variables (defaults in brackets):
//!
//! - `WAYMARK_BENCH_EVENTS` [20000]: events sent as single posts.
//! - `WAYMARK_BENCH_CONCURRENCY` [64]: concurrent keep-alive clients for single posts.
//! - `WAYMARK_BENCH_BATCH_EVENTS` [200000]: events sent in batches.
//! - `WAYMARK_BENCH_BATCH_SIZE` [1000]: events per batch request (the API's maximum is 1,000).
//! - `WAYMARK_BENCH_IN_FLIGHT` [4]: batch requests in flight at once.
//! - `WAYMARK_BENCH_NEW_USERS` [20]: percentage of events from a new user.
//! - `WAYMARK_BENCH_BACKENDS` [sqlite,postgres]: which backends to run (PostgreSQL still needs
//!   `WAYMARK_TEST_DATABASE_URL`).
//! - `WAYMARK_BENCH_SERVER_ARGS` [none]: extra `waymark serve` flags, space-separated (e.g.
//!   `--ingest-batch 1024 --ingest-linger 2ms`).
//! - `WAYMARK_BENCH_BUCKETS` [1]: `0` skips the phases with 50 buckets loaded.
//! - `WAYMARK_BENCH_SLICES` [4]: slices per phase for the interleaving above (1: each server
//!   takes the whole phase in turn).
//! - `WAYMARK_BENCH_ROUNDS` [1]: how many times to run everything above. With more than one,
//!   a summary follows the rounds: each phase's events/s and ratios round by round, and their
//!   medians, which the targets are judged on.
//!
//! - `WAYMARK_BENCH_ANALYZE_SECS` [10]: on a PostgreSQL server with autovacuum off (this
//!   machine's is), how often the bench does autovacuum's ANALYZE for it (`0`: never; see
//!   [`StatsKeeper`]).
//!
//! The data dir is a temporary directory (set `TMPDIR` to put it on another disk). The load
//! generator runs on the same machine as the server and takes some of its CPU.
//!
//! Run through `cargo bench` only: under `cargo test --all-targets` (no `--bench` argument) it
//! prints how to run it and exits.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::load::{Measured, batch_body, post_bodies, serialise};
use common::workload::{Newcomers, PAGES, Rng, SOURCES, Workload};
use common::{
    CpuSample, CpuUse, build_modules, env_or, machine, median, now_ms, process_cpu_seconds,
    thousands, today, under_cargo_bench,
};

use serde_json::{Value, json};
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions};

/// Rows per transaction of the raw insert (and per multi-row INSERT statement).
const RAW_CHUNK: usize = 1_000;
/// Single posts sent before measuring (connections, statement caches, page cache).
const WARMUP_EVENTS: usize = 500;
/// The targets on SQLite.
const TARGET_BATCH_EVENTS_PER_SEC: f64 = 50_000.0;
const TARGET_SINGLE_EVENTS_PER_SEC: f64 = 5_000.0;
const TARGET_SINGLE_P99_MS: f64 = 20.0;
/// The test module with 50 buckets, by build name (`tests/guests/fifty-buckets`).
const BUCKETS_MODULE: &str = "fifty-buckets";
/// The target for both phases: throughput with 50 buckets ÷ throughput with none.
const TARGET_BUCKET_RATIO: f64 = 0.70;

struct Config {
    events: usize,
    concurrency: usize,
    batch_events: usize,
    batch_size: usize,
    in_flight: usize,
    new_user_percent: u64,
    backends: Vec<Backend>,
    server_args: Vec<String>,
    buckets: bool,
    slices: usize,
    rounds: usize,
    analyze_every: Duration,
}

impl Config {
    fn from_env() -> Config {
        let wanted = env_or("WAYMARK_BENCH_BACKENDS", "sqlite,postgres".to_owned());
        let mut backends = Vec::new();
        for name in wanted.split(',').map(str::trim) {
            match name {
                "sqlite" => backends.push(Backend::Sqlite),
                "postgres" if support::postgres_url().is_some() => backends.push(Backend::Postgres),
                "postgres" => {
                    println!("PostgreSQL skipped: set WAYMARK_TEST_DATABASE_URL to include it")
                }
                other => panic!("WAYMARK_BENCH_BACKENDS: unknown backend {other:?}"),
            }
        }
        Config {
            events: env_or("WAYMARK_BENCH_EVENTS", 20_000usize).max(1),
            concurrency: env_or("WAYMARK_BENCH_CONCURRENCY", 64usize).max(1),
            batch_events: env_or("WAYMARK_BENCH_BATCH_EVENTS", 200_000usize),
            batch_size: env_or("WAYMARK_BENCH_BATCH_SIZE", 1_000usize).clamp(1, 1_000),
            in_flight: env_or("WAYMARK_BENCH_IN_FLIGHT", 4usize).max(1),
            new_user_percent: env_or("WAYMARK_BENCH_NEW_USERS", 20u64).min(100),
            backends,
            server_args: env_or("WAYMARK_BENCH_SERVER_ARGS", String::new())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            buckets: !matches!(
                env_or("WAYMARK_BENCH_BUCKETS", "1".to_owned()).as_str(),
                "0" | "false" | "no" | "off"
            ),
            slices: env_or("WAYMARK_BENCH_SLICES", 4usize).max(1),
            rounds: env_or("WAYMARK_BENCH_ROUNDS", 1usize).max(1),
            analyze_every: Duration::from_secs(env_or("WAYMARK_BENCH_ANALYZE_SECS", 10u64)),
        }
    }
}

const ACTIONS: &[&str] = &[
    "page.viewed",
    "feature.used",
    "project.created",
    "invoice.paid",
    "teammate.invited",
];

/// What a returning user does: one of [`ACTIONS`], where, for how long.
fn activity(rng: &mut Rng) -> (&'static str, Value) {
    let name = rng.pick(ACTIONS);
    let properties = json!({
        "path": rng.pick(PAGES),
        "durationMs": rng.below(30_000),
        "source": rng.pick(SOURCES),
        "value": rng.below(10_000) as f64 / 100.0,
    });
    (name, properties)
}

/// The row the raw insert writes for an event: its resolved key is its user id.
struct RawRow {
    id: String,
    contact_key: String,
    name: String,
    properties: String,
    idempotency_key: Option<String>,
}

impl RawRow {
    fn from_event(event: &Value) -> RawRow {
        let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
        RawRow {
            id: uuid::Uuid::now_v7().to_string(),
            contact_key: text("userId"),
            name: text("name"),
            properties: event["eventProperties"].to_string(),
            idempotency_key: event["idempotencyKey"].as_str().map(str::to_owned),
        }
    }
}

/// How a backend's `events` table is shaped, for the scratch table of the raw insert.
struct EventsShape {
    /// The properties column's type.
    json: &'static str,
    /// The tenant column's type: SQLite stores the tenant's number (migration 0014),
    /// PostgreSQL its id.
    tenant: &'static str,
    /// The name as `events_by_name` indexes it.
    indexed_name: &'static str,
}

const SQLITE_EVENTS: EventsShape = EventsShape {
    json: "TEXT",
    tenant: "INTEGER",
    indexed_name: "name",
};

const POSTGRES_EVENTS: EventsShape = EventsShape {
    json: "JSONB",
    tenant: "TEXT",
    indexed_name: "(name COLLATE \"C\")",
};

/// The scratch table `table`, shaped like `events` (same columns, types and indexes, see
/// `migrations/*/`: `events_by_contact`, `events_by_name`, the idempotency-key index).
fn scratch_table_ddl(table: &str, shape: &EventsShape) -> [String; 3] {
    let EventsShape {
        json,
        tenant,
        indexed_name,
    } = shape;
    [
        format!(
            "CREATE TABLE {table} (id TEXT NOT NULL PRIMARY KEY, tenant {tenant} NOT NULL, \
             contact_key TEXT NOT NULL, name TEXT NOT NULL, properties {json} NOT NULL, \
             occurred_at BIGINT NOT NULL, received_at BIGINT NOT NULL, \
             idempotency_key TEXT, UNIQUE (tenant, idempotency_key))"
        ),
        format!(
            "CREATE INDEX {table}_by_contact ON {table} (tenant, contact_key, name, occurred_at)"
        ),
        format!(
            "CREATE INDEX {table}_by_name ON {table} (tenant, {indexed_name}, occurred_at, id)"
        ),
    ]
}

/// The raw insert's columns, in the order each row binds them.
const RAW_COLUMNS: &str =
    "id, tenant, contact_key, name, properties, occurred_at, received_at, idempotency_key";

/// SQLite: insert `rows` into a fresh scratch table shaped like `events`, `RAW_CHUNK` rows per
/// multi-row INSERT (a prepared statement, reused for every full chunk) and per transaction,
/// then drop it; rows per second.
fn raw_insert_sqlite(conn: &mut rusqlite::Connection, table: &str, rows: &[RawRow]) -> f64 {
    for ddl in scratch_table_ddl(table, &SQLITE_EVENTS) {
        conn.execute(&ddl, []).expect("creating the scratch table");
    }
    let insert_sql = |rows: usize| {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
        format!("INSERT INTO {table} ({RAW_COLUMNS}) VALUES {values}")
    };
    let now = now_ms();
    let start = Instant::now();
    for chunk in rows.chunks(RAW_CHUNK) {
        let tx = conn.transaction().expect("BEGIN");
        {
            let mut insert = tx
                .prepare_cached(&insert_sql(chunk.len()))
                .expect("preparing the raw insert");
            let params = chunk.iter().flat_map(|row| -> [&dyn rusqlite::ToSql; 8] {
                [
                    &row.id,
                    &1_i64,
                    &row.contact_key,
                    &row.name,
                    &row.properties,
                    &now,
                    &now,
                    &row.idempotency_key,
                ]
            });
            insert
                .execute(rusqlite::params_from_iter(params))
                .expect("the raw insert");
        }
        tx.commit().expect("COMMIT");
    }
    let elapsed = start.elapsed();
    conn.execute(&format!("DROP TABLE {table}"), [])
        .expect("dropping the scratch table");
    rows.len() as f64 / elapsed.as_secs_f64()
}

/// PostgreSQL: as [`raw_insert_sqlite`] (sqlx caches the prepared statement).
async fn raw_insert_postgres(conn: &mut sqlx::PgConnection, table: &str, rows: &[RawRow]) -> f64 {
    for ddl in scratch_table_ddl(table, &POSTGRES_EVENTS) {
        sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&mut *conn)
            .await
            .expect("creating the scratch table");
    }
    let now = now_ms();
    let start = Instant::now();
    for chunk in rows.chunks(RAW_CHUNK) {
        let mut tx = conn.begin().await.expect("BEGIN");
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
            "INSERT INTO {table} ({RAW_COLUMNS}) "
        ));
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.id.as_str())
                .push_bind("bench-tenant")
                .push_bind(row.contact_key.as_str())
                .push_bind(row.name.as_str())
                .push_bind(row.properties.as_str())
                .push_unseparated("::jsonb")
                .push_bind(now)
                .push_bind(now)
                .push_bind(row.idempotency_key.as_deref());
        });
        insert
            .build()
            .execute(&mut *tx)
            .await
            .expect("the raw insert");
        tx.commit().await.expect("COMMIT");
    }
    let elapsed = start.elapsed();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&mut *conn)
        .await
        .expect("dropping the scratch table");
    rows.len() as f64 / elapsed.as_secs_f64()
}

/// On the stopped server's SQLite database: raw rows per second for each row set, SQLite's
/// version, and how many events the server stored.
fn raw_speeds_sqlite(path: &std::path::Path, row_sets: &[&[RawRow]]) -> (Vec<f64>, String, i64) {
    let mut conn = rusqlite::Connection::open(path).expect("opening the SQLite database");
    // The settings of the server's write connection (host/src/store/sqlite/conn.rs).
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy_timeout");
    let pragmas: [(&str, &dyn rusqlite::ToSql); 5] = [
        ("journal_mode", &"WAL"),
        ("synchronous", &"NORMAL"),
        ("foreign_keys", &"ON"),
        ("temp_store", &"MEMORY"),
        ("cache_size", &-65_536_i64),
    ];
    for (pragma, value) in pragmas {
        conn.pragma_update(None, pragma, value)
            .unwrap_or_else(|e| panic!("PRAGMA {pragma}: {e}"));
    }
    let speeds = row_sets
        .iter()
        .enumerate()
        .map(|(i, rows)| raw_insert_sqlite(&mut conn, &format!("bench_raw_{i}"), rows))
        .collect();
    let stored = conn
        .query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))
        .expect("counting events");
    let version: String = conn
        .query_row("SELECT sqlite_version()", [], |row| row.get(0))
        .expect("sqlite_version()");
    (speeds, format!("SQLite {version}"), stored)
}

/// On the stopped server's database: raw rows per second for each row set, the database's
/// version, and how many events the server stored.
async fn raw_speeds(
    server: &Server,
    backend: Backend,
    row_sets: &[&[RawRow]],
) -> (Vec<f64>, String, i64) {
    match backend {
        Backend::Sqlite => {
            let path = server.data_dir.path().join("waymark.db");
            // Blocking work, alone on the runtime (the server is stopped).
            tokio::task::block_in_place(|| raw_speeds_sqlite(&path, row_sets))
        }
        Backend::Postgres => {
            let url = &server.database.as_ref().expect("a PostgreSQL database").url;
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connecting to PostgreSQL");
            let mut speeds = Vec::new();
            for (i, rows) in row_sets.iter().enumerate() {
                let table = format!("bench_raw_{i}");
                speeds.push(raw_insert_postgres(&mut conn, &table, rows).await);
            }
            let stored = sqlx::query_scalar("SELECT COUNT(*) FROM events")
                .fetch_one(&mut conn)
                .await
                .expect("counting events");
            let version: String = sqlx::query_scalar("SHOW server_version")
                .fetch_one(&mut conn)
                .await
                .expect("server_version");
            (speeds, format!("PostgreSQL {version}"), stored)
        }
    }
}

struct Phase {
    label: String,
    measured: Measured,
    raw_rows_per_sec: f64,
    cpu: CpuUse,
    target: Option<(String, bool)>,
}

/// The same phases again on a fresh server with the fifty-buckets module loaded.
struct BucketRun {
    /// Single posts, then batches, as in [`BackendReport::phases`].
    phases: [(Measured, CpuUse); 2],
    work: BucketWork,
}

/// What the buckets did during a bucket run, read from the stopped server's database.
#[derive(Default)]
struct BucketWork {
    /// `bucket:entered:*` and `bucket:left:*` events: the transitions.
    entered: i64,
    left: i64,
    /// `bucket_memberships` rows (one per join) and how many are still active.
    memberships: i64,
    active: i64,
    /// Membership rows per bucket id, for the buckets that have any.
    per_bucket: Vec<(String, i64)>,
    /// Events in the `events` table other than transitions.
    stored: i64,
}

struct BackendReport {
    backend: Backend,
    database: String,
    phases: Vec<Phase>,
    buckets: Option<BucketRun>,
    notes: Vec<String>,
}

/// The request bodies of one run: the same for every backend and every server.
#[derive(Clone)]
struct Bodies {
    warmup: Vec<Vec<u8>>,
    single: Vec<Vec<u8>>,
    batch: Vec<Vec<u8>>,
    batch_counts: Vec<usize>,
}

/// What [`drive`] measured on one server.
struct Driven {
    warm: Measured,
    single: Measured,
    single_cpu: CpuUse,
    batches: Measured,
    batch_cpu: CpuUse,
}

impl Driven {
    fn failures(&self) -> usize {
        self.warm.failures + self.single.failures + self.batches.failures
    }

    fn acknowledged(&self) -> usize {
        self.warm.events + self.single.events + self.batches.events
    }
}

/// Start one server per module set (`waymark serve` without rate limits, plus the configured flags,
/// each on a fresh data dir and, for PostgreSQL, a fresh database) and send each the warm-up.
/// Then measure the single posts and the batches on all of them, interleaved
/// ([`measure_interleaved`]). The servers are left running.
async fn drive(
    config: &Config,
    backend: Backend,
    module_sets: &[Vec<&'static str>],
    bodies: Bodies,
    notes: &mut Vec<String>,
) -> Vec<(Server, Driven)> {
    let mut extra_args = common::unthrottled();
    extra_args.extend(config.server_args.iter().cloned());
    let mut servers = Vec::new();
    for modules in module_sets {
        servers.push(
            Server::start(ServerOptions {
                backend,
                dev: false,
                modules: modules.clone(),
                extra_args: extra_args.clone(),
                ..ServerOptions::default()
            })
            .await,
        );
    }
    let database_urls = servers
        .iter()
        .filter_map(|server| Some(server.database.as_ref()?.url.clone()))
        .collect();
    let stats = StatsKeeper::start(database_urls, config.analyze_every).await;
    let Bodies {
        warmup,
        single,
        batch,
        batch_counts,
    } = bodies;
    let ones = vec![1; warmup.len().max(single.len())];
    let mut warm = Vec::new();
    for server in &servers {
        let bodies = warmup.clone();
        let measured = post_bodies(
            server,
            "/v1/events",
            bodies,
            &ones,
            config.concurrency,
            None,
        );
        warm.push(measured.await);
    }
    let singles = measure_interleaved(
        &servers,
        "/v1/events",
        &single,
        &ones,
        config.concurrency,
        config.slices,
    )
    .await;
    let batches = measure_interleaved(
        &servers,
        "/v1/events/batch",
        &batch,
        &batch_counts,
        config.in_flight,
        config.slices,
    )
    .await;
    if let Some(stats) = stats {
        let analyzed = stats.stop();
        notes.push(format!(
            "autovacuum is off in this PostgreSQL: the bench stood in for its ANALYZE every \
             {} s (tables changed by 50 rows + 10% since their last), {analyzed} ANALYZE(s)",
            config.analyze_every.as_secs()
        ));
    }
    let mut driven = Vec::new();
    for (((server, warm), single), batches) in
        servers.into_iter().zip(warm).zip(singles).zip(batches)
    {
        let driven_one = Driven {
            warm,
            single: single.measured,
            single_cpu: single.cpu,
            batches: batches.measured,
            batch_cpu: batches.cpu,
        };
        let failures = driven_one.failures();
        if failures > 0 {
            let log = server.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            notes.push(format!(
                "{failures} request(s) failed; the server log ends:\n    {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            ));
        }
        let idle = single.idle_seconds + batches.idle_seconds;
        let busy = single.cpu.server_seconds + batches.cpu.server_seconds;
        if idle > 0.02 * busy {
            notes.push(format!(
                "a server used {idle:.2} s of CPU while another was measured ({busy:.2} s while \
                 measured itself): background work that lands on the other server's time"
            ));
        }
        driven.push((server, driven_one));
    }
    driven
}

/// Autovacuum's ANALYZE, done by the bench for a server that has autovacuum off (the README
/// asks for it on, and this machine's PostgreSQL has it off). Without statistics, every
/// connection plans each statement once, at whatever size its tables had then, and keeps the
/// plan: where two indexes cost the same on a tiny table, the choice is a lottery per
/// connection, and a loser walks every event of the tenant for one person's count (measured:
/// 10-60 ms a count instead of 0.03 ms; two runs of the same code measured batch ratios of
/// 0.34x and 1.01x).
/// An ANALYZE gives the planner the tables' real shape and makes every connection plan again.
/// Autovacuum's rule: a table is analyzed once more than 50 rows + 10% of it changed since the
/// last; its naptime (60 s) is shortened here to `period`, as the bench's minutes stand for a
/// deployment's hours of growth.
struct StatsKeeper {
    task: tokio::task::JoinHandle<()>,
    analyzed: Arc<AtomicUsize>,
}

impl StatsKeeper {
    async fn start(database_urls: Vec<String>, period: Duration) -> Option<StatsKeeper> {
        if database_urls.is_empty() || period.is_zero() {
            return None;
        }
        let mut conns = Vec::new();
        for url in &database_urls {
            conns.push(sqlx::PgConnection::connect(url).await.expect("connecting"));
        }
        let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&mut conns[0])
            .await
            .expect("reading autovacuum");
        if autovacuum == "on" {
            return None;
        }
        let analyzed = Arc::new(AtomicUsize::new(0));
        let count = analyzed.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                for conn in &mut conns {
                    let due: Vec<String> = sqlx::query_scalar(
                        "SELECT s.relname::text FROM pg_stat_user_tables s \
                         JOIN pg_class c ON c.oid = s.relid \
                         WHERE s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0)",
                    )
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap_or_default();
                    for table in due {
                        let analyze = format!("ANALYZE \"{table}\"");
                        if sqlx::query(sqlx::AssertSqlSafe(analyze))
                            .execute(&mut *conn)
                            .await
                            .is_ok()
                        {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Some(StatsKeeper { task, analyzed })
    }

    /// Stop; how many tables it analyzed.
    fn stop(self) -> usize {
        self.task.abort();
        self.analyzed.load(Ordering::Relaxed)
    }
}

/// One phase on every server.
#[derive(Default)]
struct Interleaved {
    measured: Measured,
    /// The server's CPU while its own slices ran.
    cpu: CpuUse,
    /// The server's CPU while another server's slices ran.
    idle_seconds: f64,
}

/// Send one phase's bodies to every server, interleaved: the bodies go in `slices` slices,
/// and every slice to every server in turn, the order reversed on every other slice. A drift in
/// the machine's speed (which on a shared 2-core machine is a third within minutes) then lands
/// on every server alike, and the ratio between two servers compares like with like. Each
/// server's figures are the sum over its slices.
async fn measure_interleaved(
    servers: &[Server],
    path: &str,
    bodies: &[Vec<u8>],
    events_per_body: &[usize],
    clients: usize,
    slices: usize,
) -> Vec<Interleaved> {
    let pids: Vec<u32> = servers
        .iter()
        .map(|server| server.pid().expect("the server is running"))
        .collect();
    let mut totals: Vec<Interleaved> = servers.iter().map(|_| Interleaved::default()).collect();
    let per_slice = bodies.len().div_ceil(slices.max(1)).max(1);
    for (i, (slice, counts)) in bodies
        .chunks(per_slice)
        .zip(events_per_body.chunks(per_slice))
        .enumerate()
    {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if i % 2 == 1 {
            order.reverse();
        }
        let every_server_cpu =
            || -> Vec<f64> { pids.iter().map(|&pid| process_cpu_seconds(pid)).collect() };
        for s in order {
            let idle_before = every_server_cpu();
            let before = CpuSample::now_for(pids[s]);
            let measured =
                post_bodies(&servers[s], path, slice.to_vec(), counts, clients, None).await;
            let cpu = CpuSample::now_for(pids[s]).since(before);
            let idle_after = every_server_cpu();
            let total = &mut totals[s];
            total.measured.absorb(measured);
            total.cpu = total.cpu.plus(cpu);
            for (o, other) in totals.iter_mut().enumerate().filter(|(o, _)| *o != s) {
                other.idle_seconds += idle_after[o] - idle_before[o];
            }
        }
    }
    totals
}

async fn run_backend(config: Arc<Config>, backend: Backend) -> BackendReport {
    // The workload: the same for every backend. New users (`user-{n}`) come back as others do.
    let new_users = config.new_user_percent;
    let mut workload = Workload::new(0x5EED, new_users, "user-", Newcomers::Join, activity);
    let warmup: Vec<Value> = (0..WARMUP_EVENTS).map(|_| workload.event()).collect();
    let singles: Vec<Value> = (0..config.events).map(|_| workload.event()).collect();
    let batched: Vec<Value> = (0..config.batch_events).map(|_| workload.event()).collect();
    let single_rows: Vec<RawRow> = singles.iter().map(RawRow::from_event).collect();
    let batch_rows: Vec<RawRow> = batched.iter().map(RawRow::from_event).collect();
    let bodies = Bodies {
        warmup: warmup.iter().map(serialise).collect(),
        single: singles.iter().map(serialise).collect(),
        batch: batched.chunks(config.batch_size).map(batch_body).collect(),
        batch_counts: batched
            .chunks(config.batch_size)
            .map(<[Value]>::len)
            .collect(),
    };
    drop((warmup, singles, batched));

    let mut notes = Vec::new();
    let mut module_sets = vec![vec![]];
    if config.buckets {
        module_sets.push(vec![BUCKETS_MODULE]);
    }
    let mut servers = drive(&config, backend, &module_sets, bodies, &mut notes).await;
    // Stop the servers, then measure the database itself.
    for (server, _) in &mut servers {
        server.kill();
    }
    let with_buckets = config.buckets.then(|| servers.pop()).flatten();
    let (server, driven) = servers.pop().expect("the server without buckets");
    let (raw, database, stored) = raw_speeds(&server, backend, &[&single_rows, &batch_rows]).await;
    let sent = driven.acknowledged();
    if stored as usize != sent {
        notes.push(format!(
            "the events table holds {stored} events; {sent} were acknowledged"
        ));
    }
    drop(server);
    drop((single_rows, batch_rows));

    let buckets = match with_buckets {
        Some((server, with)) => {
            let work = bucket_work(&server, backend).await;
            let sent = with.acknowledged();
            if work.stored as usize != sent {
                notes.push(format!(
                    "with buckets, the events table holds {} events besides transitions; \
                     {sent} were acknowledged",
                    work.stored
                ));
            }
            Some(BucketRun {
                phases: [
                    (with.single, with.single_cpu),
                    (with.batches, with.batch_cpu),
                ],
                work,
            })
        }
        None => None,
    };

    let Driven {
        single,
        single_cpu,
        batches,
        batch_cpu,
        ..
    } = driven;
    let sqlite = backend == Backend::Sqlite;
    let single_target = sqlite.then(|| {
        let met = single.failures == 0
            && single.events_per_sec() >= TARGET_SINGLE_EVENTS_PER_SEC
            && single.percentile_ms(99.0) < TARGET_SINGLE_P99_MS;
        (
            format!(
                ">= {:.0}/s, p99 < {:.0} ms",
                TARGET_SINGLE_EVENTS_PER_SEC, TARGET_SINGLE_P99_MS
            ),
            met,
        )
    });
    let batch_target = sqlite.then(|| {
        let met = batches.failures == 0 && batches.events_per_sec() >= TARGET_BATCH_EVENTS_PER_SEC;
        (format!(">= {:.0}/s", TARGET_BATCH_EVENTS_PER_SEC), met)
    });
    BackendReport {
        backend,
        database,
        phases: vec![
            Phase {
                label: format!("single POST, {} clients", config.concurrency),
                measured: single,
                raw_rows_per_sec: raw[0],
                cpu: single_cpu,
                target: single_target,
            },
            Phase {
                label: format!(
                    "batch of {}, {} in flight",
                    config.batch_size, config.in_flight
                ),
                measured: batches,
                raw_rows_per_sec: raw[1],
                cpu: batch_cpu,
                target: batch_target,
            },
        ],
        buckets,
        notes,
    }
}

/// The transition counts and membership rows of the bucket run (server stopped).
const BUCKET_WORK_SQL: [&str; 4] = [
    "SELECT \
       COALESCE(SUM(CASE WHEN name LIKE 'bucket:entered:%' THEN 1 ELSE 0 END), 0), \
       COALESCE(SUM(CASE WHEN name LIKE 'bucket:left:%' THEN 1 ELSE 0 END), 0), \
       COALESCE(SUM(CASE WHEN name LIKE 'bucket:%' THEN 0 ELSE 1 END), 0) \
     FROM events",
    "SELECT COUNT(*) FROM bucket_memberships",
    "SELECT COUNT(*) FROM bucket_memberships WHERE status = 'active'",
    "SELECT bucket_id, COUNT(*) FROM bucket_memberships GROUP BY bucket_id ORDER BY bucket_id",
];

async fn bucket_work(server: &Server, backend: Backend) -> BucketWork {
    let [events_sql, memberships_sql, active_sql, per_bucket_sql] = BUCKET_WORK_SQL;
    match backend {
        Backend::Sqlite => {
            let path = server.data_dir.path().join("waymark.db");
            tokio::task::block_in_place(|| {
                let conn = rusqlite::Connection::open(&path).expect("opening the SQLite database");
                let (entered, left, stored) = conn
                    .query_row(events_sql, [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .expect("counting transition events");
                let count = |sql: &str| -> i64 {
                    conn.query_row(sql, [], |row| row.get(0))
                        .expect("counting memberships")
                };
                let mut statement = conn
                    .prepare(per_bucket_sql)
                    .expect("preparing the per-bucket count");
                let per_bucket = statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .expect("counting memberships per bucket")
                    .collect::<Result<_, _>>()
                    .expect("reading the per-bucket counts");
                BucketWork {
                    entered,
                    left,
                    memberships: count(memberships_sql),
                    active: count(active_sql),
                    per_bucket,
                    stored,
                }
            })
        }
        Backend::Postgres => {
            let url = &server.database.as_ref().expect("a PostgreSQL database").url;
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connecting to PostgreSQL");
            let (entered, left, stored): (i64, i64, i64) = sqlx::query_as(events_sql)
                .fetch_one(&mut conn)
                .await
                .expect("counting transition events");
            let memberships = sqlx::query_scalar(memberships_sql)
                .fetch_one(&mut conn)
                .await
                .expect("counting memberships");
            let active = sqlx::query_scalar(active_sql)
                .fetch_one(&mut conn)
                .await
                .expect("counting active memberships");
            let per_bucket = sqlx::query_as(per_bucket_sql)
                .fetch_all(&mut conn)
                .await
                .expect("counting memberships per bucket");
            BucketWork {
                entered,
                left,
                memberships,
                active,
                per_bucket,
                stored,
            }
        }
    }
}

fn print_report(config: &Config, reports: &[BackendReport]) {
    println!();
    println!("Waymark ingest benchmark, {}", today());
    println!("machine: {}", machine());
    println!(
        "workload: {} single events from {} clients; {} events in batches of {} ({} in flight); \
         {}% new users; idempotency key on half; {} warm-up events first",
        thousands(config.events as f64),
        config.concurrency,
        thousands(config.batch_events as f64),
        config.batch_size,
        config.in_flight,
        config.new_user_percent,
        WARMUP_EVENTS
    );
    println!(
        "raw: multi-row INSERTs of {RAW_CHUNK} rows, one transaction each, one connection, \
         into a scratch table shaped like events (same indexes), the server stopped"
    );
    println!();
    let header = format!(
        "{:<11} {:<28} {:>8} {:>7} {:>9} {:>8} {:>8} {:>10} {:>7} {:>10} {:>9}  {}",
        "backend",
        "phase",
        "events",
        "secs",
        "events/s",
        "p50 ms",
        "p99 ms",
        "raw rows/s",
        "ratio",
        "server CPU",
        "busy(gen)",
        "target"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len() + 12));
    for report in reports {
        let name = match report.backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        };
        for phase in &report.phases {
            let m = &phase.measured;
            let failed = if m.failures > 0 {
                format!(" ({} of {} requests FAILED)", m.failures, m.requests)
            } else {
                String::new()
            };
            let target = match &phase.target {
                Some((text, met)) => format!("{text}: {}", if *met { "MET" } else { "MISSED" }),
                None => "-".into(),
            };
            println!(
                "{:<11} {:<28} {:>8} {:>7.2} {:>9} {:>8.2} {:>8.2} {:>10} {:>6.2}x {:>6.0} us {:>4.0}%({:>2.0}%)  {target}{failed}",
                name,
                phase.label,
                thousands(m.events as f64),
                m.elapsed.as_secs_f64(),
                thousands(m.events_per_sec()),
                m.percentile_ms(50.0),
                m.percentile_ms(99.0),
                thousands(phase.raw_rows_per_sec),
                m.events_per_sec() / phase.raw_rows_per_sec,
                1e6 * phase.cpu.server_seconds / m.events.max(1) as f64,
                phase.cpu.machine_busy_percent,
                phase.cpu.generator_percent,
            );
        }
    }
    println!();
    println!(
        "ratio = Waymark events/s / raw rows/s of the same count. server CPU = the server \
         process's CPU time per event (user + system, all threads). busy(gen) = the machine's \
         busy CPU during the phase (of all cores) and, in brackets, the load generator's share."
    );
    if reports.iter().any(|r| r.buckets.is_some()) {
        print_buckets(reports);
    }
    for report in reports {
        println!("{:?}: {}", report.backend, report.database);
        for note in &report.notes {
            println!("  NOTE: {note}");
        }
    }
}

/// The phases with the fifty-buckets module loaded, against the same phases without it.
fn print_buckets(reports: &[BackendReport]) {
    println!();
    println!(
        "With {BUCKETS_MODULE} loaded (50 computed buckets, 5 about this workload), fresh server, \
         same workload:"
    );
    let header = format!(
        "{:<11} {:<28} {:>9} {:>8} {:>8} {:>9} {:>10} {:>10} {:>9}  {}",
        "backend",
        "phase",
        "events/s",
        "p50 ms",
        "p99 ms",
        "none/s",
        "ratio",
        "server CPU",
        "busy(gen)",
        "target"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len() + 12));
    for report in reports {
        let Some(run) = &report.buckets else { continue };
        let name = match report.backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        };
        for (phase, (m, cpu)) in report.phases.iter().zip(&run.phases) {
            let none = phase.measured.events_per_sec();
            let ratio = m.events_per_sec() / none;
            let met =
                m.failures == 0 && phase.measured.failures == 0 && ratio >= TARGET_BUCKET_RATIO;
            let failed = if m.failures > 0 {
                format!(" ({} of {} requests FAILED)", m.failures, m.requests)
            } else {
                String::new()
            };
            println!(
                "{:<11} {:<28} {:>9} {:>8.2} {:>8.2} {:>9} {:>9.2}x {:>7.0} us {:>4.0}%({:>2.0}%)  \
                 >= {TARGET_BUCKET_RATIO:.2}x: {}{failed}",
                name,
                phase.label,
                thousands(m.events_per_sec()),
                m.percentile_ms(50.0),
                m.percentile_ms(99.0),
                thousands(none),
                ratio,
                1e6 * cpu.server_seconds / m.events.max(1) as f64,
                cpu.machine_busy_percent,
                cpu.generator_percent,
                if met { "MET" } else { "MISSED" },
            );
        }
    }
    println!();
    println!(
        "ratio = events/s with 50 buckets / events/s with none (none/s, the table above). \
         Transitions are the bucket:entered:* / bucket:left:* events the host stored; \
         memberships are bucket_memberships rows (one per join)."
    );
    for report in reports {
        let Some(run) = &report.buckets else { continue };
        let work = &run.work;
        let per_bucket: Vec<String> = work
            .per_bucket
            .iter()
            .map(|(id, n)| format!("{id} {}", thousands(*n as f64)))
            .collect();
        println!(
            "{:?} with buckets: {} transitions ({} entered, {} left); {} memberships ({} active) \
             in {} of 50 buckets: {}",
            report.backend,
            thousands((work.entered + work.left) as f64),
            thousands(work.entered as f64),
            thousands(work.left as f64),
            thousands(work.memberships as f64),
            thousands(work.active as f64),
            work.per_bucket.len(),
            if per_bucket.is_empty() {
                "none".to_owned()
            } else {
                per_bucket.join(", ")
            },
        );
    }
}

#[tokio::main]
async fn main() {
    if !under_cargo_bench("ingest", "ingest") {
        return;
    }
    let config = Arc::new(Config::from_env());
    if config.buckets {
        // Before the idle check: the build is the busiest thing the bench does.
        let built = build_modules(&format!("the {BUCKETS_MODULE} module"));
        let module = built.join(format!("{BUCKETS_MODULE}.wasm"));
        assert!(module.is_file(), "{} was not built", module.display());
    }
    // Other work on the machine skews every number: say so.
    let before = CpuSample::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_busy = CpuSample::now().since(before).machine_busy_percent;
    let mut rounds = Vec::new();
    for round in 1..=config.rounds {
        if config.rounds > 1 {
            println!("round {round} of {}", config.rounds);
        }
        let reports = run_round(&config).await;
        print_report(&config, &reports);
        rounds.push(reports);
    }
    if config.rounds > 1 {
        print_rounds(&rounds);
    }
    println!("machine busy before the run: {idle_busy:.0}% of all cores");
    if idle_busy > 15.0 {
        println!("WARNING: the machine was not idle; these numbers understate Waymark");
    }
}

/// Every configured backend once.
async fn run_round(config: &Arc<Config>) -> Vec<BackendReport> {
    let mut reports = Vec::new();
    for &backend in &config.backends {
        println!("running on {backend:?}…");
        // A backend that cannot start (or panics) is reported, and the others still run.
        match tokio::spawn(run_backend(config.clone(), backend)).await {
            Ok(report) => reports.push(report),
            Err(error) => {
                let reason = match error.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default(),
                    Err(error) => error.to_string(),
                };
                let reason: String = reason.lines().take(12).collect::<Vec<_>>().join("\n    ");
                println!("{backend:?}: the benchmark could not run:\n    {reason}");
            }
        }
    }
    reports
}

/// Each phase's figures round by round and their medians; the targets judged on the medians.
fn print_rounds(rounds: &[Vec<BackendReport>]) {
    println!();
    println!(
        "Summary of {} rounds (medians judge the targets):",
        rounds.len()
    );
    let Some(first) = rounds.first() else { return };
    for report in first {
        let of_backend: Vec<&BackendReport> = rounds
            .iter()
            .filter_map(|round| round.iter().find(|r| r.backend == report.backend))
            .collect();
        for (p, phase) in report.phases.iter().enumerate() {
            let rates: Vec<f64> = of_backend
                .iter()
                .map(|r| r.phases[p].measured.events_per_sec())
                .collect();
            let raw_ratios: Vec<f64> = of_backend
                .iter()
                .map(|r| r.phases[p].measured.events_per_sec() / r.phases[p].raw_rows_per_sec)
                .collect();
            let listed = |values: &[f64], show: &dyn Fn(f64) -> String| {
                values
                    .iter()
                    .map(|v| show(*v))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let target = match &phase.target {
                // Throughput targets only: p99 is judged per round, above.
                Some((target, _)) if p == 1 => format!(
                    "  {target}: {}",
                    if median(rates.clone()) >= TARGET_BATCH_EVENTS_PER_SEC {
                        "MET"
                    } else {
                        "MISSED"
                    }
                ),
                _ => String::new(),
            };
            println!(
                "{:?} {}: events/s {} (median {}); ÷ raw {} (median {:.2}x){target}",
                report.backend,
                phase.label,
                listed(&rates, &|v| thousands(v)),
                thousands(median(rates.clone())),
                listed(&raw_ratios, &|v| format!("{v:.2}x")),
                median(raw_ratios.clone()),
            );
            let bucket_ratios: Vec<f64> = of_backend
                .iter()
                .filter_map(|r| {
                    let (with, _) = &r.buckets.as_ref()?.phases[p];
                    Some(with.events_per_sec() / r.phases[p].measured.events_per_sec())
                })
                .collect();
            if !bucket_ratios.is_empty() {
                let ratio = median(bucket_ratios.clone());
                println!(
                    "{:?} {} with 50 buckets ÷ none: {} (median {ratio:.2}x)  >= \
                     {TARGET_BUCKET_RATIO:.2}x: {}",
                    report.backend,
                    phase.label,
                    listed(&bucket_ratios, &|v| format!("{v:.2}x")),
                    if ratio >= TARGET_BUCKET_RATIO {
                        "MET"
                    } else {
                        "MISSED"
                    }
                );
            }
        }
    }
}
