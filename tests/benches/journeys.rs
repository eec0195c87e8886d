//! Journey benchmark: the real `waymark` binary running the `bench-journeys` test guest
//! (`tests/guests/bench-journeys`), driven over real HTTP.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench journeys
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench journeys
//! ```
//!
//! For each backend (SQLite always; PostgreSQL, on a fresh database, when
//! `WAYMARK_TEST_DATABASE_URL` is set) it starts `waymark serve --dev --rate-limit 0` and
//! measures:
//!
//! 1. **Activations per second**: `WAYMARK_BENCH_RUNS` [20000] people each trigger `burst`
//!    (two journaled steps, then done: one activation per run), sent as batches of 1,000;
//!    the clock runs from the first batch until every run completed. Printed with the time the
//!    ingest alone took, so the activation rate is not mistaken for the ingest rate.
//! 2. **Replay cost per journal entry**: `WAYMARK_BENCH_REPLAY_RUNS` [200] runs of `replay`
//!    record `WAYMARK_BENCH_REPLAY_STEPS` [1000] checkpoints and sleep a minute; the dev clock
//!    then moves on and each run's second activation replays every recorded step. Printed: the
//!    second pass's time per replayed entry, and the first pass's per recorded entry.
//! 3. **Memory with sleeping runs**: the server's resident memory after
//!    `WAYMARK_BENCH_SLEEPING` [10000,100000] runs of `sleeper` (thirty-day sleeps) exist —
//!    sleeping runs live in the database only, so memory must not grow with their number.
//!    Printed with the embedded database's share (SQLite's page caches, as `GET
//!    /v1/admin/memory` reports it), so the host's own memory is seen apart from the caches.
//!
//! Run through `cargo bench` only.

#[allow(dead_code)] // the per-process sampling serves the ingest bench
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{CpuSample, machine, today};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions};

const MODULE: &str = "bench-journeys";
const BATCH: usize = 1_000;
/// The target on SQLite (issue 5).
const TARGET_ACTIVATIONS_PER_SEC: f64 = 5_000.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    runs: usize,
    replay_runs: usize,
    replay_steps: usize,
    sleeping: Vec<usize>,
}

impl Config {
    fn from_env() -> Self {
        let sleeping = std::env::var("WAYMARK_BENCH_SLEEPING")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![10_000, 100_000]);
        Self {
            runs: env_or("WAYMARK_BENCH_RUNS", 20_000),
            replay_runs: env_or("WAYMARK_BENCH_REPLAY_RUNS", 200),
            replay_steps: env_or("WAYMARK_BENCH_REPLAY_STEPS", 1_000),
            sleeping,
        }
    }
}

/// Send `count` events named `name` for people `{prefix}-{i}` in batches of [`BATCH`].
async fn trigger(
    server: &Server,
    name: &str,
    prefix: &str,
    from: usize,
    count: usize,
    props: Value,
) {
    let mut sent = from;
    while sent < from + count {
        let end = (sent + BATCH).min(from + count);
        let events: Vec<Value> = (sent..end)
            .map(|i| json!({ "name": name, "userId": format!("{prefix}-{i}"), "eventProperties": props }))
            .collect();
        let (status, body) = server
            .post("/v1/events/batch", json!({ "events": events }))
            .await;
        assert_eq!(status, 202, "batch: {body}");
        sent = end;
    }
}

/// A journey's runs with `status`.
async fn runs_with(server: &Server, journey: &str, status: &str) -> u64 {
    server.get(&format!("/v1/journeys/{journey}")).await["runs"][status]
        .as_u64()
        .unwrap_or(0)
}

