//! TypeScript guest benchmark (issue 23): modules written with `@waymark/guest` and
//! componentized by componentize-js, against the Rust guests, on the real host.
//!
//! ```sh
//! cargo bench -p waymark-tests --bench typescript
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench typescript
//! ```
//!
//! It measures, in one run:
//!
//! 1. **Activations per second, the commit included**, on the release binary (`serve --dev
//!    --rate-limit 0`, SQLite always; PostgreSQL, on a fresh database, when
//!    `WAYMARK_TEST_DATABASE_URL` is set): `WAYMARK_BENCH_TS_RUNS` [5000] people each trigger
//!    the `ts-edge` guest's `ts-burst` (a clock read and a checkpoint, then done: one
//!    activation per run), sent over HTTP in batches of 1,000; the clock runs from the first
//!    batch until every run completed. The Rust `bench-journeys` guest's `burst` (the same
//!    two steps) is measured on the same server in the same way, in `WAYMARK_BENCH_TS_ROUNDS`
//!    [2] rounds alternating which goes first. Printed with the server's CPU time and minor
//!    page faults per run; then, for diagnosis, one more TypeScript burst with every server
//!    thread pinned to one core (`taskset`). Target: ≥ 1,000 TypeScript activations/s.
//! 2. **Instantiate + first suspension** per activation, at runtime level (no server, no
//!    database): `WAYMARK_BENCH_TS_ACTIVATIONS` [300] fresh activations, empty journal, of
//!    `ts-steps` (checkpoint, email, then suspends on an hour's sleep) and of the Rust
//!    `welcome-series` example (email, then suspends on a two-day sleep), interleaved one by
//!    one; wall time and the activating thread's CPU time. The first (cold) activation of each
//!    is reported apart. Interleaved with them, `describe` on a fresh instance of each:
//!    instantiating apart from running the handler.
//! 3. **Building**: `npm run build` (type-check, bundle, componentize) of a temporary copy of
//!    `examples/ts-onboarding`, `WAYMARK_BENCH_TS_BUILDS` [3] times, with the stages
//!    `waymark-guest` reports and the component's size; and the host's compile of that
//!    component (Cranelift, empty artifact cache) against loading the cached artifact, beside
//!    the Rust example's.
//! 4. **Save → live under `waymark dev`**: a module scaffolded by `waymark new ts-live --lang
//!    ts` in a temporary directory (its first build runs `npm install`), served by `waymark
//!    dev`; its TypeScript source is saved with a change `WAYMARK_BENCH_TS_SAVES` [3] times,
//!    each timed until `GET /v1/modules/ts-live` shows a new `activeVersion`.
//!    `WAYMARK_BENCH_TS_DEV=0` skips it.
//!
//! Run through `cargo bench` only.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::load::{trigger, until_runs};
use common::{
    CpuSample, backends, build_modules, commit, env_or, load_average, machine, ms, percentile,
    thousands, today, under_cargo_bench,
};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::runtime::RuntimeFixture;
use support::{Backend, Server, ServerOptions};
use waymark::clock::Clock;
use waymark::journeys::{RunInput, TriggerEvent};
use waymark::runtime::{ActivationLimits, ActivationOutcome, ActivationRequest, Runtime};

/// TypeScript activations per second, the commit included (issue 23).
const TARGET_ACTIVATIONS_PER_SEC: f64 = 1_000.0;
/// The scaffolded module of the save → live phase.
const DEV_MODULE: &str = "ts-live";

struct Config {
    runs: usize,
    rounds: usize,
    activations: usize,
    builds: usize,
    saves: usize,
    dev: bool,
}

