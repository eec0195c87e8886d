//! The reconcile job: what moves buckets when no event arrives (domain-spec §2.9).
//!
//! A cron schedule (`--reconcile-cron`, default every minute, on the host clock — the dev
//! clock when it was advanced) ticks per tenant. At a tick the job runs, for every bucket the
//! clock can move, the passes [`crate::buckets::reconcile_rules::passes`] lists, in order, each one
//! bounded batch ([`crate::store::Reconciles::reconcile_pass`], one transaction that also ingests
//! the transitions). A failing bucket is logged and the others go on.
//!
//! Single flight per tenant: one loop per process runs the tenants one after the other, and a
//! lease row per tenant (real clock) keeps two hosts on one database from reconciling the same
//! tenant at once; a tick that finds the lease held skips. A pass that still runs twice (a lease
//! that lapsed mid-pass) is harmless: joins and leaves are compare-and-swaps and every
//! transition has a deterministic key.
//!
//! Pacing: after each pass the job rests so its passes hold the store's writer at most
//! [`WRITER_SHARE`] of the time, and ingest keeps its throughput while a large bucket is swept.
//!
//! Catch-up: the last completed tick is stored with the lease. When the host clock jumped
//! (a restart after downtime, or `POST /v1/admin/clock/advance`) the job runs the passes as of
//! the ticks it passed over, coalesced: after each tick it asks the store for the earliest
//! instant anything can next change ([`crate::store::Reconciles::reconcile_next_work`]: a window
//! edge, a max-dwell or min-dwell deadline, a dwell coming due) and jumps to the first tick at
//! or after it, ending with the latest tick. So a 10-day advance runs a handful of passes, each
//! as of the tick the work fell due (a reconcile join's `entered_at` is that tick).
//!
//! Fast expiry (§2.10): a fast-expiry bucket's membership carries its timer in `expires_at`
//! (the window's end, set at the join); at every poll of the host clock the job re-checks the
//! members whose timer passed ([`Pass::Expiry`]) — a near-instant leave instead of one at the
//! next tick; the tick passes stay the backstop.
//!
//! It owns the schedule, the lease and the loop; it must not decide membership (that is
//! [`crate::buckets::reconcile_rules`]) nor speak SQL.

use crate::buckets::reconcile_rules::{Pass, passes};
use crate::clock::{Clock, Timestamp};
use crate::ids::TenantId;
use crate::modules::ModuleRegistry;
use crate::store::{Lease, ReconcileClaim, Reconciles, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The default schedule: every minute.
pub const DEFAULT_CRON: &str = "0 * * * * *";

/// How often the job looks at the host clock for a due tick.
const POLL: Duration = Duration::from_millis(250);

/// How long a host holds a tenant's lease without renewing it.
const LEASE: Duration = Duration::from_secs(120);

/// Rows one pass reads per bucket and tick.
pub const DEFAULT_BATCH: u32 = 500;

/// The share of the store's write time the job may take while it has work (each pass is a
/// write transaction; on SQLite there is one writer, shared with ingest).
pub const WRITER_SHARE: f64 = 0.15;

/// After a pass that took `elapsed`, rest so the job's passes take at most [`WRITER_SHARE`]
/// of the time: ingest keeps the rest of the writer.
pub async fn pace(elapsed: Duration) {
    let rest = elapsed.mul_f64(1.0 / WRITER_SHARE - 1.0);
    if !rest.is_zero() {
        tokio::time::sleep(rest).await;
    }
}

/// A parsed reconcile schedule: cron with seconds (`sec min hour day month weekday [year]`),
/// or the classic five fields (seconds taken as 0).
#[derive(Debug, Clone)]
pub struct ReconcileSchedule {
    expression: String,
    schedule: cron::Schedule,
}

impl FromStr for ReconcileSchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let full = if text.split_whitespace().count() == 5 {
            format!("0 {text}")
        } else {
            text.to_owned()
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(format!("cron expression {text:?} never fires"));
        }
        Ok(Self {
            expression: text.to_owned(),
            schedule,
        })
    }
}

impl Default for ReconcileSchedule {
    fn default() -> Self {
        DEFAULT_CRON.parse().expect("the default schedule parses")
    }
}

impl ReconcileSchedule {
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first tick strictly after `t`.
    pub fn tick_after(&self, t: Timestamp) -> Option<Timestamp> {
        let at = DateTime::<Utc>::from_timestamp_millis(t.0)?;
        self.schedule
            .after(&at)
            .next()
            .map(|d| Timestamp(d.timestamp_millis()))
    }

