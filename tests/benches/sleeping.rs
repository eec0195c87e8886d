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

use common::load::{post_bodies, serialise};
use common::phases::{Activations, Pacing, Phase, activations, list, med, phase};
use common::postgres::{count, settled, started_since};
use common::seed::{activity, make_template, seed_up_to, start_host};
use common::workload::{Newcomers, Workload};
use common::{
    build_modules, commit, env_or, load_average, machine, now_ms, today, under_cargo_bench,
};
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// The issue's targets (2-core machine, ≥ 100,000 sleeping runs).
const TARGET_SINGLE: f64 = 3_000.0;
const TARGET_BATCH: f64 = 8_000.0;
const TARGET_ACTIVATIONS: f64 = 2_000.0;

struct Config {
    sleeping: Vec<i64>,
    rounds: usize,
    pacing: Pacing,
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

    let server = start_host().await;
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
        let seeded = seed_up_to(&server, &mut conn, &template, made, n).await;
        made = made.max(n);
        let (seeding, analyzed_after) = (seeded.seconds, seeded.analyzed_after);
        workload.known = made as u64;
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
            config.pacing.concurrency,
            Some(Duration::from_secs(60)),
        )
        .await;
        settled(&mut conn, &tenant).await;

        let mut phases = Vec::new();
        for round in 1..=config.rounds {
            for kind in ["single", "batch"] {
                let p = phase(
                    &[&server],
                    &mut conn,
                    &tenant,
                    &mut workload,
                    &config.pacing,
                    kind,
                    round,
                )
                .await;
                println!("{}", p.line(&format!("N={n}")));
                phases.push(p);
            }
        }
        let burst = format!("burst-{n}");
        let act = activations(&[&server], &mut conn, &tenant, config.runs, &burst).await;
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