/// Wait until `journey` has `count` runs with `status`; how long it took from `since`.
async fn until_runs(
    server: &Server,
    journey: &str,
    status: &str,
    count: u64,
    since: Instant,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        if runs_with(server, journey, status).await >= count {
            return since.elapsed().as_secs_f64();
        }
        assert!(
            Instant::now() < deadline,
            "{journey}: {count} runs never became {status}"
        );
        // Not faster: each poll counts the journey's runs by status on the server, and polling
        // every 20 ms cost the server a third of its CPU in this phase. 100 ms is under 3% of
        // the shortest phase measured.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's resident memory and the embedded database's share of it (page caches,
/// schema, statements; 0 on PostgreSQL), MiB, as the server reports them.
async fn memory_mib(server: &Server) -> (f64, f64) {
    let memory = server.get("/v1/admin/memory").await;
    let mib = |field: &str| memory[field].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    (mib("residentBytes"), mib("databaseBytes"))
}

async fn run_backend(config: &Config, backend: Backend) -> Vec<String> {
    let server = Server::start(ServerOptions {
        backend,
        modules: vec![MODULE],
        extra_args: vec!["--rate-limit".into(), "0".into()],
        ..Default::default()
    })
    .await;
    let mut lines = Vec::new();

    // 1. Activations per second.
    let cpu_before = CpuSample::now();
    let start = Instant::now();
    trigger(&server, "bench.burst", "burst", 0, config.runs, json!({})).await;
    let ingested = start.elapsed().as_secs_f64();
    let done = until_runs(&server, "burst", "completed", config.runs as u64, start).await;
    let cpu = CpuSample::now().since(cpu_before);
    let rate = config.runs as f64 / done;
    let verdict = if backend == Backend::Sqlite {
        if rate >= TARGET_ACTIVATIONS_PER_SEC {
            "MET"
        } else {
            "MISSED"
        }
    } else {
        "-"
    };
    lines.push(format!(
        "{backend:?}: {} one-activation runs completed in {done:.2} s (ingest alone {ingested:.2} s): \
         {rate:.0} activations/s (target >= {TARGET_ACTIVATIONS_PER_SEC:.0} on SQLite: {verdict}); \
         server CPU {:.0} us per run (its trigger's ingest included); machine {:.0}% busy, \
         of which this load generator {:.0}%",
        config.runs,
        cpu.server_seconds * 1e6 / config.runs as f64,
        cpu.machine_busy_percent,
        cpu.generator_percent
    ));

    // 2. Replay cost per journal entry.
    let entries = (config.replay_runs * (config.replay_steps + 1)) as f64;
    let start = Instant::now();
    let props = json!({ "steps": config.replay_steps });
    trigger(
        &server,
        "bench.replay",
        "replay",
        0,
        config.replay_runs,
        props,
    )
    .await;
    let recorded = until_runs(
        &server,
        "replay",
        "waiting",
        config.replay_runs as u64,
        start,
    )
    .await;
    let start = Instant::now();
    server.advance_clock("2m").await;
    let replayed = until_runs(
        &server,
        "replay",
        "completed",
        config.replay_runs as u64,
        start,
    )
    .await;
    lines.push(format!(
        "{backend:?}: {} runs x {} steps: recording {:.1} us/entry, replaying {:.1} us/entry \
         (the second activation: load the journal, walk every step again, commit the end)",
        config.replay_runs,
        config.replay_steps + 1,
        recorded * 1e6 / entries,
        replayed * 1e6 / entries
    ));

    // 3. Memory with sleeping runs.
    let mut made = 0;
    let (baseline, baseline_db) = memory_mib(&server).await;
    for &target in &config.sleeping {
        let start = Instant::now();
        trigger(
            &server,
            "bench.sleep",
            "sleeper",
            made,
            target - made.min(target),
            json!({}),
        )
        .await;
        made = made.max(target);
        until_runs(&server, "sleeper", "waiting", made as u64, start).await;
        // Let allocator caches settle after the burst.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss, db) = memory_mib(&server).await;
        lines.push(format!(
            "{backend:?}: {made} sleeping runs: server RSS {rss:.1} MiB, of which the embedded \
             database's caches {db:.1} MiB: {:.1} MiB without them (after the first phases, \
             before any sleeper: RSS {baseline:.1} MiB, {:.1} MiB without the caches)",
            rss - db,
            baseline - baseline_db
        ));
    }
    lines
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "the journey benchmark runs under `cargo bench -p waymark-tests --bench journeys`"
        );
        return;
    }
    let config = Config::from_env();
    println!("building the {MODULE} module (waymark build, as the tests do)…");
    tokio::task::block_in_place(support::built_modules);
    let mut backends = vec![Backend::Sqlite];
    if support::postgres_url().is_some() {
        backends.push(Backend::Postgres);
    }
    println!("Waymark journey benchmark, {}", today());
    println!("machine: {}", machine());
    for backend in backends {
        for line in run_backend(&config, backend).await {
            println!("{line}");
        }
    }
}
