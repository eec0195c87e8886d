//! PostgreSQL with sleeping runs (issue 24): does ingest hold up as the runs asleep in the
//! database pile up? The real `waymark` binary over real HTTP, PostgreSQL only.
//!
//! ```sh
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench sleeping
//! ```
//!
//! It starts `waymark serve --rate-limit 0` on a fresh database with the example modules
//! `welcome-series`, `trial-conversion` and `win-back` loaded (and the `bench-journeys` test
//! guest, whose journeys only `bench.*` events start), then:
//!
//! 1. **A real person first.** One person signs up (`user.signed_up`) and starts a trial
//!    (`trial.started`) through the API; once both runs are `waiting` (the welcome run asleep
//!    for two days, the trial run waiting up to three days for `order.paid`) and both emails
//!    went out, their rows are read back from every table the sign-up changed. Any table
//!    changed that the seeding below does not clone stops the bench.
//! 2. **Seeding, with SQL.** For each size N of the sweep (cumulative), the people up to N
//!    are cloned from those rows on the bench's own connection, `generate_series` a table at
//!    a time: contact, sign-up event, welcome run (its `input`, `module_hash` and journal as
//!    the real one's), its email and its timer — due one to two days from now, spread over
//!    that day — and for every tenth person the trial's event, run, journal, email and
//!    `order.paid` wait. The first seeded person's rows are checked to be the real person's,
//!    ids and key aside (the same columns and values, parsed), and the host serves their runs
//!    with the same timeline. Then a `CHECKPOINT` (so the seeding's writes do not land on the
//!    measurement), and a wait of at least 15 s until the host's own statistics upkeep
//!    (every 10 s) has analyzed `runs` and `timers`: the bench runs no ANALYZE.
//! 3. **Measured at each N**, `WAYMARK_BENCH_ROUNDS` [2] rounds, each: single
//!    `POST /v1/events` from `WAYMARK_BENCH_CONCURRENCY` [64] keep-alive clients for
//!    `WAYMARK_BENCH_SECS` [10] s (events/s, p50/p99), then batches of 1,000 with
//!    `WAYMARK_BENCH_IN_FLIGHT` [4] in flight for as long (events/s). Events: 20% sign-ups
//!    of new people (each starts a welcome run, so activations run alongside ingest), 80%
//!    `feature.used` or `app.active` of seeded people picked at random (contact properties
//!    as the ingest bench sends them, the email on 30%, an idempotency key on half). After
//!    each phase the bench waits until no run is due an activation and the outbox is empty
//!    (reported as "settle"), and then 11 s more, so every server connection has flushed
//!    its statistics before they are read.
//! 4. **Activations per second at each N**: `WAYMARK_BENCH_RUNS` [5000] people trigger
//!    `bench-journeys`' `burst` (one activation each), in batches of 1,000; the clock runs
//!    from the first batch until all completed, the ingest alone reported apart.
//!
//! For every phase it prints the CPU the server and PostgreSQL (every `postgres` process)
//! used per event, and from `pg_stat_database` / `pg_stat_user_tables` /
//! `pg_statio_user_tables` deltas per event: transactions, index scans, rows read from `runs`
//! and `timers`, blocks touched (and those not in shared buffers), rows read by sequential
//! scans of the tables that grow (none expected), and the same split by table. While it
//! measures, the bench's own connection runs with `track_counts = off`, so its own queries
//! (settling, counting) stay out of these counters.
//!
//! `WAYMARK_BENCH_SLEEPING` [10000,100000,1000000] sets the sweep. Run through `cargo bench`
//! only.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::load::{Measured, batch_body, post_bodies, serialise, trigger};
use common::workload::{Newcomers, PAGES, Rng, SOURCES, Workload, sign_up};
use common::{
    CpuSample, build_modules, commit, env_or, load_average, machine, median, now_ms,
    process_cpu_seconds, today, under_cargo_bench,
};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions};

/// The issue's targets (2-core machine, ≥ 100,000 sleeping runs).
const TARGET_SINGLE: f64 = 3_000.0;
const TARGET_BATCH: f64 = 8_000.0;
const TARGET_ACTIVATIONS: f64 = 2_000.0;
/// The real person every seeded one is cloned from.
const TEMPLATE_KEY: &str = "sleeper-tmpl";
/// Every how many seeded people also have a trial-conversion run waiting for `order.paid`.
const TRIAL_EVERY: i64 = 10;
/// People per seeding statement.
const SEED_CHUNK: i64 = 100_000;
/// Tables the seeding clones.
const CLONED: [&str; 6] = ["contacts", "events", "runs", "journal", "timers", "emails"];
/// Tables a tenant's first email writes once (not per person).
const PER_TENANT: [&str; 1] = ["email_signing_keys"];
/// Tables that grow with a tenant's data (as `tests/tests/pg_plans.rs` lists them).
const GROWING: &str = "('contacts', 'contact_aliases', 'events', 'runs', 'journal', 'timers', \
     'emails', 'bucket_memberships', 'journey_skips', 'email_preferences', 'run_effects', \
     'bucket_absence_cursors')";