impl Config {
    fn from_env() -> Self {
        Self {
            runs: env_or("WAYMARK_BENCH_TS_RUNS", 5_000),
            rounds: env_or("WAYMARK_BENCH_TS_ROUNDS", 2).max(1),
            activations: env_or("WAYMARK_BENCH_TS_ACTIVATIONS", 300).max(1),
            builds: env_or("WAYMARK_BENCH_TS_BUILDS", 3).max(1),
            saves: env_or("WAYMARK_BENCH_TS_SAVES", 3).max(1),
            dev: env_or("WAYMARK_BENCH_TS_DEV", 1) != 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// The nearest-rank median (of an even count, the lower middle value; unlike
/// [`common::median`], which averages the two).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
}

/// Linux's `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// The CPU time this thread has used, in nanoseconds. (`/proc/thread-self/schedstat` is only
/// brought up to date at scheduler ticks: too coarse for one activation.)
fn thread_cpu_ns() -> u64 {
    let mut time = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid `struct timespec` (x86-64 and aarch64 Linux: two 64-bit
    // fields) for the call to write.
    let status = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
}

/// The number after `prefix` in the last line of `text` holding `needle` (`12.5` of
/// `... done in 12.5 s`, `8123` of `elapsed_ms=8123`).
fn last_number_after(text: &str, needle: &str, prefix: &str) -> Option<f64> {
    let line = support::log_lines_with(text, needle).pop()?;
    let (_, rest) = line.rsplit_once(prefix)?;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// 1. Activations per second on the real server.

struct Burst {
    guest: &'static str,
    journey: &'static str,
    event: &'static str,
}

const TS_BURST: Burst = Burst {
    guest: "TypeScript `ts-burst`",
    journey: "ts-burst",
    event: "ts.burst",
};
const RUST_BURST: Burst = Burst {
    guest: "Rust `burst`",
    journey: "burst",
    event: "bench.burst",
};

/// What one guest's rounds added up to.
#[derive(Default)]
struct Tally {
    runs: usize,
    seconds: f64,
    ingest_seconds: f64,
    server_cpu_seconds: f64,
    busy_percent_weighted: f64,
    page_faults: u64,
    rates: Vec<f64>,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.runs as f64 / self.seconds
    }

    fn cpu_us_per_run(&self) -> f64 {
        self.server_cpu_seconds * 1e6 / self.runs as f64
    }
}

/// The minor page faults of process `pid` so far, all its threads (`/proc/<pid>/stat`).
fn page_faults(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // After the parenthesised command: state, ppid, pgrp, session, tty, tpgid, flags,
            // minflt.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The CPUs process `pid` may run on, as a list (`0-1`).
fn allowed_cpus(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
}

/// Pin every thread of process `pid` to `cpus` (`taskset`); whether it worked.
fn pin(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One burst of `runs` runs of `burst`'s journey for people `{journey}-{tag}-{i}`, added to
/// `tally`: the clock runs from the first batch until the journey has `completed` runs.
async fn one_burst(
    server: &Server,
    burst: &Burst,
    tag: &str,
    runs: usize,
    completed: u64,
    tally: &mut Tally,
) {
    let pid = server.pid().expect("the server runs");
    let (cpu_before, faults_before) = (CpuSample::now(), page_faults(pid));
    let start = Instant::now();
    let people = format!("{}-{tag}", burst.journey);
    trigger(server, burst.event, &people, 0..runs, None).await;
    let ingested = start.elapsed().as_secs_f64();
    let done = until_runs(server, burst.journey, "completed", completed, start).await;
    let cpu = CpuSample::now().since(cpu_before);
    tally.runs += runs;
    tally.seconds += done;
    tally.ingest_seconds += ingested;
    tally.server_cpu_seconds += cpu.server_seconds;
    tally.busy_percent_weighted += cpu.machine_busy_percent * done;
    tally.page_faults += page_faults(pid).saturating_sub(faults_before);
    tally.rates.push(runs as f64 / done);
}

async fn activation_rates(config: &Config, backend: Backend) -> Vec<String> {
    let server = Server::start(ServerOptions {
        backend,
        modules: vec!["ts-edge", "bench-journeys"],
        extra_args: common::unthrottled(),
        ..Default::default()
    })
    .await;
    let (mut ts, mut rust) = (Tally::default(), Tally::default());
    for round in 0..config.rounds {
        let order = if round % 2 == 0 {
            [&TS_BURST, &RUST_BURST]
        } else {
            [&RUST_BURST, &TS_BURST]
        };
        for burst in order {
            let tally = if burst.journey == TS_BURST.journey {
                &mut ts
            } else {
                &mut rust
            };
            let completed = ((round + 1) * config.runs) as u64;
            let tag = round.to_string();
            one_burst(&server, burst, &tag, config.runs, completed, tally).await;
        }
    }
    // Diagnosis: the same TypeScript burst with the whole server pinned to one core, where a
    // page's copy-on-write needs no other core's TLB flushed.
    let mut pinned = Tally::default();
    let pid = server.pid().expect("the server runs");
    let allowed = allowed_cpus(pid).unwrap_or_default();
    let first_cpu: String = allowed.chars().take_while(char::is_ascii_digit).collect();
    if !first_cpu.is_empty() && pin(pid, &first_cpu) {
        let completed = ((config.rounds + 1) * config.runs) as u64;
        one_burst(
            &server,
            &TS_BURST,
            "pinned",
            config.runs,
            completed,
            &mut pinned,
        )
        .await;
        assert!(pin(pid, &allowed), "unpinning the server");
    }
    let mut lines = Vec::new();
    let row = |guest: &str, tally: &Tally, verdict: &str| {
        let rounds: Vec<String> = tally.rates.iter().map(|r| thousands(*r)).collect();
        format!(
            "| {backend:?} | {guest} | {} | {:.2} s ({:.2} s ingest alone) | **{}/s** ({}) | {} µs | {:.0} | {:.0}% | {verdict} |",
            thousands(tally.runs as f64),
            tally.seconds,
            tally.ingest_seconds,
            thousands(tally.rate()),
            rounds.join(" / "),
            thousands(tally.cpu_us_per_run()),
            tally.page_faults as f64 / tally.runs as f64,
            tally.busy_percent_weighted / tally.seconds,
        )
    };
    let verdict = if ts.rate() >= TARGET_ACTIVATIONS_PER_SEC {
        "≥ 1,000/s: **MET**"
    } else {
        "≥ 1,000/s: **MISSED**"
    };
    lines.push(row(TS_BURST.guest, &ts, verdict));
    lines.push(row(RUST_BURST.guest, &rust, ""));
    lines.push(format!(
        "| {backend:?} | TypeScript ÷ Rust | | | **{:.2}×** | {:.1}× | | | |",
        ts.rate() / rust.rate(),
        ts.cpu_us_per_run() / rust.cpu_us_per_run(),
    ));
    if pinned.runs > 0 {
        lines.push(row(
            "TypeScript `ts-burst`, server pinned to one core (diagnosis)",
            &pinned,
            "",
        ));
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// 2. Instantiate + first suspension, at runtime level; 3b. the host's compile.

#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    cpu_ns: u64,
}

struct Series {
    cold: Sample,
    warm: Vec<Sample>,
}

impl Series {
    fn walls(&self) -> Vec<Duration> {
        let mut walls: Vec<Duration> = self.warm.iter().map(|s| s.wall).collect();
        walls.sort();
        walls
    }

    fn mean_wall(&self) -> Duration {
        self.warm.iter().map(|s| s.wall).sum::<Duration>() / self.warm.len() as u32
    }

    fn mean_cpu_ms(&self) -> f64 {
        self.warm.iter().map(|s| s.cpu_ns as f64).sum::<f64>() / self.warm.len() as f64 / 1e6
    }
}

/// `activations` interleaved rounds of: a fresh activation of TypeScript `ts-steps` and of
/// Rust `welcome-series` (each suspends on its sleep), and a `describe` of each (an instance
/// and one small call: what instantiating costs, apart from the handler). In that order:
/// TS activation, Rust activation, TS describe, Rust describe.
async fn first_suspensions(activations: usize) -> [Series; 4] {
    let fx = RuntimeFixture::new("ts.steps", Default::default());
    let ts = fx.load("ts-edge").await;
    let rust = fx.load("welcome-series").await;
    let runtime = fx.registry.runtime().clone();
    let rust_input = RunInput {
        trigger: TriggerEvent {
            name: "user.signed_up".into(),
            ..fx.input.trigger.clone()
        },
        ..fx.input.clone()
    };
    let mut series: [Series; 4] = std::array::from_fn(|_| Series {
        cold: Sample::default(),
        warm: Vec::with_capacity(activations),
    });
    // Interleaved one by one, alternating which guest goes first, so both see the same
    // machine.
    for i in 0..=activations {
        let order = if i % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [1, 0, 3, 2]
        };
        for which in order {
            let (module, journey, input) = if which % 2 == 0 {
                (&ts, "ts-steps", &fx.input)
            } else {
                (&rust, "welcome-series", &rust_input)
            };
            let (cpu, started) = (thread_cpu_ns(), Instant::now());
            if which < 2 {
                let request = ActivationRequest {
                    input,
                    ..fx.request(module, journey, vec![])
                };
                let report = runtime
                    .activate(&module.compiled, request)
                    .await
                    .unwrap_or_else(|e| panic!("{journey}: {e}"));
                assert!(
                    matches!(report.outcome, ActivationOutcome::Suspended { .. }),
                    "{journey}: {:?}",
                    report.outcome
                );
                assert_eq!(
                    report.emails.len(),
                    1,
                    "{journey}: one email before the sleep"
                );
            } else {
                runtime
                    .describe(&module.compiled, runtime.limits())
                    .await
                    .unwrap_or_else(|e| panic!("{journey}: describe: {e}"));
            }
            let sample = Sample {
                wall: started.elapsed(),
                cpu_ns: thread_cpu_ns().saturating_sub(cpu),
            };
            if i == 0 {
                series[which].cold = sample;
            } else {
                series[which].warm.push(sample);
            }
        }
    }
    series
}

fn first_suspension_lines(series: &[Series; 4]) -> Vec<String> {
    let row = |what: &str, series: &Series| {
        let walls = series.walls();
        format!(
            "| {what} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            ms(series.cold.wall),
            ms(series.mean_wall()),
            ms(percentile(&walls, 0.5)),
            ms(percentile(&walls, 0.99)),
            series.mean_cpu_ms(),
            thousands(1e3 / series.mean_cpu_ms()),
        )
    };
    let ratio = |what: &str, ts: &Series, rust: &Series| {
        let (ts_walls, rust_walls) = (ts.walls(), rust.walls());
        format!(
            "| {what} | {:.1}× | **{:.1}×** | {:.1}× | {:.1}× | {:.1}× | |",
            ms(ts.cold.wall) / ms(rust.cold.wall),
            ms(ts.mean_wall()) / ms(rust.mean_wall()),
            ms(percentile(&ts_walls, 0.5)) / ms(percentile(&rust_walls, 0.5)),
            ms(percentile(&ts_walls, 0.99)) / ms(percentile(&rust_walls, 0.99)),
            ts.mean_cpu_ms() / rust.mean_cpu_ms(),
        )
    };
    vec![
        "| | first (cold) ms | mean ms | p50 ms | p99 ms | CPU mean ms | per CPU-second |".into(),
        "|---|---|---|---|---|---|---|".into(),
        row(
            "TypeScript `ts-steps`: instantiate + run to the first suspension",
            &series[0],
        ),
        row("Rust `welcome-series`: the same", &series[1]),
        ratio("TypeScript ÷ Rust", &series[0], &series[1]),
        row("TypeScript: instantiate + `describe`", &series[2]),
        row("Rust: instantiate + `describe`", &series[3]),
        ratio("TypeScript ÷ Rust", &series[2], &series[3]),
    ]
}

/// The host's compile of the built module `name`: each round on a runtime with an empty
/// artifact cache (Cranelift), then again on a fresh runtime over that cache (a load). Medians,
/// ms, and the component's size.
fn host_compile(name: &str, rounds: usize) -> (f64, f64, usize) {
    let wasm = support::module_bytes(name);
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = dir.path().join("artifacts");
        let runtime = || {
            Runtime::new(
                artifacts.clone(),
                ActivationLimits::default(),
                Clock::default(),
            )
            .unwrap()
        };
        let first = runtime();
        let started = Instant::now();
        drop(first.compile(&wasm).unwrap());
        cold.push(ms(started.elapsed()));
        drop(first);
        let second = runtime();
        let started = Instant::now();
        drop(second.compile(&wasm).unwrap());
        cached.push(ms(started.elapsed()));
    }
    (median(&cold), median(&cached), wasm.len())
}

// ---------------------------------------------------------------------------------------------
// 3a. Componentize.

struct GuestBuild {
    total_s: f64,
    type_check_s: f64,
    bundle_s: f64,
    componentize_s: f64,
    bundle_bytes: f64,
    component_bytes: u64,
}

/// One figure of a build.
type Figure = fn(&GuestBuild) -> f64;

/// The stages `waymark-guest build` reported on stderr (the last of each in `text`).
fn guest_stages(text: &str) -> (f64, f64, f64) {
    let stage = |what: &str| last_number_after(text, what, " done in ").unwrap_or(f64::NAN);
    (
        stage("waymark-guest: type-check done"),
        stage("waymark-guest: bundle done"),
        stage("waymark-guest: componentize done"),
    )
}

/// `npm run build` of a temporary copy of `examples/ts-onboarding` (its sources and
/// manifests; `node_modules` linked, not copied), `rounds` times.
fn componentize(rounds: usize) -> Vec<GuestBuild> {
    let example = support::repo_root().join("examples/ts-onboarding");
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path().join("ts-onboarding");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["package.json", "package-lock.json", "tsconfig.json"] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    for sub in ["src", "test"] {
        copy_tree(&example.join(sub), &dir.join(sub));
    }
    std::os::unix::fs::symlink(example.join("node_modules"), dir.join("node_modules")).unwrap();
    let mut builds = Vec::new();
    for _ in 0..rounds {
        std::fs::remove_dir_all(dir.join("dist")).ok();
        let started = Instant::now();
        let out = Command::new("npm")
            .current_dir(&dir)
            .args(["run", "build"])
            .output()
            .expect("running npm run build");
        let total_s = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "npm run build failed:\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        let (type_check_s, bundle_s, componentize_s) = guest_stages(&stderr);
        builds.push(GuestBuild {
            total_s,
            type_check_s,
            bundle_s,
            componentize_s,
            bundle_bytes: last_number_after(&stderr, "waymark-guest: bundle done", "s (")
                .unwrap_or(f64::NAN),
            component_bytes: std::fs::metadata(dir.join("dist/ts-onboarding.wasm"))
                .unwrap()
                .len(),
        });
    }
    builds
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Save → live under `waymark dev`.

struct Save {
    live: Duration,
    /// `waymark dev`'s own rebuild (`npm run build`), s.
    rebuild_s: f64,
    stages: (f64, f64, f64),
    /// The directory watch's deploy (compile, describe, commit, swap), ms.
    deploy_ms: f64,
    /// The Cranelift compile inside it, ms.
    compile_ms: f64,
}

/// A client and the way to ask a `waymark dev` which version of [`DEV_MODULE`] is live.
struct Dev {
    child: std::process::Child,
    base: String,
    key: String,
    log: std::path::PathBuf,
    client: reqwest::Client,
}

impl Dev {
    /// `waymark dev` in `module` with its own data and modules dirs (as the authoring test).
    fn spawn(module: &Path, data: &Path, modules: &Path) -> Dev {
        let log = data.join("dev.log");
        let mut child = Command::new(support::BIN)
            .current_dir(module)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--modules")
            .arg(modules)
            .env("WAYMARK_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning waymark dev");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep reading its stdout for as long as it runs.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("waymark listening on ") {
                    tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                    .ok();
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(900))
            .unwrap_or_else(|_| {
                panic!(
                    "waymark dev did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let key = std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        Dev {
            child,
            base,
            key,
            log,
            client: support::http_client(),
        }
    }

    async fn active(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/v1/modules/{DEV_MODULE}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()["activeVersion"].clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

async fn save_to_live(saves: usize) -> Vec<Save> {
    let outside = tempfile::tempdir().unwrap();
    let made = Command::new(support::BIN)
        .current_dir(outside.path())
        .args(["new", DEV_MODULE, "--lang", "ts"])
        .env("WAYMARK_LOG", "warn")
        .output()
        .expect("running waymark new");
    assert!(
        made.status.success(),
        "waymark new: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let module = outside.path().join(DEV_MODULE);
    let (data, modules) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    println!("  (waymark dev's first build: npm install, then the module's build…)");
    let dev = tokio::task::block_in_place(|| Dev::spawn(&module, data.path(), modules.path()));
    let mut current = dev.active().await;
    assert!(current.is_string(), "the module is served: {current}");
    let index = module.join("src/index.ts");
    let source = std::fs::read_to_string(&index).unwrap();
    assert!(source.contains("How is it going?"), "the scaffold changed");
    let mut results = Vec::new();
    for save in 0..saves {
        let rebuilds_before = support::log_lines_with(&dev.log(), "waymark dev: rebuilt").len();
        let deploys_before = support::log_lines_with(&dev.log(), "hot reload: deployed").len();
        std::fs::write(
            &index,
            source.replace("How is it going?", &format!("How is it going? ({save})")),
        )
        .unwrap();
        let saved = Instant::now();
        let deadline = saved + Duration::from_secs(900);
        loop {
            let now = dev.active().await;
            if now != current {
                current = now;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no new version; log:\n{}",
                dev.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let live = saved.elapsed();
        // The deploy logs after its swap: wait for its line (and the rebuild's).
        let log = loop {
            let log = dev.log();
            if support::log_lines_with(&log, "waymark dev: rebuilt").len() > rebuilds_before
                && support::log_lines_with(&log, "hot reload: deployed").len() > deploys_before
            {
                break log;
            }
            assert!(Instant::now() < deadline, "no log lines; log:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        results.push(Save {
            live,
            rebuild_s: last_number_after(&log, "waymark dev: rebuilt", " in ").unwrap_or(f64::NAN),
            stages: guest_stages(&log),
            deploy_ms: last_number_after(&log, "hot reload: deployed", "elapsed_ms=")
                .unwrap_or(f64::NAN),
            compile_ms: last_number_after(&log, "compiled module", "elapsed_ms=")
                .unwrap_or(f64::NAN),
        });
        // Let the watchers settle before the next save.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    results
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !under_cargo_bench("TypeScript", "typescript") {
        return;
    }
    let config = Config::from_env();
    build_modules("the modules");
    println!("# Waymark TypeScript guest benchmark, {}", today());
    println!("machine: {}", machine());
    println!("commit: {}", commit());
    println!();

    // 1.
    println!(
        "## Activations per second, the commit included ({} runs × {} rounds per guest; load average {})",
        thousands(config.runs as f64),
        config.rounds,
        load_average()
    );
    println!();
    println!(
        "| backend | guest | runs | time | activations/s (each round) | server CPU per run | server page faults per run | machine busy | target |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for backend in backends() {
        for line in activation_rates(&config, backend).await {
            println!("{line}");
        }
    }
    println!();

    // 2 and 3b, on a thread of their own: its CPU time is the activations'.
    println!(
        "## Instantiate + first suspension, runtime level ({} each, interleaved; load average {})",
        config.activations,
        load_average()
    );
    println!();
    let (activations, builds) = (config.activations, config.builds);
    let runtime_phase = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lines = first_suspension_lines(&rt.block_on(first_suspensions(activations)));
        let compiles = [
            host_compile("ts-onboarding", builds),
            host_compile("welcome-series", builds),
        ];
        (lines, compiles)
    });
    let (lines, compiles) = tokio::task::block_in_place(|| runtime_phase.join().unwrap());
    for line in lines {
        println!("{line}");
    }
    println!();

    // 3.
    println!(
        "## Building ({builds} rounds, medians; load average {})",
        load_average()
    );
    println!();
    let guest_builds = tokio::task::block_in_place(|| componentize(builds));
    let med = |f: Figure| median(&guest_builds.iter().map(f).collect::<Vec<_>>());
    let sizes: Vec<u64> = guest_builds.iter().map(|b| b.component_bytes).collect();
    println!("| | median | rounds |");
    println!("|---|---|---|");
    let rounds_of = |f: Figure| {
        guest_builds
            .iter()
            .map(|b| format!("{:.1}", f(b)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let stages: [(&str, Figure); 4] = [
        ("`npm run build` of examples/ts-onboarding, s", |b| {
            b.total_s
        }),
        ("of which type-check (tsc), s", |b| b.type_check_s),
        ("of which bundle (esbuild), s", |b| b.bundle_s),
        ("of which componentize (componentize-js), s", |b| {
            b.componentize_s
        }),
    ];
    for (what, f) in stages {
        println!("| {what} | **{:.1}** | {} |", med(f), rounds_of(f));
    }
    let sizes: Vec<String> = sizes.iter().map(|s| thousands(*s as f64)).collect();
    println!(
        "| bundle (esbuild) / component size, bytes | {} / **{}** | {} |",
        thousands(med(|b| b.bundle_bytes)),
        sizes[0],
        sizes.join(" / ")
    );
    for ((cold, cached, size), name) in compiles.iter().zip(["ts-onboarding", "welcome-series"]) {
        println!(
            "| host compile of {name} ({:.2} MB): Cranelift, empty cache / cached artifact, ms | **{}** / **{:.1}** | |",
            *size as f64 / 1e6,
            thousands(*cold),
            cached
        );
    }
    println!();

    // 4.
    if config.dev {
        println!(
            "## Save → live under `waymark dev` ({} saves; load average {})",
            config.saves,
            load_average()
        );
        println!();
        let saves = save_to_live(config.saves).await;
        println!(
            "| save | save → live | dev rebuild (type-check / bundle / componentize) | deploy (of which Cranelift) |"
        );
        println!("|---|---|---|---|");
        for (i, save) in saves.iter().enumerate() {
            println!(
                "| {} | {:.1} s | {:.1} s ({:.1} / {:.1} / {:.1} s) | {} ms ({} ms) |",
                i + 1,
                save.live.as_secs_f64(),
                save.rebuild_s,
                save.stages.0,
                save.stages.1,
                save.stages.2,
                thousands(save.deploy_ms),
                thousands(save.compile_ms),
            );
        }
        let lives: Vec<f64> = saves.iter().map(|s| s.live.as_secs_f64()).collect();
        println!("| median | **{:.1} s** | | |", median(&lives));
        println!();
    }
    println!("load average at the end: {}", load_average());
}
