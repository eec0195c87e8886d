//! Fair scheduling benchmark (issue 25): what tenant B's due runs wait while tenant A floods.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench fairness
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench fairness
//! ```
//!
//! One host (release build) per backend. Tenant A (the default tenant) has
//! `WAYMARK_BENCH_FLOOD` [100,000] runs of `sleeper` asleep for thirty days; tenant B runs
//! `burst` (one activation per run) for each event it sends, `WAYMARK_BENCH_B_RATE` [20] events
//! a second from one client. B is measured for `WAYMARK_BENCH_SECONDS` [10] s alone, then as
//! long again right after the dev clock moves thirty days — every one of A's runs due at once —
//! with one of A's guests spinning to its CPU budget and one growing to its memory cap. B's
//! due-to-activation latency is a run's first journal step minus its creation (a new run is due
//! at once), host clock, for every run B started. Target: B's p99 with the flood ≤ 1.2× alone.
//! Also printed: how many of A's runs completed during the flood phase (A was flooding the whole
//! time only if some were left), and the host's CPU.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{backends, build_modules, env_or, machine, percentile, today, under_cargo_bench};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions, module_bytes, tenant_key};

/// B sends one `bench.burst` event every `1 / rate` s for `seconds`; the runs they started.
async fn tenant_b(server: &Server, key: &str, rate: u32, seconds: u64, tag: &str) -> Vec<String> {
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut runs = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        every.tick().await;
        let body = json!({ "name": "bench.burst", "userId": format!("b-{tag}-{n}") });
        let (status, answer) = server
            .request(reqwest::Method::POST, "/v1/events", Some(body), Some(key))
            .await;
        assert_eq!(status, 202, "{answer}");
        runs.push(
            answer["started"][0]["runId"]
                .as_str()
                .expect("each event starts a run")
                .to_owned(),
        );
        n += 1;
    }
    runs
}

/// How many of `journey`'s runs are `status` now.
async fn runs_of(server: &Server, journey: &str, status: &str) -> u64 {
    server.get(&format!("/v1/journeys/{journey}")).await["runs"][status]
        .as_u64()
        .unwrap_or(0)
}

struct Measured {
    alone: Vec<f64>,
    flooded: Vec<f64>,
    flood_completed: u64,
    flood_left: u64,
    seconds: u64,
}

async fn run_backend(backend: Backend, flood: usize, rate: u32, seconds: u64) -> Measured {
    let server = Server::start(ServerOptions {
        backend,
        modules: vec!["bench-journeys", "spin-forever", "memory-hog"],
        extra_args: vec!["--rate-limit".into(), "0".into()],
        ..Default::default()
    })
    .await;
    let b = tenant_key(&server, "tenant-b", "ingest,read,deploy");
    let (status, body) = server
        .upload_module("bench-journeys", module_bytes("bench-journeys"), &b)
        .await;
    assert_eq!(status, 201, "{body}");

    // A's flood, asleep.
    let started = Instant::now();
    common::load::trigger(&server, "bench.sleep", "a", 0..flood, None).await;
    common::load::until_runs(&server, "sleeper", "waiting", flood as u64, started).await;
    eprintln!(
        "  {flood} of A's runs asleep after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // B alone.
    let runs = tenant_b(&server, &b, rate, seconds, "alone").await;
    let alone = common::due_to_activation(&server, &b, &runs, 1).await;

    // B while A floods: every sleeper due at once, one guest spinning, one hoarding memory.
    server.advance_clock("30d").await;
    for name in ["test.spin_forever", "test.memory_hog"] {
        server
            .send_event(json!({ "name": name, "userId": format!("a-{name}") }))
            .await;
    }
    let runs = tenant_b(&server, &b, rate, seconds, "flooded").await;
    let flood_completed = runs_of(&server, "sleeper", "completed").await;
    let flood_left = runs_of(&server, "sleeper", "waiting").await
        + runs_of(&server, "sleeper", "active").await;
    let flooded = common::due_to_activation(&server, &b, &runs, 1).await;
    Measured {
        alone,
        flooded,
        flood_completed,
        flood_left,
        seconds,
    }
}

fn row(backend: Backend, m: &Measured) -> String {
    let (a50, a99) = (percentile(&m.alone, 0.5), percentile(&m.alone, 0.99));
    let (f50, f99) = (percentile(&m.flooded, 0.5), percentile(&m.flooded, 0.99));
    format!(
        "| {backend:?} | {} / {} | {a50:.0} / {a99:.0} | {f50:.0} / {f99:.0} | **{:.2}×** | {} ({:.0}/s), {} left |",
        m.alone.len(),
        m.flooded.len(),
        f99 / a99,
        m.flood_completed,
        m.flood_completed as f64 / m.seconds as f64,
        m.flood_left,
    )
}

#[tokio::main]
async fn main() {
    if !under_cargo_bench("fairness", "fairness") {
        return;
    }
    build_modules("the bench and hostile modules");
    let flood = env_or("WAYMARK_BENCH_FLOOD", 100_000usize);
    let rate = env_or("WAYMARK_BENCH_B_RATE", 20u32);
    let seconds = env_or("WAYMARK_BENCH_SECONDS", 10u64);
    let mut rows = Vec::new();
    for backend in backends() {
        eprintln!("{backend:?}: flooding with {flood} runs");
        let measured = run_backend(backend, flood, rate, seconds).await;
        let line = row(backend, &measured);
        eprintln!("{line}");
        rows.push(line);
    }
    println!(
        "\nFairness, {} — {}; A floods {flood} due runs + a spinning guest + a memory hog; \
         B sends {rate} events/s for {seconds} s per phase\n",
        today(),
        machine()
    );
    println!(
        "| backend | B runs alone / flooded | B due→activation p50 / p99 alone (ms) | \
         p50 / p99 while A floods (ms) | p99 ratio | A's runs completed in the phase |"
    );
    println!("|---|---|---|---|---|---|");
    for line in rows {
        println!("{line}");
    }
}