/// After a phase settled: longer than PostgreSQL's 10 s idle flush of a backend's statistics.
const STATS_FLUSH: Duration = Duration::from_secs(11);

struct Config {
    sleeping: Vec<i64>,
    rounds: usize,
    secs: u64,
    concurrency: usize,
    in_flight: usize,
    runs: usize,
    new_user_percent: u64,
}

impl Config {
    fn from_env() -> Config {
        let sleeping = env_or("WAYMARK_BENCH_SLEEPING", "10000,100000,1000000".to_owned())
            .split(',')
            .map(|n| n.trim().parse().expect("WAYMARK_BENCH_SLEEPING: numbers"))
            .collect();
        Config {
            sleeping,
            rounds: env_or("WAYMARK_BENCH_ROUNDS", 2usize).max(1),
            secs: env_or("WAYMARK_BENCH_SECS", 10u64).max(1),
            concurrency: env_or("WAYMARK_BENCH_CONCURRENCY", 64usize).max(1),
            in_flight: env_or("WAYMARK_BENCH_IN_FLIGHT", 4usize).max(1),
            runs: env_or("WAYMARK_BENCH_RUNS", 5_000usize).max(1),
            new_user_percent: env_or("WAYMARK_BENCH_NEW_USERS", 20u64).min(100),
        }
    }
}

const FEATURES: &[&str] = &["export", "share", "filters", "api-keys", "reports"];

/// What a seeded person (`sleeper-{i}`) does when they come back.
fn activity(rng: &mut Rng) -> (&'static str, Value) {
    let name = if rng.below(2) == 0 {
        "feature.used"
    } else {
        "app.active"
    };
    let properties = json!({
        "feature": rng.pick(FEATURES),
        "path": rng.pick(PAGES),
        "durationMs": rng.below(30_000),
        "source": rng.pick(SOURCES),
    });
    (name, properties)
}

// ---------------------------------------------------------------------------------------------
// Sampling: CPU of the server and of PostgreSQL, and PostgreSQL's own counters.

/// CPU ticks (1/100 s) of every process named `postgres`, by pid.
fn postgres_ticks() -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        ticks.insert(pid, field(11) + field(12));
    }
    ticks
}

