//! Deploy benchmark: the real `waymark` binary (release build), real compiled modules, real
//! HTTP.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench deploys
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench deploys
//! ```
//!
//! For each backend (SQLite always; PostgreSQL, on a fresh database, when
//! `WAYMARK_TEST_DATABASE_URL` is set) it measures:
//!
//! 1. **Deploy time** of each example module (and the JS guest) over `POST /v1/modules`:
//!    cold (compiled now) and warm (the same component to a second tenant: the compiled
//!    artifact is cached on disk, so nothing is recompiled), with the host's own split of
//!    validate (compile or load, `describe`, manifest) / commit / swap.
//! 2. **Save → live** with `--modules DIR` watched: a component renamed into the directory
//!    (as `waymark build` writes it) until `GET /v1/modules/steps` shows the new version,
//!    alternating two versions `WAYMARK_BENCH_SWAPS` [20] times. Target: ≤ 1 s after the
//!    build finishes; the swap itself ≤ 1 ms.
//! 3. **The swap's effect on ingest latency**: 16 concurrent clients send single events (each
//!    starts a run) in `WAYMARK_BENCH_SECONDS` [5] pairs of one-second slices, one with no
//!    deploys and one while the module is redeployed every 100 ms, interleaved so both see the
//!    same database; p50/p99 of each, and their ratios, measured in one run.
//!
//! Run through `cargo bench` only.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{backends, build_modules, env_or, machine, ms, today, under_cargo_bench};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions, module_bytes, tenant_key};

const MODULES: [&str; 4] = ["welcome-series", "win-back", "trial-conversion", "js-hello"];
const CLIENTS: usize = 16;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn deploy_times(server: &Server, lines: &mut Vec<String>) {
    let other = tenant_key(server, "bench-warm", "deploy,read");
    lines.push(
        "| module | size | cold total ms | cold validate / commit ms / swap µs | warm total ms | warm validate / commit ms / swap µs |"
            .to_owned(),
    );
    lines.push("|---|---|---|---|---|---|".into());
    for module in MODULES {
        let wasm = module_bytes(module);
        let size = wasm.len();
        let mut row = Vec::new();
        for key in [server.key.as_str(), other.as_str()] {
            let started = Instant::now();
            let (status, answer) = server.upload_module(module, wasm.clone(), key).await;
            let total = started.elapsed();
            assert_eq!(status, 201, "{module}: {answer}");
            let t = &answer["timings"];
            row.push(format!("{:.0}", ms(total)));
            row.push(format!(
                "{:.0} / {:.1} / {:.0}",
                t["validateMs"].as_f64().unwrap_or(0.0),
                t["commitMs"].as_f64().unwrap_or(0.0),
                t["swapUs"].as_f64().unwrap_or(0.0)
            ));
        }
        lines.push(format!(
            "| {module} | {:.1} MB | {} | {} | {} | {} |",
            size as f64 / 1e6,
            row[0],
            row[1],
            row[2],
            row[3]
        ));
    }
}

