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
//! A third phase follows at once, with A's activations in flight limited to
//! `WAYMARK_BENCH_A_IN_FLIGHT` [4] through the operator API (the knob for a noisy tenant). Also
//! printed: how many of A's runs completed in each flood phase, and how many were still due
//! after the last (A flooded the whole time only if some were).

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{backends, build_modules, env_or, machine, percentile, today, under_cargo_bench};
use serde_json::json;
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

/// B's due-to-activation latencies (ms, sorted) in one phase, and how many of A's runs
/// completed during it.
struct Phase {
    label: String,
    latencies: Vec<f64>,
    flood_completed: u64,
    seconds: u64,
}

async fn run_backend(
    backend: Backend,
    flood: usize,
    rate: u32,
    seconds: u64,
    limited: u64,
) -> (Vec<Phase>, u64) {
    let server = Server::start(ServerOptions {
        backend,
        modules: vec!["bench-journeys", "spin-forever", "memory-hog"],
        extra_args: common::unthrottled(),
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

    // B alone; then B while A floods: every sleeper due at once, one guest spinning, one
    // hoarding memory — first with A at its default in-flight limit, then limited further.
    let mut phases = Vec::new();
    let alone = tenant_b(&server, &b, rate, seconds, "alone").await;
    phases.push(("B alone".to_owned(), alone, 0));
    server.advance_clock("30d").await;
    for name in ["test.spin_forever", "test.memory_hog"] {
        server
            .send_event(json!({ "name": name, "userId": format!("a-{name}") }))
            .await;
    }
    let flooded = tenant_b(&server, &b, rate, seconds, "flooded").await;
    let completed = runs_of(&server, "sleeper", "completed").await;
    phases.push((
        "A floods, at the default limit".to_owned(),
        flooded,
        completed,
    ));
    let (status, body) = server
        .request(
            reqwest::Method::PATCH,
            "/v1/tenants/default/limits",
            Some(json!({ "activationsInFlight": limited })),
            Some(&server.operator_key()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let flooded = tenant_b(&server, &b, rate, seconds, "limited").await;
    let after = runs_of(&server, "sleeper", "completed").await;
    phases.push((
        format!("A floods, limited to {limited} in flight"),
        flooded,
        after - completed,
    ));
    let left = runs_of(&server, "sleeper", "waiting").await;
    let mut measured = Vec::new();
    for (label, runs, flood_completed) in phases {
        measured.push(Phase {
            label,
            latencies: common::due_to_activation(&server, &b, &runs, 1).await,
            flood_completed,
            seconds,
        });
    }
    (measured, left)
}

fn row(backend: Backend, phase: &Phase, alone: &Phase) -> String {
    let p99 = percentile(&phase.latencies, 0.99);
    let ratio = if std::ptr::eq(phase, alone) {
        "".to_owned()
    } else {
        format!("**{:.2}×**", p99 / percentile(&alone.latencies, 0.99))
    };
    format!(
        "| {backend:?} | {} | {} | {:.0} / {p99:.0} | {ratio} | {} |",
        phase.label,
        phase.latencies.len(),
        percentile(&phase.latencies, 0.5),
        if phase.flood_completed == 0 {
            "".to_owned()
        } else {
            format!(
                "{} ({:.0}/s)",
                phase.flood_completed,
                phase.flood_completed as f64 / phase.seconds as f64
            )
        },
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
    let limited = env_or("WAYMARK_BENCH_A_IN_FLIGHT", 4u64);
    let mut rows = Vec::new();
    for backend in backends() {
        eprintln!("{backend:?}: flooding with {flood} runs");
        let (phases, left) = run_backend(backend, flood, rate, seconds, limited).await;
        for phase in &phases {
            let line = row(backend, phase, &phases[0]);
            eprintln!("{line}");
            rows.push(line);
        }
        eprintln!("  {left} of A's runs still due after the last phase");
    }
    println!(
        "\nFairness, {} — {}; A floods {flood} due runs + a spinning guest + a memory hog; \
         B sends {rate} events/s for {seconds} s per phase\n",
        today(),
        machine()
    );
    println!(
        "| backend | phase | B runs | B due→activation p50 / p99 (ms) | p99 ÷ alone | \
         A's runs completed in the phase |"
    );
    println!("|---|---|---|---|---|---|");
    for line in rows {
        println!("{line}");
    }
}
