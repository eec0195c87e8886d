//! Containment benchmark: what tenant B sees while tenant A misbehaves, on one host.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench containment
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench containment
//! ```
//!
//! Tenant B runs `ok-fast` (each event starts a run that sends one email) and ingests single
//! events from 4 clients. For each hostile behaviour of tenant A, in `WAYMARK_BENCH_ROUNDS` [3]
//! rounds (medians printed), B is measured for `WAYMARK_BENCH_SECONDS` [5] s alone and as long
//! again while A misbehaves, back to back:
//! B's ingest p99 (request latency) and B's due-to-activation p99 (a run's first journal step
//! minus its creation, host clock, from a sample of B's runs), and their ratios. Target:
//! each ratio ≤ 1.5×. The behaviours:
//!
//! - **spinning guests**: 64 runs of `spin-forever` at once, each to its CPU budget;
//! - **huge arguments**: runs passing an 8 MB template key to `send-email`, 8 at once;
//! - **log floods**: runs writing 100,000 log lines each, 8 at once;
//! - **a spinning template**: A's own `step-one` template looping ten billion times, sent by
//!   8 runs at once;
//! - **idle connections**: 1,000 connections opened and left idle.
//!
//! Also printed: the host's resident memory while eight activations each pass the 8 MB
//! argument at once (the cap applies before the copy).

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{backends, build_modules, env_or, machine, today, under_cargo_bench};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions, module_bytes, tenant_key};