async fn save_to_live(server: &Server, swaps: usize, lines: &mut Vec<String>) {
    let versions = [module_bytes("steps-v1"), module_bytes("steps-v2")];
    let mut latencies = Vec::with_capacity(swaps);
    let mut swaps_us = Vec::with_capacity(swaps);
    let mut current = server.get("/v1/modules/steps").await["activeVersion"].clone();
    for swap in 0..swaps {
        let started = Instant::now();
        server.drop_module_file("steps.wasm", &versions[(swap + 1) % 2]);
        loop {
            let now = server.get("/v1/modules/steps").await["activeVersion"].clone();
            if now != current {
                current = now;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
        // The host logs each swap's duration with the deploy.
        if let Some(us) = last_swap_us(&server.log()) {
            swaps_us.push(us);
        }
    }
    latencies.sort();
    swaps_us.sort_by(f64::total_cmp);
    lines.push(format!(
        "save → live over {swaps} swaps: median {:.0} ms, p95 {:.0} ms, max {:.0} ms (target ≤ 1,000 ms); \
         the swap itself: median {:.1} µs, max {:.1} µs (target ≤ 1,000 µs)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.95)),
        ms(*latencies.last().unwrap()),
        swaps_us.get(swaps_us.len() / 2).copied().unwrap_or(f64::NAN),
        swaps_us.last().copied().unwrap_or(f64::NAN),
    ));
}

/// The `swap_us` of the last `modules changed` line in the log.
fn last_swap_us(log: &str) -> Option<f64> {
    support::log_lines_with(log, "modules changed")
        .last()?
        .split_whitespace()
        .find_map(|word| word.strip_prefix("swap_us="))?
        .parse()
        .ok()
}

/// Single events from [`CLIENTS`] clients for `seconds`; every request's latency, sorted.
async fn ingest_latencies(server: &Arc<Server>, seconds: u64, tag: &str) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (server, stop, tag) = (server.clone(), stop.clone(), tag.to_owned());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({ "name": "test.steps", "userId": format!("{tag}-{client}-{n}") });
                let started = Instant::now();
                let (status, answer) = server.post("/v1/events", body).await;
                latencies.push(started.elapsed());
                assert_eq!(status, 202, "{answer}");
                n += 1;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    all.sort();
    all
}

async fn swap_effect(server: Arc<Server>, seconds: u64, lines: &mut Vec<String>) {
    // Interleaved one-second slices, without and with deploys, so the two see the same
    // database (its tables grow as the bench runs: every event starts a run that sleeps).
    ingest_latencies(&server, 1, "warm").await;
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    let mut swaps = 0usize;
    for slice in 0..seconds {
        quiet.extend(ingest_latencies(&server, 1, &format!("quiet{slice}")).await);
        let deploying = Arc::new(AtomicBool::new(true));
        let deployer = {
            let (server, deploying) = (server.clone(), deploying.clone());
            tokio::spawn(async move {
                let versions = ["steps-v1", "steps-v2"];
                let mut swaps = 0usize;
                while deploying.load(Ordering::Relaxed) {
                    server.deploy("steps", versions[swaps % 2]).await;
                    swaps += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                swaps
            })
        };
        busy.extend(ingest_latencies(&server, 1, &format!("swapping{slice}")).await);
        deploying.store(false, Ordering::Relaxed);
        swaps += deployer.await.unwrap();
    }
    quiet.sort();
    busy.sort();
    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (b50, b99) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    lines.push(format!(
        "ingest, {CLIENTS} clients, {seconds} interleaved 1 s slices each: no deploys p50 {:.2} ms \
         p99 {:.2} ms ({} events); a deploy every 100 ms ({swaps} swaps) p50 {:.2} ms p99 {:.2} ms \
         ({} events); ratio p50 {:.2}×, p99 {:.2}×",
        ms(q50),
        ms(q99),
        quiet.len(),
        ms(b50),
        ms(b99),
        busy.len(),
        ms(b50) / ms(q50),
        ms(b99) / ms(q99),
    ));
}

async fn run_backend(backend: Backend) -> Vec<String> {
    let swaps = env_or("WAYMARK_BENCH_SWAPS", 20);
    let seconds = env_or("WAYMARK_BENCH_SECONDS", 5);
    let mut lines = vec![format!("## {backend:?}")];
    let fresh = Server::start(ServerOptions {
        backend,
        dev: false,
        extra_args: common::unthrottled(),
        ..Default::default()
    })
    .await;
    deploy_times(&fresh, &mut lines).await;
    drop(fresh);

    let watched = Arc::new(
        Server::start(ServerOptions {
            backend,
            dev: false,
            module_files: vec![("steps.wasm", module_bytes("steps-v1"))],
            extra_args: common::unthrottled(),
            ..Default::default()
        })
        .await,
    );
    save_to_live(&watched, swaps, &mut lines).await;
    swap_effect(watched, seconds, &mut lines).await;
    lines
}

#[tokio::main]
async fn main() {
    if !under_cargo_bench("deploy", "deploys") {
        return;
    }
    build_modules("the modules");
    println!("Waymark deploy benchmark, {}", today());
    println!("machine: {}", machine());
    for backend in backends() {
        for line in run_backend(backend).await {
            println!("{line}");
        }
    }
}
