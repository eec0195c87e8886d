//! Scale-out on one PostgreSQL (issue 24): one, two and three `waymark serve` processes on one
//! database. How ingest and activation throughput change as hosts are added, and where the
//! CPU goes — the hosts, PostgreSQL, or the machine running out. PostgreSQL only.
//!
//! ```sh
//! WAYMARK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p waymark-tests --bench scaleout
//! ```
//!
//! It starts `waymark serve --rate-limit 0` on a fresh database with the modules the sleeping
//! bench loads (`welcome-series`, `trial-conversion`, `win-back`, `bench-journeys`), and seeds
//! `WAYMARK_BENCH_SLEEPING` [100000] sleeping runs as that bench does (`common::seed`: a real
//! person's rows cloned with SQL, then the host's own statistics upkeep awaited). Then, for
//! each N of `WAYMARK_BENCH_HOSTS` [1,2,3]:
//!
//! 1. **N fresh host processes.** The previous ones are stopped with SIGTERM (each finishes
//!    its requests and exits), and N are started on the same database, data dir and modules,
//!    each on a port of its own (as `tests/tests/multi_host.rs` starts them). Then 500 single
//!    posts warm them up, and the bench waits until nothing is due.
//! 2. **`WAYMARK_BENCH_ROUNDS` [2] rounds**, each: single `POST /v1/events` from
//!    `WAYMARK_BENCH_CONCURRENCY` [64] keep-alive clients for `WAYMARK_BENCH_SECS` [10] s;
//!    batches of 1,000 with `WAYMARK_BENCH_IN_FLIGHT` [4] in flight for as long; then
//!    `WAYMARK_BENCH_RUNS` [5000] people trigger `bench-journeys`' `burst` (one activation
//!    each) in batches of 1,000, the clock running until every run completed. Requests go to
//!    the hosts in turn (request i to host i mod N, each client keeping a connection to every
//!    host), the bursts' batches too (each host sending its share, the hosts at once), and
//!    every host's scheduler claims. The events are the sleeping bench's: 20%
//!    (`WAYMARK_BENCH_NEW_USERS`) sign-ups of new people, the rest seeded people coming back.
//!    After each phase the bench waits until no run is due and the outbox is empty, and 11 s
//!    more for PostgreSQL's statistics.
//!
//! Reported per N and phase, medians of the rounds (each round in brackets): events/s (or
//! activations/s); p50 / p99 latency (per request; for activations, from a run's creation to
//! its completion); CPU µs per event of all host processes together and of PostgreSQL (every
//! `postgres` process on the machine); the machine's busy share of all its cores and how it
//! splits; and per event, from PostgreSQL's statistics, transactions, index scans and blocks.
//! Run through `cargo bench` only.

#[allow(dead_code)] // each bench uses a subset
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::load::{post_bodies_across, serialise};
use common::phases::{Activations, Pacing, Phase, activations, phase};
use common::postgres::{count, settled, started_since};
use common::seed::{activity, make_template, seed_up_to, start_host};
use common::workload::{Newcomers, Workload};
use common::{
    build_modules, commit, env_or, load_average, machine, median, now_ms, today, under_cargo_bench,
};
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};
use support::Server;

/// How long a host may take to stop after SIGTERM (it gives requests in flight 10 s).
const STOP_LIMIT: Duration = Duration::from_secs(60);

struct Config {
    sleeping: i64,
    hosts: Vec<usize>,
    rounds: usize,
    pacing: Pacing,
    runs: usize,
    new_user_percent: u64,
}

