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

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::load::{trigger, until_runs};
use common::{CpuSample, backends, build_modules, env_or, machine, today, under_cargo_bench};
use serde_json::json;
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions};

const MODULE: &str = "bench-journeys";
/// The target on SQLite (issue 5).
const TARGET_ACTIVATIONS_PER_SEC: f64 = 5_000.0;

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
        extra_args: common::unthrottled(),
        ..Default::default()
    })
    .await;
    let mut lines = Vec::new();

    // Every event sent carries `eventProperties`, empty unless a journey reads them.
    let empty_properties = json!({});

    // 1. Activations per second.
    let cpu_before = CpuSample::now();
    let start = Instant::now();
    trigger(
        &server,
        "bench.burst",
        "burst",
        0..config.runs,
        Some(&empty_properties),
    )
    .await;
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
        0..config.replay_runs,
        Some(&props),
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
        let people = made..made.max(target);
        trigger(
            &server,
            "bench.sleep",
            "sleeper",
            people,
            Some(&empty_properties),
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
    if !under_cargo_bench("journey", "journeys") {
        return;
    }
    let config = Config::from_env();
    build_modules(&format!("the {MODULE} module"));
    println!("Waymark journey benchmark, {}", today());
    println!("machine: {}", machine());
    for backend in backends() {
        for line in run_backend(&config, backend).await {
            println!("{line}");
        }
    }
}
