//! What the benchmarks share: how they start and read their settings, what they print about
//! where they ran, how they sample CPU use and sum up figures; the events the load benches
//! generate ([`workload`]) and how requests are sent and timed ([`load`]); on PostgreSQL, what
//! a phase cost the hosts and the database ([`postgres`]), the measured phases themselves
//! ([`phases`]) and sleeping runs seeded with SQL ([`seed`]).
//!
//! Each bench compiles this module on its own and uses a subset of it (so each declares it
//! with `#[allow(dead_code)]`). The helpers that build modules or talk to a server use the
//! bench's `support` module (`tests/tests/support`), which every bench declares at its root.

pub mod load;
pub mod phases;
pub mod postgres;
pub mod seed;
pub mod workload;

use crate::support::{self, Backend};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether `cargo bench` runs this bench (it passes `--bench`). `cargo test --all-targets`
/// runs the benches too, without it: then this prints how to run the `name` benchmark
/// (`--bench bench`), and the bench should return.
pub fn under_cargo_bench(name: &str, bench: &str) -> bool {
    let bench_run = std::env::args().any(|a| a == "--bench");
    if !bench_run {
        println!("the {name} benchmark runs under `cargo bench -p waymark-tests --bench {bench}`");
    }
    bench_run
}

/// Build every example and test module (`waymark build`, as the tests do), saying it builds
/// `what`; the directory of `.wasm` files.
pub fn build_modules(what: &str) -> &'static Path {
    println!("building {what} (waymark build, as the tests do)…");
    tokio::task::block_in_place(support::built_modules)
}

/// The options that lift a host's request and ingest rate limits, which a bench would
/// otherwise measure.
pub fn unthrottled() -> Vec<String> {
    ["--rate-limit", "0", "--tenant-ingest-rate", "0"]
        .map(String::from)
        .to_vec()
}

/// SQLite always; PostgreSQL (a fresh database per server) when `WAYMARK_TEST_DATABASE_URL`
/// is set.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if support::postgres_url().is_some() {
        backends.push(Backend::Postgres);
    }
    backends
}

/// The setting `name` from the environment, `default` when unset or blank; a value that does
/// not parse stops the bench.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        _ => default,
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The commit checked out, abbreviated (empty when git cannot tell).
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(support::repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nearest-rank percentile `q` (0 to 1) of a sorted slice; `T::default()` of an empty one.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds since the epoch of an RFC 3339 time the API wrote.
pub fn epoch_ms(text: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis() as f64)
}

/// Due-to-activation (ms, sorted) of `runs` — every `every`-th of them — as `key` sees them: a
/// run's first journal step minus its creation (a new run is due at once), host clock, waiting
/// for each to have a first step.
pub async fn due_to_activation(
    server: &support::Server,
    key: &str,
    runs: &[String],
    every: usize,
) -> Vec<f64> {
    let mut delays = Vec::new();
    for run in runs.iter().step_by(every.max(1)) {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let detail = server.run_as(run, key).await;
            let first = detail["timeline"][0]["at"].as_str().and_then(epoch_ms);
            let created = detail["createdAt"].as_str().and_then(epoch_ms);
            if let (Some(first), Some(created)) = (first, created) {
                delays.push(first - created);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {run} never activated: {detail}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    delays.sort_by(f64::total_cmp);
    delays
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// `nproc`, memory, CPU model and kernel, from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "nproc {nproc}, {:.1} GiB RAM, {model}, Linux {}",
        mem_kib as f64 / (1024.0 * 1024.0),
        kernel.trim()
    )
}

/// Today's date (UTC), from the system clock.
pub fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Howard Hinnant's civil_from_days.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let time = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        time / 3_600,
        time % 3_600 / 60
    )
}

/// CPU time so far, in clock ticks (1/100 s): the whole machine's busy and total ticks
/// (/proc/stat), this process's (the load generator's) and its children's (the server's), or
/// one child's ([`CpuSample::now_for`]).
#[derive(Clone, Copy, Default)]
pub struct CpuSample {
    machine_busy: u64,
    machine_total: u64,
    own: u64,
    server: u64,
}

/// User plus system ticks from a `/proc/<pid>/stat` line, and the parent pid.
fn process_ticks(stat: &str) -> (u64, u32) {
    // The fields after the parenthesised command: ppid is the 2nd, utime and stime the 12th
    // and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    (field(11) + field(12), field(1) as u32)
}

/// The ticks of this process's children (the server), found by their parent pid.
fn children_ticks() -> u64 {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .map(|stat| process_ticks(&stat))
        .filter(|&(_, parent)| parent == me)
        .map(|(ticks, _)| ticks)
        .sum()
}

/// The CPU time (user + system, all threads) one process has used so far, in seconds.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    pid_ticks(pid) as f64 / 100.0
}

/// The ticks of one process, by pid (0 once it has gone).
fn pid_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| process_ticks(&stat).0)
        .unwrap_or(0)
}

impl CpuSample {
    pub fn now() -> CpuSample {
        Self::sample(children_ticks)
    }

    /// As [`CpuSample::now`], with the server's CPU read from the one process `server_pid`
    /// (when a bench runs several servers at once).
    pub fn now_for(server_pid: u32) -> CpuSample {
        Self::sample(|| pid_ticks(server_pid))
    }

    fn sample(server_ticks: impl FnOnce() -> u64) -> CpuSample {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        CpuSample {
            machine_busy: total.saturating_sub(idle),
            machine_total: total,
            own: process_ticks(&own_stat).0,
            server: server_ticks(),
        }
    }

    /// What happened since `earlier`.
    pub fn since(self, earlier: CpuSample) -> CpuUse {
        let total = self
            .machine_total
            .saturating_sub(earlier.machine_total)
            .max(1) as f64;
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy) as f64;
        let own = self.own.saturating_sub(earlier.own) as f64;
        CpuUse {
            machine_busy_percent: 100.0 * busy / total,
            generator_percent: 100.0 * own / total,
            server_seconds: self.server.saturating_sub(earlier.server) as f64 / 100.0,
            machine_ticks: total,
        }
    }
}

/// CPU use during a phase: the machine's busy share of all cores, the load generator's share,
/// and the CPU time the server itself used.
#[derive(Clone, Copy, Default)]
pub struct CpuUse {
    pub machine_busy_percent: f64,
    pub generator_percent: f64,
    pub server_seconds: f64,
    /// The machine's ticks (all cores) the figures above are shares of, so that uses can be
    /// added ([`CpuUse::plus`]).
    pub machine_ticks: f64,
}

impl CpuUse {
    /// Both intervals as one: CPU seconds add, shares weigh by each interval's ticks.
    pub fn plus(self, other: CpuUse) -> CpuUse {
        let total = (self.machine_ticks + other.machine_ticks).max(1.0);
        let weigh = |a: f64, b: f64| (a * self.machine_ticks + b * other.machine_ticks) / total;
        CpuUse {
            machine_busy_percent: weigh(self.machine_busy_percent, other.machine_busy_percent),
            generator_percent: weigh(self.generator_percent, other.generator_percent),
            server_seconds: self.server_seconds + other.server_seconds,
            machine_ticks: self.machine_ticks + other.machine_ticks,
        }
    }
}