const B_CLIENTS: usize = 4;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// B's ingest latencies (ms) for `seconds`, and the runs its events started.
async fn tenant_b(
    server: &Arc<Server>,
    key: &str,
    seconds: u64,
    tag: &str,
) -> (Vec<f64>, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..B_CLIENTS {
        let (server, stop, key, tag) =
            (server.clone(), stop.clone(), key.to_owned(), tag.to_owned());
        clients.push(tokio::spawn(async move {
            let (mut latencies, mut runs) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({ "name": "test.ok_fast", "userId": format!("{tag}-{client}-{n}"), "email": "b@example.com" });
                let started = Instant::now();
                let (status, answer) = server
                    .request(reqwest::Method::POST, "/v1/events", Some(body), Some(&key))
                    .await;
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
                assert_eq!(status, 202, "{answer}");
                if let Some(run) = answer["started"][0]["runId"].as_str() {
                    runs.push(run.to_owned());
                }
                n += 1;
            }
            (latencies, runs)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut runs) = (Vec::new(), Vec::new());
    for client in clients {
        let (l, r) = client.await.unwrap();
        latencies.extend(l);
        runs.extend(r);
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, runs)
}

/// Start A's hostile behaviour; stopped when the flag is set.
fn hostile(
    server: Arc<Server>,
    behaviour: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut idle = Vec::new();
        let mut round = 0;
        while !stop.load(Ordering::Relaxed) {
            let (name, at_once) = match behaviour {
                "spinning guests" => ("test.spin_forever", 64),
                "huge arguments" => ("test.huge_argument", 8),
                "log floods" => ("test.floods_log", 8),
                "a spinning template" => ("test.steps", 8),
                _ => {
                    if idle.is_empty() {
                        let address = server.base.trim_start_matches("http://").to_owned();
                        for _ in 0..1_000 {
                            if let Ok(stream) = tokio::net::TcpStream::connect(&address).await {
                                idle.push(stream);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let events: Vec<Value> = (0..at_once)
                .map(|i| json!({ "name": name, "userId": format!("a-{behaviour}-{round}-{i}"), "email": "a@example.com" }))
                .collect();
            server
                .post("/v1/events/batch", json!({ "events": events }))
                .await;
            round += 1;
            // A fresh wave once the last has had its CPU budget.
            tokio::time::sleep(Duration::from_millis(if name == "test.spin_forever" {
                2_000
            } else {
                300
            }))
            .await;
        }
    })
}

async fn run_backend(backend: Backend, seconds: u64, rounds_wanted: usize) -> Vec<String> {
    let server = Arc::new(
        Server::start(ServerOptions {
            backend,
            modules: vec!["spin-forever", "panics", "steps-v1"],
            extra_args: common::unthrottled(),
            ..Default::default()
        })
        .await,
    );
    // A's own template, written to spin.
    let (status, body) = server
        .request(
            reqwest::Method::PUT,
            "/v1/templates/step-one",
            Some(json!({ "subject": "s", "text": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x" })),
            Some(&server.key),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let b = tenant_key(&server, "tenant-b", "ingest,read,deploy");
    let (status, body) = server
        .upload_module("ok-fast", module_bytes("ok-fast"), &b)
        .await;
    assert_eq!(status, 201, "{body}");

    let mut lines = vec![
        format!("## {backend:?}"),
        "| A's behaviour | B ingest p99 alone → with (ms) | ratio | B due→activation p99 alone → with (ms) | ratio |".into(),
        "|---|---|---|---|---|".into(),
    ];
    for behaviour in [
        "spinning guests",
        "huge arguments",
        "log floods",
        "a spinning template",
        "idle connections",
    ] {
        // Per round: B's ingest p99 and due→activation p99, alone and with A misbehaving.
        let mut rounds: Vec<[f64; 4]> = Vec::new();
        for round in 0..rounds_wanted {
            let tag = format!("{behaviour}-{round}");
            let (alone, alone_runs) = tenant_b(&server, &b, seconds, &format!("alone-{tag}")).await;
            let stop = Arc::new(AtomicBool::new(false));
            let a = hostile(server.clone(), behaviour, stop.clone());
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (with, with_runs) = tenant_b(&server, &b, seconds, &format!("with-{tag}")).await;
            stop.store(true, Ordering::Relaxed);
            let alone_due = common::due_to_activation(
                &server,
                &b,
                &alone_runs,
                (alone_runs.len() / 200).max(1),
            )
            .await;
            let with_due =
                common::due_to_activation(&server, &b, &with_runs, (with_runs.len() / 200).max(1))
                    .await;
            a.await.unwrap();
            rounds.push([
                percentile(&alone, 0.99),
                percentile(&with, 0.99),
                percentile(&alone_due, 0.99),
                percentile(&with_due, 0.99),
            ]);
            // Let A's leftovers finish before the next round.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let median = |f: &dyn Fn(&[f64; 4]) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let (i0, i1) = (median(&|r| r[0]), median(&|r| r[1]));
        let (d0, d1) = (median(&|r| r[2]), median(&|r| r[3]));
        let ingest_ratio = median(&|r| r[1] / r[0]);
        let due_ratio = median(&|r| r[3] / r[2].max(1.0));
        lines.push(format!(
            "| {behaviour} | {i0:.1} → {i1:.1} | {ingest_ratio:.2}× | {d0:.0} → {d1:.0} | {due_ratio:.2}× |"
        ));
    }

    // Resident memory while eight activations each pass an 8 MB argument at once.
    let before = server.get("/v1/admin/memory").await["residentBytes"]
        .as_f64()
        .unwrap_or(0.0);
    let events: Vec<Value> = (0..8)
        .map(|i| json!({ "name": "test.huge_argument", "userId": format!("rss-{i}") }))
        .collect();
    server
        .post("/v1/events/batch", json!({ "events": events }))
        .await;
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let now = server.get("/v1/admin/memory").await["residentBytes"]
            .as_f64()
            .unwrap_or(0.0);
        peak = peak.max(now);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines.push(format!(
        "resident memory with 8 activations passing an 8 MB argument at once: {:.0} MiB before, peak {:.0} MiB sampled every 20 ms",
        before / 1048576.0,
        peak / 1048576.0
    ));
    lines
}

#[tokio::main]
async fn main() {
    if !under_cargo_bench("containment", "containment") {
        return;
    }
    let seconds = env_or("WAYMARK_BENCH_SECONDS", 5);
    let rounds = env_or("WAYMARK_BENCH_ROUNDS", 3usize).max(1);
    build_modules("the modules");
    println!("Waymark containment benchmark, {}", today());
    println!("machine: {}", machine());
    for backend in backends() {
        for line in run_backend(backend, seconds, rounds).await {
            println!("{line}");
        }
    }
}