    /// The first tick at or after `t`.
    pub fn tick_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.tick_after(Timestamp(t.0.saturating_sub(1)))
    }

    /// The latest tick at or before `now`, searching back from it (`None` when there is none
    /// within a year).
    pub fn latest_tick(&self, now: Timestamp) -> Option<Timestamp> {
        // Step back from a little after `now` (cron works in whole seconds), then forward
        // to the last tick not after `now`.
        let at = DateTime::<Utc>::from_timestamp_millis(now.0.saturating_add(1_000))?;
        let mut found = Timestamp(
            self.schedule
                .after_owned(at)
                .next_back()?
                .timestamp_millis(),
        );
        while found > now {
            let at = DateTime::<Utc>::from_timestamp_millis(found.0)?;
            found = Timestamp(
                self.schedule
                    .after_owned(at)
                    .next_back()?
                    .timestamp_millis(),
            );
        }
        while let Some(next) = self.tick_after(found).filter(|next| *next <= now) {
            found = next;
        }
        (now.0 - found.0 <= 366 * 86_400_000).then_some(found)
    }
}

pub struct ReconcileJob {
    pub store: Arc<dyn Reconciles>,
    pub modules: Arc<ModuleRegistry>,
    pub clock: Clock,
    pub schedule: ReconcileSchedule,
    /// Rows per pass and bucket.
    pub batch: u32,
    pub owner: String,
    /// Notified when transitions started runs.
    pub scheduler_wake: Arc<Notify>,
}

/// What one tenant's catch-up did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TenantRun {
    /// The ticks whose passes ran, in order.
    pub ticks: Vec<Timestamp>,
    pub transitions: usize,
    /// Buckets whose pass failed (logged), by tick.
    pub failures: usize,
}