/// CPU seconds of PostgreSQL's processes between two samples (those that exited in between
/// are lost; new ones count from zero).
fn postgres_seconds(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> f64 {
    after
        .iter()
        .map(|(pid, &t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum::<u64>() as f64
        / 100.0
}

/// A sample of everything a phase's CPU figures are made of.
struct Cpu {
    machine: CpuSample,
    server: f64,
    postgres: HashMap<u32, u64>,
}

impl Cpu {
    fn now(server: &Server) -> Cpu {
        let pid = server.pid().expect("a running server");
        Cpu {
            machine: CpuSample::now_for(pid),
            server: process_cpu_seconds(pid),
            postgres: postgres_ticks(),
        }
    }

    fn since(&self, before: &Cpu) -> CpuSpent {
        let machine = self.machine.since(before.machine);
        CpuSpent {
            server: self.server - before.server,
            postgres: postgres_seconds(&before.postgres, &self.postgres),
            machine_busy: machine.machine_busy_percent,
            generator: machine.generator_percent,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct CpuSpent {
    server: f64,
    postgres: f64,
    machine_busy: f64,
    generator: f64,
}

/// PostgreSQL's counters for the database (`pg_stat_database`, `pg_stat_user_tables`).
#[derive(Clone, Default)]
struct DbStats {
    /// Per table: index scans, rows read (by sequential scans and fetched by index scans), and
    /// blocks touched (heap and indexes, in shared buffers or not).
    per_table: Vec<(String, i64, i64, i64)>,
    xacts: i64,
    idx_scan: i64,
    seq_scan_growing: i64,
    seq_tup_growing: i64,
    runs_timers_rows: i64,
    tup_fetched: i64,
    tup_written: i64,
    blocks: i64,
    /// Blocks not found in shared buffers (read from the OS).
    blocks_read: i64,
}

impl DbStats {
    async fn read(conn: &mut PgConnection) -> DbStats {
        let db: (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::bigint, tup_fetched::bigint, \
             (tup_inserted + tup_updated + tup_deleted)::bigint, (blks_hit + blks_read)::bigint, \
             blks_read::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_database");
        let tables: (i64, i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT COALESCE(sum(COALESCE(idx_scan, 0)), 0)::bigint, \
             COALESCE(sum(seq_scan) FILTER (WHERE relname IN {GROWING}), 0)::bigint, \
             COALESCE(sum(seq_tup_read) FILTER (WHERE relname IN {GROWING}), 0)::bigint, \
             COALESCE(sum(seq_tup_read + COALESCE(idx_tup_fetch, 0)) \
                 FILTER (WHERE relname IN ('runs', 'timers')), 0)::bigint \
             FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        )))
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_user_tables");
        let per_table = sqlx::query_as(
            "SELECT s.relname::text, COALESCE(s.idx_scan, 0)::bigint, \
             (s.seq_tup_read + COALESCE(s.idx_tup_fetch, 0))::bigint, \
             (io.heap_blks_read + io.heap_blks_hit + COALESCE(io.idx_blks_read, 0) \
              + COALESCE(io.idx_blks_hit, 0))::bigint \
             FROM pg_stat_user_tables s JOIN pg_statio_user_tables io ON io.relid = s.relid \
             WHERE s.schemaname = current_schema()",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("pg_stat_user_tables");
        DbStats {
            per_table,
            xacts: db.0,
            tup_fetched: db.1,
            tup_written: db.2,
            blocks: db.3,
            blocks_read: db.4,
            idx_scan: tables.0,
            seq_scan_growing: tables.1,
            seq_tup_growing: tables.2,
            runs_timers_rows: tables.3,
        }
    }

    fn since(self, before: DbStats) -> DbStats {
        let mut per_table: Vec<(String, i64, i64, i64)> = self
            .per_table
            .iter()
            .map(|(table, scans, rows, blocks)| {
                let (s0, r0, b0) = before
                    .per_table
                    .iter()
                    .find(|(t, _, _, _)| t == table)
                    .map_or((0, 0, 0), |(_, s, r, b)| (*s, *r, *b));
                (table.clone(), scans - s0, rows - r0, blocks - b0)
            })
            .collect();
        per_table.sort_by_key(|(_, _, _, blocks)| -blocks);
        DbStats {
            per_table,
            xacts: self.xacts - before.xacts,
            idx_scan: self.idx_scan - before.idx_scan,
            seq_scan_growing: self.seq_scan_growing - before.seq_scan_growing,
            seq_tup_growing: self.seq_tup_growing - before.seq_tup_growing,
            runs_timers_rows: self.runs_timers_rows - before.runs_timers_rows,
            tup_fetched: self.tup_fetched - before.tup_fetched,
            tup_written: self.tup_written - before.tup_written,
            blocks: self.blocks - before.blocks,
            blocks_read: self.blocks_read - before.blocks_read,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The database, on the bench's own connection.

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn execute(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Rows per table of the current schema.
async fn table_counts(conn: &mut PgConnection) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let n = count(conn, &format!("SELECT COUNT(*) FROM \"{table}\"")).await;
        counts.push((table, n));
    }
    counts
}

/// Seconds until no run is due an activation and the outbox is empty.
async fn settled(conn: &mut PgConnection, tenant: &str) -> f64 {
    let start = Instant::now();
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM runs WHERE tenant_id = '{tenant}' AND status = 'active') \
              + (SELECT COUNT(*) FROM emails WHERE status = 'queued')"
    );
    loop {
        if count(conn, &sql).await == 0 {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "runs or emails still pending after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A row as `row_to_json` writes it: columns in table order, `json` columns verbatim.
async fn rows_json(conn: &mut PgConnection, table: &str, filter: &str) -> Vec<String> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT row_to_json(t)::text FROM {table} t WHERE {filter} ORDER BY 1"
    )))
    .fetch_all(conn)
    .await
    .unwrap()
}

/// One group of the real person's rows (their welcome run and what it made, or their trial),
/// to be cloned for people `i` with `i % every == 0`.
struct Group {
    every: i64,
    /// Per table, its rows as JSON text.
    rows: Vec<(&'static str, Vec<String>)>,
    /// Numbers to spread per person: (text as it is in the rows, SQL that replaces it).
    spread: Vec<(String, String)>,
}

/// The real person, read back once their runs are asleep.
struct Template {
    tenant: String,
    /// Every id in the rows (contact, events, runs, emails): each seeded person gets its own.
    ids: Vec<String>,
    contact: Vec<String>,
    welcome: Group,
    trial: Group,
    welcome_run: String,
    trial_run: String,
}

/// The id person `i` gets for the template's `k`th id: the same UUIDv7 time and random prefix,
/// then `k` and `i` as its last 12 hex digits (ids made in one millisecond can share the
/// prefix: the UUIDv7 counter runs into the last group).
fn derived_id(template: &Template, k: usize, i: i64) -> String {
    format!("{}{k:x}{i:011x}", &template.ids[k][..24])
}

/// [`derived_id`] of the template id `id`.
fn derived(template: &Template, id: &str, i: i64) -> String {
    let k = template
        .ids
        .iter()
        .position(|t| t == id)
        .expect("a template id");
    derived_id(template, k, i)
}

/// SQL for one template row (`t.tmpl`) made person `s.i`'s.
fn person_expr(template: &Template, spread: &[(String, String)]) -> String {
    let mut expr = format!("replace(t.tmpl, '{TEMPLATE_KEY}', 'sleeper-' || s.i)");
    for (k, id) in template.ids.iter().enumerate() {
        expr = format!(
            "replace({expr}, '{id}', '{}{k:x}' || lpad(to_hex(s.i), 11, '0'))",
            &id[..24]
        );
    }
    for (from, to) in spread {
        expr = format!("replace({expr}, '{from}', {to})");
    }
    expr
}

/// Clone `rows` of `table` for people `from..to` with `i % every == 0`.
async fn clone_rows(
    conn: &mut PgConnection,
    template: &Template,
    table: &str,
    rows: &[String],
    spread: &[(String, String)],
    (from, to, every): (i64, i64, i64),
) {
    // A JSON `null` in a NOT NULL json column comes out of json_populate_record as SQL NULL.
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let select = columns
        .iter()
        .map(
            |(name, kind, nullable)| match (kind.as_str(), nullable.as_str()) {
                ("json" | "jsonb", "NO") => format!("COALESCE(r.{name}, 'null'::{kind})"),
                _ => format!("r.{name}"),
            },
        )
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {table} SELECT {select} FROM generate_series($2::bigint, $3::bigint) AS s(i) \
         CROSS JOIN unnest($1::text[]) AS t(tmpl) \
         CROSS JOIN LATERAL json_populate_record(NULL::{table}, ({})::json) AS r \
         WHERE s.i % $4 = 0",
        person_expr(template, spread)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(rows)
        .bind(from)
        .bind(to - 1)
        .bind(every)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("seeding {table}: {e}"));
}

/// Seed people `from..to`, a chunk at a time.
async fn seed(conn: &mut PgConnection, template: &Template, from: i64, to: i64) {
    let mut at = from;
    while at < to {
        let end = (at + SEED_CHUNK).min(to);
        clone_rows(
            conn,
            template,
            "contacts",
            &template.contact,
            &[],
            (at, end, 1),
        )
        .await;
        for group in [&template.welcome, &template.trial] {
            for (table, rows) in &group.rows {
                clone_rows(
                    conn,
                    template,
                    table,
                    rows,
                    &group.spread,
                    (at, end, group.every),
                )
                .await;
            }
        }
        at = end;
    }
}

/// Wait until `sql` (a count) reaches `want`.
async fn wait_count(conn: &mut PgConnection, sql: &str, want: i64) {
    let start = Instant::now();
    while count(conn, sql).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out on {sql} = {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real person: signs up and starts a trial through the API; their rows once asleep.
async fn make_template(server: &Server, conn: &mut PgConnection) -> Template {
    let before = table_counts(conn).await;
    let mut rng = Rng(0x7E3A);
    let signed_up = server.send_event(sign_up(&mut rng, TEMPLATE_KEY)).await;
    let trial = server
        .send_event(json!({"name": "trial.started", "userId": TEMPLATE_KEY,
                           "eventProperties": {"plan": "pro", "source": "pricing-page"}}))
        .await;
    let welcome_run = support::started_run(&signed_up);
    let trial_run = support::started_run(&trial);
    let key = TEMPLATE_KEY;
    wait_count(
        conn,
        &format!("SELECT COUNT(*) FROM runs WHERE contact_key = '{key}' AND status = 'waiting'"),
        2,
    )
    .await;
    wait_count(
        conn,
        &format!("SELECT COUNT(*) FROM emails WHERE contact_key = '{key}' AND status = 'sent'"),
        2,
    )
    .await;
    // Anything else the sign-up wrote would have to be seeded too.
    let after = table_counts(conn).await;
    let changed: Vec<String> = after
        .iter()
        .filter(|(table, n)| before.iter().find(|(t, _)| t == table).map(|(_, b)| b) != Some(n))
        .map(|(table, n)| format!("{table} ({n})"))
        .collect();
    let unseeded: Vec<&String> = changed
        .iter()
        .filter(|t| {
            !CLONED
                .iter()
                .chain(&PER_TENANT)
                .any(|c| t.starts_with(&format!("{c} ")))
        })
        .collect();
    assert!(
        unseeded.is_empty(),
        "a sign-up and a trial also wrote {unseeded:?}, which the seeding does not clone"
    );
    println!("a real sign-up and trial wrote to: {}", changed.join(", "));

    let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM runs WHERE id = $1")
        .bind(&welcome_run)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let active: String = sqlx::query_scalar(
        "SELECT active_hash FROM modules WHERE tenant_id = $1 AND name = 'welcome-series'",
    )
    .bind(&tenant)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let pinned: String = sqlx::query_scalar("SELECT module_hash FROM runs WHERE id = $1")
        .bind(&welcome_run)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(pinned, active, "the welcome run is on the deployed version");

    let contact = rows_json(conn, "contacts", &format!("key = '{key}'")).await;
    let mut ids: Vec<String> = Vec::new();
    for (table, filter) in [
        ("contacts", format!("key = '{key}'")),
        ("events", format!("contact_key = '{key}'")),
        ("runs", format!("contact_key = '{key}'")),
        ("emails", format!("contact_key = '{key}'")),
    ] {
        let found: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE {filter}"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        ids.extend(found);
    }
    for id in &ids {
        assert!(
            id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "not a UUID: {id}"
        );
    }
    assert!(ids.len() <= 16, "one hex digit numbers the template's ids");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "template ids repeat: {ids:?}");

    let mut groups = Vec::new();
    for (run, event, every) in [
        (&welcome_run, "user.signed_up", 1),
        (&trial_run, "trial.started", TRIAL_EVERY),
    ] {
        let by_run = format!("run_id = '{run}'");
        let rows = vec![
            (
                "events",
                rows_json(
                    conn,
                    "events",
                    &format!("contact_key = '{key}' AND name = '{event}'"),
                )
                .await,
            ),
            (
                "runs",
                rows_json(conn, "runs", &format!("id = '{run}'")).await,
            ),
            ("journal", rows_json(conn, "journal", &by_run).await),
            ("timers", rows_json(conn, "timers", &by_run).await),
            ("emails", rows_json(conn, "emails", &by_run).await),
        ];
        for (table, found) in &rows {
            assert!(!found.is_empty(), "no {table} row for run {run}");
        }
        // The timer (and the run's wake_at): due one to two days from now, spread.
        let due: i64 = sqlx::query_scalar("SELECT due_at FROM timers WHERE run_id = $1")
            .bind(run)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let mut spread = Vec::new();
        for field in ["due_at", "wake_at"] {
            let text = format!("\"{field}\":{due}");
            if rows.iter().flat_map(|(_, r)| r).any(|r| r.contains(&text)) {
                spread.push((
                    text,
                    format!("'\"{field}\":' || ({due} - (s.i % 86400) * 1000)"),
                ));
            }
        }
        assert!(
            rows[3].1[0].contains(&format!("\"due_at\":{due}")),
            "timer row: {}",
            rows[3].1[0]
        );
        groups.push(Group {
            every,
            rows,
            spread,
        });
    }
    let trial = groups.pop().unwrap();
    let welcome = groups.pop().unwrap();
    Template {
        tenant,
        ids,
        contact,
        welcome,
        trial,
        welcome_run,
        trial_run,
    }
}

/// `text` with person `i`'s key (`sleeper-{i}`, not followed by a digit) made the template's.
fn unkey(text: &str, i: i64) -> String {
    let key = format!("sleeper-{i}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&key) {
        let after = &rest[at + key.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(&key);
        } else {
            out.push_str(TEMPLATE_KEY);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Person `i`'s rows, made the template person's again (key, ids, spread times), parsed.
fn as_template(template: &Template, i: i64, rows: &[String], due: Option<i64>) -> Vec<Value> {
    let mut parsed: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut text = unkey(row, i);
            for (k, id) in template.ids.iter().enumerate() {
                text = text.replace(&derived_id(template, k, i), id);
            }
            let mut value: Value = serde_json::from_str(&text).unwrap();
            if let Some(due) = due {
                for field in ["due_at", "wake_at"] {
                    if value.get(field).is_some_and(|v| !v.is_null()) {
                        value[field] = json!(due);
                    }
                }
            }
            value
        })
        .collect();
    parsed.sort_by_key(|v| v.to_string());
    parsed
}

/// The seeded person `i`'s rows are the real person's (ids, key and spread due times aside),
/// and the host serves their runs with the real runs' timelines.
async fn check_seeded(server: &Server, conn: &mut PgConnection, template: &Template, i: i64) {
    assert_eq!(i % TRIAL_EVERY, 0, "check a person with a trial");
    let key = format!("sleeper-{i}");
    let seeded = rows_json(conn, "contacts", &format!("key = '{key}'")).await;
    let parse = |rows: &[String]| -> Vec<Value> {
        let mut v: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        v.sort_by_key(|v| v.to_string());
        v
    };
    assert_eq!(
        as_template(template, i, &seeded, None),
        parse(&template.contact),
        "contacts"
    );
    for (group, run) in [
        (&template.welcome, &template.welcome_run),
        (&template.trial, &template.trial_run),
    ] {
        let seeded_run = derived(template, run, i);
        let due: i64 = sqlx::query_scalar("SELECT due_at FROM timers WHERE run_id = $1")
            .bind(run)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        for (table, rows) in &group.rows {
            let filter = match *table {
                "events" => {
                    let name = serde_json::from_str::<Value>(&rows[0]).unwrap()["name"].clone();
                    format!("contact_key = '{key}' AND name = {}", sql_text(&name))
                }
                "runs" => format!("id = '{seeded_run}'"),
                _ => format!("run_id = '{seeded_run}'"),
            };
            let mine = rows_json(conn, table, &filter).await;
            assert_eq!(
                as_template(template, i, &mine, Some(due)),
                as_template(template, i, rows, Some(due)),
                "{table} of {key}"
            );
        }
        let real = server.run(run).await;
        let clone = server.run(&seeded_run).await;
        assert_eq!(clone["status"], real["status"], "{clone}");
        assert_eq!(support::steps(&clone), support::steps(&real));
    }
}

fn sql_text(value: &Value) -> String {
    format!("'{}'", value.as_str().unwrap().replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------------
// Phases.

struct Phase {
    kind: &'static str,
    round: usize,
    measured: Measured,
    cpu: CpuSpent,
    db: DbStats,
    settle: f64,
}

impl Phase {
    fn per_event(&self, x: f64) -> f64 {
        x / self.measured.events.max(1) as f64
    }

    fn line(&self, n: i64) -> String {
        let m = &self.measured;
        let latency = if self.kind == "single" {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                m.percentile_ms(50.0),
                m.percentile_ms(99.0)
            )
        } else {
            format!(
                "p50 {:.0} ms, p99 {:.0} ms per batch",
                m.percentile_ms(50.0),
                m.percentile_ms(99.0)
            )
        };
        format!(
            "N={n} {} round {}: {} events in {:.1} s = {:.0} events/s, {latency}{}{}; \
             CPU per event: server {:.0} us, PostgreSQL {:.0} us (machine {:.0}% busy, \
             generator {:.0}%); per event: {:.2} transactions, {:.1} index scans, {:.1} rows \
             read from runs+timers, {:.2} rows fetched, {:.2} rows written, {:.1} blocks ({:.2} not in shared buffers), \
             {} rows read by {} sequential scans of growing tables; settled {:.1} s after; \
             per event by table, blocks (index scans, rows read): {}",
            self.kind,
            self.round,
            m.events,
            m.elapsed.as_secs_f64(),
            m.events_per_sec(),
            if m.failures > 0 {
                format!(", {} FAILED requests", m.failures)
            } else {
                String::new()
            },
            if m.exhausted {
                " (bodies ran out early)"
            } else {
                ""
            },
            self.per_event(self.cpu.server) * 1e6,
            self.per_event(self.cpu.postgres) * 1e6,
            self.cpu.machine_busy,
            self.cpu.generator,
            self.per_event(self.db.xacts as f64),
            self.per_event(self.db.idx_scan as f64),
            self.per_event(self.db.runs_timers_rows as f64),
            self.per_event(self.db.tup_fetched as f64),
            self.per_event(self.db.tup_written as f64),
            self.per_event(self.db.blocks as f64),
            self.per_event(self.db.blocks_read as f64),
            self.db.seq_tup_growing,
            self.db.seq_scan_growing,
            self.settle,
            self.db
                .per_table
                .iter()
                .take(8)
                .map(|(table, scans, rows, blocks)| format!(
                    "{table} {:.1} ({:.2}, {:.2})",
                    self.per_event(*blocks as f64),
                    self.per_event(*scans as f64),
                    self.per_event(*rows as f64)
                ))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// Runs started since `since_ms` (host clock = real clock here: not dev mode), by journey.
async fn started_since(conn: &mut PgConnection, tenant: &str, since_ms: i64) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT journey_id, COUNT(*) FROM runs WHERE tenant_id = $1 AND created_at >= $2 \
         GROUP BY 1 ORDER BY 1",
    )
    .bind(tenant)
    .bind(since_ms)
    .fetch_all(conn)
    .await
    .unwrap()
}

/// One timed phase: single posts or batches, then settle and let statistics flush.
async fn phase(
    server: &Server,
    conn: &mut PgConnection,
    tenant: &str,
    workload: &mut Workload,
    config: &Config,
    kind: &'static str,
    round: usize,
) -> Phase {
    let duration = Duration::from_secs(config.secs);
    let (path, per_body, clients, bodies) = if kind == "single" {
        // Room for 12,000 events/s.
        let bodies = (0..12_000 * config.secs)
            .map(|_| serialise(&workload.event()))
            .collect::<Vec<_>>();
        ("/v1/events", 1, config.concurrency, bodies)
    } else {
        // Room for 25,000 events/s.
        let bodies = (0..25 * config.secs)
            .map(|_| {
                let events: Vec<Value> = (0..1_000).map(|_| workload.event()).collect();
                batch_body(&events)
            })
            .collect::<Vec<_>>();
        ("/v1/events/batch", 1_000, config.in_flight, bodies)
    };
    let stats_before = DbStats::read(conn).await;
    let cpu_before = Cpu::now(server);
    let counts = vec![per_body; bodies.len()];
    let measured = post_bodies(server, path, bodies, &counts, clients, Some(duration)).await;
    let cpu = Cpu::now(server).since(&cpu_before);
    let settle = settled(conn, tenant).await;
    tokio::time::sleep(STATS_FLUSH).await;
    let db = DbStats::read(conn).await.since(stats_before);
    Phase {
        kind,
        round,
        measured,
        cpu,
        db,
        settle,
    }
}

struct Activations {
    rate: f64,
    total: f64,
    ingest: f64,
    cpu: CpuSpent,
    db: DbStats,
}

/// `runs` people trigger `burst` (one activation each), in batches of 1,000.
async fn activations(
    server: &Server,
    conn: &mut PgConnection,
    tenant: &str,
    runs: usize,
    n: i64,
) -> Activations {
    let done_sql = format!(
        "SELECT COUNT(*) FROM runs WHERE tenant_id = '{tenant}' AND journey_id = 'burst' \
         AND status = 'completed'"
    );
    let already = count(conn, &done_sql).await;
    let stats_before = DbStats::read(conn).await;
    let cpu_before = Cpu::now(server);
    let start = Instant::now();
    trigger(server, "bench.burst", &format!("burst-{n}"), 0..runs, None).await;
    let ingest = start.elapsed().as_secs_f64();
    loop {
        if count(conn, &done_sql).await >= already + runs as i64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "burst runs never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = start.elapsed().as_secs_f64();
    let cpu = Cpu::now(server).since(&cpu_before);
    settled(conn, tenant).await;
    tokio::time::sleep(STATS_FLUSH).await;
    let db = DbStats::read(conn).await.since(stats_before);
    Activations {
        rate: runs as f64 / total,
        total,
        ingest,
        cpu,
        db,
    }
}

struct SizeReport {
    n: i64,
    seeding: f64,
    analyzed_after: f64,
    database_mib: f64,
    phases: Vec<Phase>,
    activations: Activations,
    /// Runs started while measuring at this size, by journey.
    started: Vec<(String, i64)>,
}

fn med(phases: &[Phase], kind: &str, f: impl Fn(&Phase) -> f64) -> f64 {
    median(phases.iter().filter(|p| p.kind == kind).map(f).collect())
}

fn list(phases: &[Phase], kind: &str, f: impl Fn(&Phase) -> f64) -> String {
    phases
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| format!("{:.0}", f(p)))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_summary(reports: &[SizeReport]) {
    println!();
    println!("Summary (medians of the rounds; each round's figure in brackets):");
    println!(
        "| sleeping runs | single events/s | single p50 / p99 ms | batch events/s | \
         activations/s (ingest alone) | server / PostgreSQL CPU us per event, single | \
         same, batch | transactions / index scans / runs+timers rows per event, single | \
         same, batch |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let p = &r.phases;
        let per = |kind: &str, f: fn(&Phase) -> f64| med(p, kind, |x| x.per_event(f(x)));
        println!(
            "| {} | {:.0} ({}) | {:.1} / {:.1} | {:.0} ({}) | {:.0} ({:.2} s of {:.2} s) | \
             {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.1} / {:.1} | {:.3} / {:.2} / {:.2} |",
            r.n,
            med(p, "single", |x| x.measured.events_per_sec()),
            list(p, "single", |x| x.measured.events_per_sec()),
            med(p, "single", |x| x.measured.percentile_ms(50.0)),
            med(p, "single", |x| x.measured.percentile_ms(99.0)),
            med(p, "batch", |x| x.measured.events_per_sec()),
            list(p, "batch", |x| x.measured.events_per_sec()),
            r.activations.rate,
            r.activations.ingest,
            r.activations.total,
            per("single", |x| x.cpu.server * 1e6),
            per("single", |x| x.cpu.postgres * 1e6),
            per("batch", |x| x.cpu.server * 1e6),
            per("batch", |x| x.cpu.postgres * 1e6),
            per("single", |x| x.db.xacts as f64),
            per("single", |x| x.db.idx_scan as f64),
            per("single", |x| x.db.runs_timers_rows as f64),
            per("batch", |x| x.db.xacts as f64),
            per("batch", |x| x.db.idx_scan as f64),
            per("batch", |x| x.db.runs_timers_rows as f64),
        );
    }
    for r in reports {
        println!(
            "N={}: seeded in {:.1} s (cumulative step), statistics refreshed by the host {:.1} s \
             after; database {:.0} MiB; activations: server {:.0} us, PostgreSQL {:.0} us CPU \
             per run, {:.2} transactions and {:.1} runs+timers rows per run; runs started \
             while measuring {:?}",
            r.n,
            r.seeding,
            r.analyzed_after,
            r.database_mib,
            r.activations.cpu.server * 1e6 / r.activations.rate / r.activations.total,
            r.activations.cpu.postgres * 1e6 / r.activations.rate / r.activations.total,
            r.activations.db.xacts as f64 / (r.activations.rate * r.activations.total),
            r.activations.db.runs_timers_rows as f64 / (r.activations.rate * r.activations.total),
            r.started,
        );
    }
    let big: Vec<&SizeReport> = reports.iter().filter(|r| r.n >= 100_000).collect();
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    if !big.is_empty() {
        let single = big
            .iter()
            .map(|r| med(&r.phases, "single", |x| x.measured.events_per_sec()))
            .fold(f64::INFINITY, f64::min);
        let batch = big
            .iter()
            .map(|r| med(&r.phases, "batch", |x| x.measured.events_per_sec()))
            .fold(f64::INFINITY, f64::min);
        let act = big
            .iter()
            .map(|r| r.activations.rate)
            .fold(f64::INFINITY, f64::min);
        println!(
            "targets at >= 100,000 sleeping runs (the lowest median): single {single:.0}/s >= \
             {TARGET_SINGLE:.0}: {}; batches {batch:.0}/s >= {TARGET_BATCH:.0}: {}; activations \
             {act:.0}/s >= {TARGET_ACTIVATIONS:.0}: {}",
            verdict(single >= TARGET_SINGLE),
            verdict(batch >= TARGET_BATCH),
            verdict(act >= TARGET_ACTIVATIONS)
        );
    }
    if let (Some(first), Some(last)) = (reports.first(), reports.last())
        && reports.len() > 1
    {
        let a = med(&first.phases, "single", |x| x.measured.events_per_sec());
        let b = med(&last.phases, "single", |x| x.measured.events_per_sec());
        println!(
            "single posts from {} to {} sleeping runs: {a:.0} -> {b:.0} events/s ({:.2}x)",
            first.n,
            last.n,
            b / a
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !under_cargo_bench("sleeping-runs", "sleeping") {
        return;
    }
    if support::postgres_url().is_none() {
        println!(
            "the sleeping-runs benchmark measures PostgreSQL: set WAYMARK_TEST_DATABASE_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/test) to run it"
        );
        return;
    }
    let config = Config::from_env();
    build_modules("the modules");
    println!(
        "Waymark sleeping-runs benchmark (PostgreSQL), {}, code at {}",
        today(),
        commit()
    );
    println!("machine: {}", machine());
    println!("load average before the run: {}", load_average());

    let server = Server::start(ServerOptions {
        backend: Backend::Postgres,
        dev: false,
        modules: vec![
            "welcome-series",
            "trial-conversion",
            "win-back",
            "bench-journeys",
        ],
        extra_args: vec!["--rate-limit".into(), "0".into()],
        ..ServerOptions::default()
    })
    .await;
    let url = server.database.as_ref().unwrap().url.clone();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!("PostgreSQL {version}, autovacuum {autovacuum}");

    let template = make_template(&server, &mut conn).await;
    let tenant = template.tenant.clone();
    // New people (`new-{n}`, each starting a welcome run) stay apart from the seeded ones,
    // whom the seeding below makes known.
    let newcomers = Newcomers::Apart("new-");
    let new_users = config.new_user_percent;
    let mut workload = Workload::new(0x5EED, new_users, "sleeper-", newcomers, activity);
    let mut reports = Vec::new();
    let mut made = 0i64;
    for &n in &config.sleeping {
        // Seed.
        // The host's statistics upkeep must see the seeding's rows counted.
        execute(&mut conn, "SET track_counts = on").await;
        let start = Instant::now();
        if n > made {
            seed(&mut conn, &template, made, n).await;
            if made == 0 {
                check_seeded(&server, &mut conn, &template, 0).await;
                println!("the seeded rows are the real person's (ids, key and due times aside)");
            }
            made = n;
        }
        execute(&mut conn, "SELECT pg_stat_force_next_flush()").await;
        execute(&mut conn, "CHECKPOINT").await;
        let seeding = start.elapsed().as_secs_f64();
        workload.known = made as u64;
        // The host's statistics upkeep (every 10 s), not the bench, analyzes.
        let seeded_at = Instant::now();
        let analyzed = "SELECT COUNT(*) FROM pg_stat_user_tables WHERE relname IN \
                        ('runs', 'timers', 'contacts') AND n_mod_since_analyze < 0.1 * n_live_tup";
        let mut analyzed_after = f64::NAN;
        while seeded_at.elapsed() < Duration::from_secs(15) || analyzed_after.is_nan() {
            if analyzed_after.is_nan() && count(&mut conn, analyzed).await == 3 {
                analyzed_after = seeded_at.elapsed().as_secs_f64();
            }
            assert!(
                seeded_at.elapsed() < Duration::from_secs(120),
                "the host never analyzed runs, timers and contacts"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // From here the bench's own queries (settling, counting) stay out of the database's
        // counters, which measure the server.
        execute(&mut conn, "SET track_counts = off").await;
        let waiting = count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) FROM runs WHERE tenant_id = '{tenant}' AND status = 'waiting'"
            ),
        )
        .await;
        let database_mib = count(&mut conn, "SELECT pg_database_size(current_database())").await
            as f64
            / (1024.0 * 1024.0);
        println!(
            "N={n}: seeded in {seeding:.1} s; {waiting} runs waiting in all; statistics \
             refreshed by the host {analyzed_after:.1} s after; database {database_mib:.0} MiB; \
             load average {}",
            load_average()
        );

        let measuring_since = now_ms();
        // Warm up: connections, caches.
        let warm: Vec<Vec<u8>> = (0..500).map(|_| serialise(&workload.event())).collect();
        let ones = vec![1; warm.len()];
        post_bodies(
            &server,
            "/v1/events",
            warm,
            &ones,
            config.concurrency,
            Some(Duration::from_secs(60)),
        )
        .await;
        settled(&mut conn, &tenant).await;

        let mut phases = Vec::new();
        for round in 1..=config.rounds {
            for kind in ["single", "batch"] {
                let p = phase(
                    &server,
                    &mut conn,
                    &tenant,
                    &mut workload,
                    &config,
                    kind,
                    round,
                )
                .await;
                println!("{}", p.line(n));
                phases.push(p);
            }
        }
        let act = activations(&server, &mut conn, &tenant, config.runs, n).await;
        println!(
            "N={n} activations: {} one-activation runs completed in {:.2} s (ingest alone \
             {:.2} s): {:.0} activations/s; server {:.0} us, PostgreSQL {:.0} us CPU per run; \
             machine {:.0}% busy",
            config.runs,
            act.total,
            act.ingest,
            act.rate,
            act.cpu.server * 1e6 / config.runs as f64,
            act.cpu.postgres * 1e6 / config.runs as f64,
            act.cpu.machine_busy
        );
        let started = started_since(&mut conn, &tenant, measuring_since).await;
        reports.push(SizeReport {
            started,
            n,
            seeding,
            analyzed_after,
            database_mib,
            phases,
            activations: act,
        });
    }
    print_summary(&reports);
    println!("load average after the run: {}", load_average());
}
