//! The measured phases on a server over PostgreSQL, on one host process or several sharing
//! the database: single posts or batches for a while, a burst of activations; then waiting
//! until the work they caused is done and PostgreSQL's statistics are flushed, and what the
//! phase cost per event.

use super::load::{Measured, batch_body, post_bodies_across, serialise, trigger_across};
use super::median;
use super::postgres::{Cpu, CpuSpent, DbStats, STATS_FLUSH, count, settled};
use super::workload::Workload;
use crate::support::Server;
use serde_json::Value;
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// How hard and how long a phase sends.
pub struct Pacing {
    /// Seconds each ingest phase sends for.
    pub secs: u64,
    /// Keep-alive clients sending single posts.
    pub concurrency: usize,
    /// Batches in flight.
    pub in_flight: usize,
}

/// One timed ingest phase, and what it cost.
pub struct Phase {
    /// `single` or `batch`.
    pub kind: &'static str,
    pub round: usize,
    pub measured: Measured,
    pub cpu: CpuSpent,
    pub db: DbStats,
    /// Seconds after the last answer until the work the phase caused was done.
    pub settle: f64,
}

impl Phase {
    /// `x` per acknowledged event.
    pub fn per_event(&self, x: f64) -> f64 {
        x / self.measured.events.max(1) as f64
    }

    /// The phase in one line, after `label` (what is being varied, e.g. `N=10000`).
    pub fn line(&self, label: &str) -> String {
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
            "{label} {} round {}: {} events in {:.1} s = {:.0} events/s, {latency}{}{}; \
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

/// One timed phase, `single` posts or `batch`es, each request to the next of `servers` in
/// turn; then settle and let statistics flush.
pub async fn phase(
    servers: &[&Server],
    conn: &mut PgConnection,
    tenant: &str,
    workload: &mut Workload,
    config: &Pacing,
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
    let cpu_before = Cpu::now(servers);
    let counts = vec![per_body; bodies.len()];
    let measured =
        post_bodies_across(servers, path, bodies, &counts, clients, Some(duration)).await;
    let cpu = Cpu::now(servers).since(&cpu_before);
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

/// A burst of one-activation runs, and what it cost.
pub struct Activations {
    /// Runs completed per second, from the first trigger until the last run completed.
    pub rate: f64,
    /// Seconds from the first trigger until the last run completed.
    pub total: f64,
    /// Seconds the triggers' ingest alone took.
    pub ingest: f64,
    pub cpu: CpuSpent,
    pub db: DbStats,
}

/// `runs` people (`{prefix}-{i}`) trigger `burst` (one activation each), in batches of 1,000,
/// batch `j` through host `j` mod the number of `servers` (one host: all of them, in turn).
pub async fn activations(
    servers: &[&Server],
    conn: &mut PgConnection,
    tenant: &str,
    runs: usize,
    prefix: &str,
) -> Activations {
    let done_sql = format!(
        "SELECT COUNT(*) FROM runs WHERE tenant_id = '{tenant}' AND journey_id = 'burst' \
         AND status = 'completed'"
    );
    let already = count(conn, &done_sql).await;
    let stats_before = DbStats::read(conn).await;
    let cpu_before = Cpu::now(servers);
    let start = Instant::now();
    trigger_across(servers, "bench.burst", prefix, 0..runs).await;
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
    let cpu = Cpu::now(servers).since(&cpu_before);
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

/// The median over the rounds of `f` of the phases of `kind`.
pub fn med(phases: &[Phase], kind: &str, f: impl Fn(&Phase) -> f64) -> f64 {
    median(phases.iter().filter(|p| p.kind == kind).map(f).collect())
}

/// Each round's `f` of the phases of `kind`, as `a / b / …`.
pub fn list(phases: &[Phase], kind: &str, f: impl Fn(&Phase) -> f64) -> String {
    phases
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| format!("{:.0}", f(p)))
        .collect::<Vec<_>>()
        .join(" / ")
}