impl ReconcileJob {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        // Per tenant, the next tick this host will look at (known once it claimed the tenant).
        let mut next_tick: HashMap<TenantId, Timestamp> = HashMap::new();
        loop {
            let now = self.clock.now();
            for tenant in self.modules.tenants() {
                if next_tick.get(&tenant).is_some_and(|t| now < *t) {
                    continue;
                }
                match self.reconcile_tenant(&tenant, now).await {
                    Ok(Some(run)) => {
                        if let Some(last) = run.ticks.last()
                            && let Some(next) = self.schedule.tick_after(*last)
                        {
                            next_tick.insert(tenant.clone(), next);
                        }
                    }
                    // Another host holds it, or nothing to do: look again at the next tick.
                    Ok(None) => {
                        if let Some(next) = self.schedule.tick_after(now) {
                            next_tick.insert(tenant.clone(), next);
                        }
                    }
                    Err(err) => tracing::error!(tenant = %tenant, "reconcile failed: {err}"),
                }
            }
            for tenant in self.modules.tenants() {
                self.expire_tenant(&tenant, now).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Run the tenant's due ticks up to `now` (coalesced), under its lease. `None` when
    /// another host holds the lease or the tenant has no bucket the clock moves.
    pub async fn reconcile_tenant(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<Option<TenantRun>, StoreError> {
        let registry = self.modules.bucket_registry(tenant);
        let buckets: Vec<_> = registry
            .all()
            .iter()
            .filter(|b| !passes(b).is_empty())
            .cloned()
            .collect();
        if buckets.is_empty() {
            return Ok(None);
        }
        let Some(latest) = self.schedule.latest_tick(now) else {
            return Ok(None);
        };
        let lease = || Lease::starting_now(&self.owner, LEASE);
        let last_done = match self.store.claim_reconcile(tenant, &lease()).await? {
            ReconcileClaim::Taken { last_tick } => last_tick,
            ReconcileClaim::HeldElsewhere => return Ok(None),
        };
        // First run on this database: start at the latest tick, no history to catch up.
        let first = match last_done {
            Some(last) if last >= latest => {
                self.store
                    .finish_reconcile(tenant, &self.owner, None, true)
                    .await?;
                return Ok(Some(TenantRun {
                    ticks: vec![last],
                    ..TenantRun::default()
                }));
            }
            Some(last) => self.schedule.tick_after(last).unwrap_or(latest),
            None => latest,
        };
        let mut run = TenantRun::default();
        let mut tick = first.min(latest);
        loop {
            let routing = self.modules.routing_snapshot(tenant);
            for bucket in &buckets {
                for pass in passes(bucket) {
                    let started = std::time::Instant::now();
                    let result = self
                        .store
                        .reconcile_pass(tenant, bucket, pass, tick, self.batch, routing.clone())
                        .await;
                    pace(started.elapsed()).await;
                    match result {
                        Ok(report) => {
                            run.transitions += report.transitions.len();
                            if report.started_runs > 0 {
                                self.scheduler_wake.notify_one();
                            }
                            if report.examined >= self.batch as usize {
                                tracing::info!(
                                    tenant = %tenant, bucket = %bucket.id, pass = %pass.name(),
                                    "reconcile batch full; the rest waits for the next tick"
                                );
                            }
                        }
                        Err(err) => {
                            // One failing bucket does not stop the others.
                            run.failures += 1;
                            tracing::error!(
                                tenant = %tenant, bucket = %bucket.id, pass = %pass.name(),
                                "reconcile pass failed: {err}"
                            );
                            break;
                        }
                    }
                }
            }
            run.ticks.push(tick);
            let release = tick >= latest;
            if !self
                .store
                .finish_reconcile(tenant, &self.owner, Some(tick), release)
                .await?
            {
                tracing::warn!(tenant = %tenant, "lost the reconcile lease; stopping");
                break;
            }
            if release {
                break;
            }
            tick = self
                .next_tick_with_work(tenant, &buckets, tick, latest)
                .await?;
            // Renew the lease for the next tick of a long catch-up.
            if self.store.claim_reconcile(tenant, &lease()).await? == ReconcileClaim::HeldElsewhere
            {
                break;
            }
        }
        Ok(Some(run))
    }

    /// Fast expiry: for each fast-expiry bucket, one batch of members whose `expires_at`
    /// passed on the host clock ([`Pass::Expiry`]). Every poll, not on the schedule; after the
    /// tick passes, so a catch-up's leaves happen as of their ticks first. Harmless to run on
    /// several hosts at once (compare-and-swap, deterministic keys), so it takes no lease.
    pub async fn expire_tenant(&self, tenant: &TenantId, now: Timestamp) -> usize {
        let registry = self.modules.bucket_registry(tenant);
        let mut transitions = 0;
        for bucket in registry
            .all()
            .iter()
            .filter(|b| b.fast_expiry && b.is_evaluated())
        {
            match self
                .store
                .reconcile_pass(
                    tenant,
                    bucket,
                    Pass::Expiry,
                    now,
                    self.batch,
                    self.modules.routing_snapshot(tenant),
                )
                .await
            {
                Ok(report) => {
                    transitions += report.transitions.len();
                    if report.started_runs > 0 {
                        self.scheduler_wake.notify_one();
                    }
                }
                Err(err) => tracing::error!(
                    tenant = %tenant, bucket = %bucket.id, "fast expiry failed: {err}"
                ),
            }
        }
        transitions
    }

    /// The first tick after `tick` at which some bucket can have work, never after `latest`.
    async fn next_tick_with_work(
        &self,
        tenant: &TenantId,
        buckets: &[crate::buckets::BucketDef],
        tick: Timestamp,
        latest: Timestamp,
    ) -> Result<Timestamp, StoreError> {
        let mut earliest: Option<Timestamp> = None;
        for bucket in buckets {
            match self.store.reconcile_next_work(tenant, bucket, tick).await {
                Ok(Some(at)) => earliest = Some(earliest.map_or(at, |e| e.min(at))),
                Ok(None) => {}
                Err(err) => {
                    // Cannot tell: do not skip any tick of this catch-up.
                    tracing::error!(tenant = %tenant, bucket = %bucket.id,
                        "reconcile look-ahead failed: {err}");
                    earliest = Some(Timestamp(tick.0 + 1));
                }
            }
        }
        Ok(earliest
            .and_then(|at| self.schedule.tick_at_or_after(at))
            .filter(|next| *next < latest)
            .unwrap_or(latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn given_five_or_six_fields_when_parsed_then_both_tick_on_the_minute() {
        for expr in ["* * * * *", "0 * * * * *"] {
            let s: ReconcileSchedule = expr.parse().unwrap();
            assert_eq!(
                s.tick_after(Timestamp(10 * MINUTE + 5)),
                Some(Timestamp(11 * MINUTE))
            );
            assert_eq!(
                s.tick_at_or_after(Timestamp(11 * MINUTE)),
                Some(Timestamp(11 * MINUTE))
            );
            assert_eq!(
                s.latest_tick(Timestamp(11 * MINUTE + 59_999)),
                Some(Timestamp(11 * MINUTE))
            );
            assert_eq!(
                s.latest_tick(Timestamp(11 * MINUTE)),
                Some(Timestamp(11 * MINUTE))
            );
        }
        assert!("every minute".parse::<ReconcileSchedule>().is_err());
    }

    #[test]
    fn given_an_hourly_schedule_when_asked_for_the_latest_tick_then_it_is_the_hour() {
        let s: ReconcileSchedule = "0 * * * *".parse().unwrap();
        assert_eq!(
            s.latest_tick(Timestamp(90 * MINUTE)),
            Some(Timestamp(60 * MINUTE))
        );
    }
}
