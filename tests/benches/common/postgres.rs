//! Measuring a server on PostgreSQL: the CPU of its host processes and of PostgreSQL, the
//! database's own counters, and waiting until the work an ingest phase caused is done.

use super::{CpuSample, process_cpu_seconds};
use crate::support::Server;
use sqlx::{AssertSqlSafe, PgConnection};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Tables that grow with a tenant's data (as `tests/tests/pg_plans.rs` lists them).
pub const GROWING: &str = "('contacts', 'contact_aliases', 'events', 'runs', 'journal', 'timers', \
     'emails', 'bucket_memberships', 'journey_skips', 'email_preferences', 'run_effects', \
     'bucket_absence_cursors')";
/// After a phase settled: longer than PostgreSQL's 10 s idle flush of a backend's statistics.
pub const STATS_FLUSH: Duration = Duration::from_secs(11);

// ---------------------------------------------------------------------------------------------
// Sampling: CPU of the hosts and of PostgreSQL, and PostgreSQL's own counters.

/// CPU ticks (1/100 s) of every process named `postgres`, by pid.
pub fn postgres_ticks() -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        ticks.insert(pid, field(11) + field(12));
    }
    ticks
}

/// CPU seconds of PostgreSQL's processes between two samples (those that exited in between
/// are lost; new ones count from zero).
pub fn postgres_seconds(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> f64 {
    after
        .iter()
        .map(|(pid, &t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum::<u64>() as f64
        / 100.0
}

/// A sample of everything a phase's CPU figures are made of.
pub struct Cpu {
    machine: CpuSample,
    /// The host processes' CPU seconds so far, all of them together.
    server: f64,
    postgres: HashMap<u32, u64>,
}

impl Cpu {
    /// Now, for the host processes `servers` (several sharing one database, or one).
    pub fn now(servers: &[&Server]) -> Cpu {
        let pids: Vec<u32> = servers
            .iter()
            .map(|s| s.pid().expect("a running server"))
            .collect();
        Cpu {
            machine: CpuSample::now_for(pids[0]),
            server: pids.iter().map(|&pid| process_cpu_seconds(pid)).sum(),
            postgres: postgres_ticks(),
        }
    }

    pub fn since(&self, before: &Cpu) -> CpuSpent {
        let machine = self.machine.since(before.machine);
        CpuSpent {
            server: self.server - before.server,
            postgres: postgres_seconds(&before.postgres, &self.postgres),
            machine_busy: machine.machine_busy_percent,
            generator: machine.generator_percent,
            machine_seconds: machine.machine_ticks / 100.0,
        }
    }
}

/// CPU used in a phase: seconds of the host processes (together) and of PostgreSQL, and the
/// machine's busy and load-generator shares of all its cores, in percent.
#[derive(Clone, Copy, Default)]
pub struct CpuSpent {
    pub server: f64,
    pub postgres: f64,
    pub machine_busy: f64,
    pub generator: f64,
    /// The CPU seconds all cores together offered in the phase (wall time × cores), which
    /// the shares are of.
    pub machine_seconds: f64,
}

impl CpuSpent {
    /// `seconds` as a share of all the machine's cores in the phase, in percent.
    pub fn share(&self, seconds: f64) -> f64 {
        100.0 * seconds / self.machine_seconds.max(f64::MIN_POSITIVE)
    }
}

/// PostgreSQL's counters for the database (`pg_stat_database`, `pg_stat_user_tables`).
#[derive(Clone, Default)]
pub struct DbStats {
    /// Per table: index scans, rows read (by sequential scans and fetched by index scans), and
    /// blocks touched (heap and indexes, in shared buffers or not).
    pub per_table: Vec<(String, i64, i64, i64)>,
    pub xacts: i64,
    pub idx_scan: i64,
    pub seq_scan_growing: i64,
    pub seq_tup_growing: i64,
    pub runs_timers_rows: i64,
    pub tup_fetched: i64,
    pub tup_written: i64,
    pub blocks: i64,
    /// Blocks not found in shared buffers (read from the OS).
    pub blocks_read: i64,
}

impl DbStats {
    pub async fn read(conn: &mut PgConnection) -> DbStats {
        let db: (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::bigint, tup_fetched::bigint, \
             (tup_inserted + tup_updated + tup_deleted)::bigint, (blks_hit + blks_read)::bigint, \
             blks_read::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_database");
        let tables: (i64, i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT COALESCE(sum(COALESCE(idx_scan, 0)), 0)::bigint, \
             COALESCE(sum(seq_scan) FILTER (WHERE relname IN {GROWING}), 0)::bigint, \
             COALESCE(sum(seq_tup_read) FILTER (WHERE relname IN {GROWING}), 0)::bigint, \
             COALESCE(sum(seq_tup_read + COALESCE(idx_tup_fetch, 0)) \
                 FILTER (WHERE relname IN ('runs', 'timers')), 0)::bigint \
             FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        )))
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_user_tables");
        let per_table = sqlx::query_as(
            "SELECT s.relname::text, COALESCE(s.idx_scan, 0)::bigint, \
             (s.seq_tup_read + COALESCE(s.idx_tup_fetch, 0))::bigint, \
             (io.heap_blks_read + io.heap_blks_hit + COALESCE(io.idx_blks_read, 0) \
              + COALESCE(io.idx_blks_hit, 0))::bigint \
             FROM pg_stat_user_tables s JOIN pg_statio_user_tables io ON io.relid = s.relid \
             WHERE s.schemaname = current_schema()",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("pg_stat_user_tables");
        DbStats {
            per_table,
            xacts: db.0,
            tup_fetched: db.1,
            tup_written: db.2,
            blocks: db.3,
            blocks_read: db.4,
            idx_scan: tables.0,
            seq_scan_growing: tables.1,
            seq_tup_growing: tables.2,
            runs_timers_rows: tables.3,
        }
    }

    pub fn since(self, before: DbStats) -> DbStats {
        let mut per_table: Vec<(String, i64, i64, i64)> = self
            .per_table
            .iter()
            .map(|(table, scans, rows, blocks)| {
                let (s0, r0, b0) = before
                    .per_table
                    .iter()
                    .find(|(t, _, _, _)| t == table)
                    .map_or((0, 0, 0), |(_, s, r, b)| (*s, *r, *b));
                (table.clone(), scans - s0, rows - r0, blocks - b0)
            })
            .collect();
        per_table.sort_by_key(|(_, _, _, blocks)| -blocks);
        DbStats {
            per_table,
            xacts: self.xacts - before.xacts,
            idx_scan: self.idx_scan - before.idx_scan,
            seq_scan_growing: self.seq_scan_growing - before.seq_scan_growing,
            seq_tup_growing: self.seq_tup_growing - before.seq_tup_growing,
            runs_timers_rows: self.runs_timers_rows - before.runs_timers_rows,
            tup_fetched: self.tup_fetched - before.tup_fetched,
            tup_written: self.tup_written - before.tup_written,
            blocks: self.blocks - before.blocks,
            blocks_read: self.blocks_read - before.blocks_read,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The database, on the bench's own connection.

pub async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn execute(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Rows per table of the current schema.
pub async fn table_counts(conn: &mut PgConnection) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let n = count(conn, &format!("SELECT COUNT(*) FROM \"{table}\"")).await;
        counts.push((table, n));
    }
    counts
}

/// Seconds until no run is due an activation and the outbox is empty.
pub async fn settled(conn: &mut PgConnection, tenant: &str) -> f64 {
    let start = Instant::now();
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM runs WHERE tenant_id = '{tenant}' AND status = 'active') \
              + (SELECT COUNT(*) FROM emails WHERE status = 'queued')"
    );
    loop {
        if count(conn, &sql).await == 0 {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "runs or emails still pending after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs started since `since_ms` (host clock = real clock here: not dev mode), by journey.
pub async fn started_since(
    conn: &mut PgConnection,
    tenant: &str,
    since_ms: i64,
) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT journey_id, COUNT(*) FROM runs WHERE tenant_id = $1 AND created_at >= $2 \
         GROUP BY 1 ORDER BY 1",
    )
    .bind(tenant)
    .bind(since_ms)
    .fetch_all(conn)
    .await
    .unwrap()
}