impl Config {
    fn from_env() -> Config {
        let hosts = env_or("WAYMARK_BENCH_HOSTS", "1,2,3".to_owned())
            .split(',')
            .map(|n| n.trim().parse().expect("WAYMARK_BENCH_HOSTS: numbers"))
            .inspect(|&n: &usize| assert!(n >= 1, "WAYMARK_BENCH_HOSTS: at least one host"))
            .collect();
        Config {
            sleeping: env_or("WAYMARK_BENCH_SLEEPING", 100_000i64).max(1),
            hosts,
            rounds: env_or("WAYMARK_BENCH_ROUNDS", 2usize).max(1),
            pacing: Pacing {
                secs: env_or("WAYMARK_BENCH_SECS", 10u64).max(1),
                concurrency: env_or("WAYMARK_BENCH_CONCURRENCY", 64usize).max(1),
                in_flight: env_or("WAYMARK_BENCH_IN_FLIGHT", 4usize).max(1),
            },
            runs: env_or("WAYMARK_BENCH_RUNS", 5_000usize).max(1),
            new_user_percent: env_or("WAYMARK_BENCH_NEW_USERS", 20u64).min(100),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The host processes.

/// Stop a host as an operator would: SIGTERM, after which it finishes the requests in flight
/// and exits. Waits until it has (the process is left for [`Server`] to reap); seconds taken.
fn stop_cleanly(server: &Server) -> f64 {
    let Some(pid) = server.pid() else {
        return 0.0;
    };
    let start = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    // Exited: a zombie until reaped, or gone.
    let exited = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    };
    while !exited() {
        assert!(
            start.elapsed() < STOP_LIMIT,
            "host {pid} still running {STOP_LIMIT:?} after SIGTERM; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed().as_secs_f64()
}

/// Wait until every evaluated bucket's boot backfill on `server` completed, so that none runs
/// alongside a measurement.
async fn backfills_done(server: &Server) {
    let start = Instant::now();
    loop {
        let listed = server.get("/v1/buckets").await;
        let pending = listed["buckets"].as_array().is_some_and(|buckets| {
            buckets.iter().any(|b| {
                b["enabled"] == true
                    && b["kind"] == "computed"
                    && !b["criteria"].is_null()
                    && b["backfillState"] != "completed"
            })
        });
        if !pending {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "boot backfills never completed: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Exactly `n` freshly started hosts: every running one stopped cleanly, the first restarted
/// (it holds the database and data dir the others share) and `n - 1` peers started beside it.
async fn fresh_hosts(hosts: &mut Vec<Server>, n: usize) {
    let stopped: Vec<f64> = hosts.iter().map(stop_cleanly).collect();
    // Dropping a stopped peer only reaps it.
    hosts.truncate(1);
    hosts[0].restart().await;
    for k in 1..n {
        let peer = hosts[0].start_peer(&format!("hosts{n}-peer{k}")).await;
        hosts.push(peer);
    }
    for host in hosts.iter() {
        backfills_done(host).await;
    }
    let stopped: Vec<String> = stopped.iter().map(|s| format!("{s:.1}")).collect();
    println!(
        "{n} host(s) started (the previous ones stopped cleanly in {} s): {}",
        stopped.join(" / "),
        hosts
            .iter()
            .map(|h| h.base.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// One round's burst of activations, with the latency and how the hosts shared it.
struct Burst {
    act: Activations,
    runs: usize,
    /// From a run's creation to its completion, ms.
    p50_ms: f64,
    p99_ms: f64,
    /// Activations each host committed (from its log).
    by_host: Vec<usize>,
}

/// `runs` one-activation runs triggered across `hosts`.
async fn burst(
    hosts: &[&Server],
    conn: &mut PgConnection,
    tenant: &str,
    runs: usize,
    prefix: &str,
) -> Burst {
    let committed_before: Vec<usize> = hosts
        .iter()
        .map(|h| h.committed_activations().len())
        .collect();
    let since = now_ms();
    let act = activations(hosts, conn, tenant, runs, prefix).await;
    let by_host = hosts
        .iter()
        .zip(committed_before)
        .map(|(h, before)| h.committed_activations().len() - before)
        .collect();
    // Runs' times are the host clock's, which is the real clock here (not dev mode).
    let (p50_ms, p99_ms): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY updated_at - created_at), \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY updated_at - created_at) \
         FROM runs WHERE tenant_id = $1 AND journey_id = 'burst' AND created_at >= $2 \
         AND status = 'completed'",
    )
    .bind(tenant)
    .bind(since)
    .fetch_one(conn)
    .await
    .expect("burst latencies");
    Burst {
        act,
        runs,
        p50_ms: p50_ms.unwrap_or(f64::NAN),
        p99_ms: p99_ms.unwrap_or(f64::NAN),
        by_host,
    }
}

/// What the table shows of one round of one phase; "unit" is an event, or an activation.
#[derive(Clone, Copy)]
struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU µs per unit: all host processes together, PostgreSQL.
    hosts_us: f64,
    postgres_us: f64,
    /// Percent of all the machine's cores: busy, and the hosts', PostgreSQL's and the load
    /// generator's shares.
    busy: f64,
    hosts_share: f64,
    postgres_share: f64,
    generator_share: f64,
    /// Per unit, from PostgreSQL's statistics.
    xacts: f64,
    index_scans: f64,
    blocks: f64,
}

impl Figures {
    fn of_phase(p: &Phase) -> Figures {
        Figures {
            rate: p.measured.events_per_sec(),
            p50_ms: p.measured.percentile_ms(50.0),
            p99_ms: p.measured.percentile_ms(99.0),
            hosts_us: p.per_event(p.cpu.server) * 1e6,
            postgres_us: p.per_event(p.cpu.postgres) * 1e6,
            busy: p.cpu.machine_busy,
            hosts_share: p.cpu.share(p.cpu.server),
            postgres_share: p.cpu.share(p.cpu.postgres),
            generator_share: p.cpu.generator,
            xacts: p.per_event(p.db.xacts as f64),
            index_scans: p.per_event(p.db.idx_scan as f64),
            blocks: p.per_event(p.db.blocks as f64),
        }
    }

    fn of_burst(b: &Burst) -> Figures {
        let (a, per) = (&b.act, |x: f64| x / b.runs as f64);
        Figures {
            rate: a.rate,
            p50_ms: b.p50_ms,
            p99_ms: b.p99_ms,
            hosts_us: per(a.cpu.server) * 1e6,
            postgres_us: per(a.cpu.postgres) * 1e6,
            busy: a.cpu.machine_busy,
            hosts_share: a.cpu.share(a.cpu.server),
            postgres_share: a.cpu.share(a.cpu.postgres),
            generator_share: a.cpu.generator,
            xacts: per(a.db.xacts as f64),
            index_scans: per(a.db.idx_scan as f64),
            blocks: per(a.db.blocks as f64),
        }
    }
}

/// Everything measured with one number of hosts.
struct HostsReport {
    n: usize,
    phases: Vec<Phase>,
    bursts: Vec<Burst>,
    /// Runs started while measuring, by journey.
    started: Vec<(String, i64)>,
}

impl HostsReport {
    /// Each round's figures of `kind` (`single`, `batch` or `activations`).
    fn rounds(&self, kind: &str) -> Vec<Figures> {
        if kind == "activations" {
            self.bursts.iter().map(Figures::of_burst).collect()
        } else {
            self.phases
                .iter()
                .filter(|p| p.kind == kind)
                .map(Figures::of_phase)
                .collect()
        }
    }

    /// The median over the rounds of `f` of `kind`.
    fn med(&self, kind: &str, f: impl Fn(&Figures) -> f64) -> f64 {
        median(self.rounds(kind).iter().map(f).collect())
    }
}

/// Milliseconds, to a tenth below 100.
fn latency(ms: f64) -> String {
    if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

const KINDS: [(&str, &str); 3] = [
    ("single", "single `POST`, 64 clients"),
    ("batch", "batches of 1,000, 4 in flight"),
    ("activations", "activations (`burst`)"),
];

fn print_summary(reports: &[HostsReport]) {
    println!();
    println!("Summary (medians of the rounds; each round's figure in brackets). Per event, or");
    println!("per activation; latency per request (a batch's for batches), and for activations");
    println!("from a run's creation to its completion; shares are of all the machine's cores.");
    println!(
        "| hosts | phase | events/s | p50 / p99 ms | CPU µs per event: hosts / PostgreSQL | \
         events/s per PostgreSQL core | machine busy % (hosts / PostgreSQL / load generator) | \
         per event: transactions / index scans / blocks |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in reports {
        for (kind, label) in KINDS {
            let rounds = r
                .rounds(kind)
                .iter()
                .map(|f| format!("{:.0}", f.rate))
                .collect::<Vec<_>>()
                .join(" / ");
            let m = |f: fn(&Figures) -> f64| r.med(kind, f);
            println!(
                "| {} | {label} | {:.0} ({rounds}) | {} / {} | {:.0} / {:.0} | {:.0} | \
                 {:.0} ({:.0} / {:.0} / {:.0}) | {:.2} / {:.1} / {:.0} |",
                r.n,
                m(|f| f.rate),
                latency(m(|f| f.p50_ms)),
                latency(m(|f| f.p99_ms)),
                m(|f| f.hosts_us),
                m(|f| f.postgres_us),
                1e6 / m(|f| f.postgres_us),
                m(|f| f.busy),
                m(|f| f.hosts_share),
                m(|f| f.postgres_share),
                m(|f| f.generator_share),
                m(|f| f.xacts),
                m(|f| f.index_scans),
                m(|f| f.blocks),
            );
        }
    }
    for r in reports {
        let shares: Vec<String> = r
            .bursts
            .iter()
            .map(|b| {
                let each: Vec<String> = b.by_host.iter().map(|n| n.to_string()).collect();
                format!("{} (ingest alone {:.2} s)", each.join(" + "), b.act.ingest)
            })
            .collect();
        println!(
            "{} host(s): activations committed per host, each round: {}; runs started while \
             measuring {:?}",
            r.n,
            shares.join("; "),
            r.started
        );
    }
    if let Some(first) = reports.first() {
        for (kind, _) in KINDS {
            let base = first.med(kind, |f| f.rate);
            let steps: Vec<String> = reports
                .iter()
                .map(|r| {
                    let rate = r.med(kind, |f| f.rate);
                    format!("{} host(s) {rate:.0} ({:.2}x)", r.n, rate / base)
                })
                .collect();
            println!("{kind}: {}", steps.join(", "));
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !under_cargo_bench("scale-out", "scaleout") {
        return;
    }
    if support::postgres_url().is_none() {
        println!(
            "the scale-out benchmark measures several hosts on one PostgreSQL: set \
             WAYMARK_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it"
        );
        return;
    }
    let config = Config::from_env();
    build_modules("the modules");
    println!(
        "Waymark scale-out benchmark (PostgreSQL, hosts {:?}, {} sleeping runs), {}, code at {}",
        config.hosts,
        config.sleeping,
        today(),
        commit()
    );
    println!("machine: {}", machine());
    println!("load average before the run: {}", load_average());

    let first = start_host().await;
    let url = first.database.as_ref().unwrap().url.clone();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "autovacuum",
        "shared_buffers",
        "max_connections",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        settings.push(format!("{name} {value}"));
    }
    println!("PostgreSQL: {}", settings.join(", "));

    let template = make_template(&first, &mut conn).await;
    let tenant = template.tenant.clone();
    let seeded = seed_up_to(&first, &mut conn, &template, 0, config.sleeping).await;
    // New people (`new-{n}`, each starting a welcome run) stay apart from the seeded ones.
    let newcomers = Newcomers::Apart("new-");
    let new_users = config.new_user_percent;
    let mut workload = Workload::new(0x5EED, new_users, "sleeper-", newcomers, activity);
    workload.known = config.sleeping as u64;
    let database_mib = count(&mut conn, "SELECT pg_database_size(current_database())").await as f64
        / (1024.0 * 1024.0);
    println!(
        "seeded {} sleeping people in {:.1} s; statistics refreshed by the host {:.1} s after; \
         database {database_mib:.0} MiB; load average {}",
        config.sleeping,
        seeded.seconds,
        seeded.analyzed_after,
        load_average()
    );

    let mut hosts = vec![first];
    let mut reports = Vec::new();
    for &n in &config.hosts {
        fresh_hosts(&mut hosts, n).await;
        let servers: Vec<&Server> = hosts.iter().collect();
        let measuring_since = now_ms();
        // Warm up: connections and caches, on every host.
        let warm: Vec<Vec<u8>> = (0..500).map(|_| serialise(&workload.event())).collect();
        let ones = vec![1; warm.len()];
        let clients = config.pacing.concurrency;
        let limit = Some(Duration::from_secs(60));
        post_bodies_across(&servers, "/v1/events", warm, &ones, clients, limit).await;
        settled(&mut conn, &tenant).await;

        let label = format!("hosts={n}");
        let (mut phases, mut bursts) = (Vec::new(), Vec::new());
        for round in 1..=config.rounds {
            for kind in ["single", "batch"] {
                let p = phase(
                    &servers,
                    &mut conn,
                    &tenant,
                    &mut workload,
                    &config.pacing,
                    kind,
                    round,
                )
                .await;
                println!("{}", p.line(&label));
                phases.push(p);
            }
            let prefix = format!("burst-h{n}r{round}");
            let b = burst(&servers, &mut conn, &tenant, config.runs, &prefix).await;
            let a = &b.act;
            println!(
                "{label} activations round {round}: {} runs completed in {:.2} s (ingest alone \
                 {:.2} s): {:.0} activations/s, creation to completion p50 {:.0} ms, p99 {:.0} \
                 ms; CPU per run: hosts {:.0} us, PostgreSQL {:.0} us (machine {:.0}% busy, \
                 generator {:.0}%); per run {:.2} transactions, {:.1} index scans, {:.0} blocks; \
                 committed per host {:?}",
                b.runs,
                a.total,
                a.ingest,
                a.rate,
                b.p50_ms,
                b.p99_ms,
                a.cpu.server * 1e6 / b.runs as f64,
                a.cpu.postgres * 1e6 / b.runs as f64,
                a.cpu.machine_busy,
                a.cpu.generator,
                a.db.xacts as f64 / b.runs as f64,
                a.db.idx_scan as f64 / b.runs as f64,
                a.db.blocks as f64 / b.runs as f64,
                b.by_host
            );
            bursts.push(b);
        }
        let started = started_since(&mut conn, &tenant, measuring_since).await;
        reports.push(HostsReport {
            n,
            phases,
            bursts,
            started,
        });
    }
    for host in &hosts {
        stop_cleanly(host);
    }
    print_summary(&reports);
    println!("load average after the run: {}", load_average());
}
