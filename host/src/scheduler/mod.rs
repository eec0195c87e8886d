//! The scheduler: background workers that claim runs whose timers are due (new runs are due at
//! once) and hand them to the executor, a bounded number at a time. Claims are fair across
//! tenants, each tenant kept under its activations-in-flight limit over every host (see
//! [`crate::store::flows::fair_claim`]), so one tenant's flood of due runs cannot take every
//! worker or hold back another tenant's run. Claims are leases on the
//! real clock, so after a crash or restart whatever was due or in flight is picked up again
//! once its lease lapses. It owns no journey logic.
//!
//! Several processes may schedule from one PostgreSQL database: claims are disjoint
//! (`FOR UPDATE SKIP LOCKED`), a commit is refused to a worker that lost its lease, and
//! [`spawn_clock_refresh`] keeps each process's dev clock on the database's offset so a timer
//! is due at the same moment for all of them. [`spawn_statistics_upkeep`] keeps the database's
//! planner statistics following the data, so plans do not depend on autovacuum.

use crate::clock::{Clock, OFFSET_REFRESH};
use crate::journeys::executor::{Activated, Executor};
use crate::store::{HostSettings, Lease, RunQueue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Upper bound on how long the scheduler sleeps when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Scheduler {
    pub store: Arc<dyn RunQueue>,
    pub executor: Arc<Executor>,
    pub clock: Clock,
    /// Notified when new work may be due (an ingest started runs, the dev clock moved).
    pub wake: Arc<Notify>,
    /// Notified when activations queued emails.
    pub delivery_wake: Arc<Notify>,
    pub concurrency: usize,
    /// A tenant's activations in flight over every host, unless it has a limit of its own.
    pub tenant_in_flight: u32,
    pub owner: String,
    /// How long a claim holds: longer than an activation's wall-clock timeout, and how long a
    /// run that was in flight when its host died waits before another claim picks it up.
    pub lease: Duration,
}

impl Scheduler {
    /// Run on `threads` (the guest threads): every activation the scheduler starts runs
    /// there, apart from the API's threads.
    pub fn spawn_on(self, threads: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        threads.spawn(self.run())
    }

    async fn run(self) {
        let concurrency = self.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        // Claim in refills of at least a quarter of the workers while others are busy: a claim
        // is a write transaction, and one per finished activation would double the writes. (Not
        // half: a tenant at its default limit holds half the workers, and another tenant's due
        // run must not wait for one of them to finish.)
        let refill = concurrency.div_ceil(4);
        loop {
            let available = permits.available_permits();
            if available < refill {
                // Wait until a refill's worth of workers is free, without holding them.
                let refill = u32::try_from(refill).unwrap_or(u32::MAX);
                drop(permits.clone().acquire_many_owned(refill).await);
                continue;
            }
            let lease = Lease::starting_now(&self.owner, self.lease);
            let limit = u32::try_from(available).unwrap_or(u32::MAX);
            let claimed = match self
                .store
                .claim_due_runs(self.clock.now(), &lease, limit, self.tenant_in_flight)
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::error!("claiming due runs failed: {err}");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                self.idle().await;
                continue;
            }
            for run in claimed {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closes");
                let executor = self.executor.clone();
                let owner = self.owner.clone();
                let delivery_wake = self.delivery_wake.clone();
                let wake = self.wake.clone();
                let run_id = run.run.id.clone();
                tokio::spawn(async move {
                    match executor.activate(run, &owner).await {
                        Ok(Activated::Committed { emails, .. }) => {
                            // One line per committed activation: which process ran what.
                            tracing::debug!(run = %run_id, emails, "activation committed");
                            if emails > 0 {
                                delivery_wake.notify_one();
                            }
                            // A sleep may already be over (a short one, or the clock moved).
                            wake.notify_one();
                        }
                        Ok(Activated::Skipped) => tracing::debug!(
                            run = %run_id,
                            "activation skipped: the run ended or another worker holds it"
                        ),
                        Err(err) => {
                            tracing::warn!(run = %run_id, "activation not completed: {err}")
                        }
                    }
                    drop(permit);
                });
            }
        }
    }

    /// Sleep until the next timer is due, a wake-up, or the idle poll, whichever is first.
    async fn idle(&self) {
        let until_next = match self.store.next_due_at().await {
            Ok(Some(due)) => {
                let ms = (due.0 - self.clock.now().0).max(0);
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        };
        if until_next.is_zero() {
            // Due but not claimable now: leased elsewhere, a lease just lapsed, or its tenant is
            // at its in-flight limit. Don't spin; an activation ending (room again) or another
            // tenant's new run wakes the claim at once.
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            return;
        }
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(until_next) => {}
        }
    }
}

/// Re-read the clock offset from the store every [`OFFSET_REFRESH`]: when another process on the
/// same database advanced the dev clock, this process's clock follows (never back) and its
/// scheduler wakes to claim what became due.
pub fn spawn_clock_refresh(
    store: Arc<dyn HostSettings>,
    clock: Clock,
    wake: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(OFFSET_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match store.clock_offset().await {
                Ok(offset) => {
                    if clock.observe_offset(offset) {
                        tracing::debug!(offset_ms = offset, "the shared clock moved");
                        wake.notify_one();
                    }
                }
                Err(err) => tracing::warn!("reading the clock offset failed: {err}"),
            }
        }
    })
}

/// How often the store is asked whether its planner statistics went stale.
const STATISTICS_UPKEEP: Duration = Duration::from_secs(10);

/// Refresh the store's planner statistics at start and then every [`STATISTICS_UPKEEP`], for
/// the tables that changed a lot since they were last taken (PostgreSQL: a table analyzed while
/// it held a few rows, or never, is otherwise planned as if it still did).
pub fn spawn_statistics_upkeep(store: Arc<dyn HostSettings>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(STATISTICS_UPKEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let started = std::time::Instant::now();
            match store.refresh_statistics().await {
                Ok(tables) if tables.is_empty() => {}
                Ok(tables) => tracing::debug!(
                    ?tables,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "refreshed planner statistics"
                ),
                Err(err) => tracing::warn!("refreshing planner statistics failed: {err}"),
            }
        }
    })
}
