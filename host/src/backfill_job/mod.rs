//! Bucket backfill jobs: registering a tenant's buckets when its modules are loaded (which
//! queues a backfill for a new bucket or changed criteria, domain-spec §2.11.2) and the
//! background worker that runs queued backfills page by page.
//!
//! Several hosts may share one PostgreSQL database: a worker claims one backfill at a time
//! under a lease on the real clock, renews it with every page, and a backfill whose host died
//! is taken over (after its lease ran out) from the last committed page. A worker only claims
//! backfills whose target fingerprint is that of the criteria it has loaded, so hosts running
//! different module versions never compute each other's criteria.
//!
//! The rules (what registering changes, what a contact's evaluation does) live in
//! [`crate::buckets::backfill_rules`], the SQL in the store; this module owns only the job loop. It
//! must not evaluate criteria itself.

pub mod cli;

use crate::buckets::BucketRegistry;
use crate::clock::{Clock, Timestamp};
use crate::ids::TenantId;
use crate::modules::ModuleRegistry;
use crate::store::{
    BackfillStep, Backfills, BucketFingerprint, ClaimedBackfill, Lease, StoreResult,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Contacts scanned per transaction.
pub const PAGE_SIZE: u32 = 250;
/// How long a claim holds without a page committing.
const LEASE: Duration = Duration::from_secs(60);
/// How long the worker sleeps when there is nothing to claim (a restart through the API wakes
/// it at once).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A page that fails this many times in a row fails the backfill (a restart retries it).
const MAX_PAGE_ATTEMPTS: u32 = 3;

/// The enabled computed buckets of a registry, with their criteria fingerprints.
pub fn fingerprints(registry: &BucketRegistry) -> Vec<BucketFingerprint> {
    registry
        .evaluated()
        .filter_map(|bucket| {
            Some(BucketFingerprint {
                bucket_id: bucket.id.clone(),
                fingerprint: bucket.criteria_fingerprint()?,
            })
        })
        .collect()
}

/// Record a tenant's buckets as just loaded (call before anything evaluates them on the
/// clock): a new bucket gets its config row — no fingerprint yet, a pending first-time
/// backfill — and changed criteria queue a re-evaluation.
pub async fn register(
    store: &dyn Backfills,
    tenant: &TenantId,
    registry: &BucketRegistry,
    now: Timestamp,
) -> StoreResult<()> {
    let buckets = fingerprints(registry);
    if buckets.is_empty() {
        return Ok(());
    }
    store.register_buckets(tenant, &buckets, now).await
}

pub struct BackfillWorker {
    pub store: Arc<dyn Backfills>,
    pub modules: Arc<ModuleRegistry>,
    pub clock: Clock,
    /// Notified when a backfill may have been queued.
    pub wake: Arc<Notify>,
    pub owner: String,
}

impl BackfillWorker {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_one().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "claiming a bucket backfill failed"),
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
        })
    }

    /// Claim one backfill any tenant has queued and run it to its end; whether there was one.
    async fn run_one(&self) -> StoreResult<bool> {
        for tenant in self.modules.tenants() {
            let registry = self.modules.bucket_registry(&tenant);
            let buckets = fingerprints(&registry);
            if buckets.is_empty() {
                continue;
            }
            let lease = Lease::starting_now(&self.owner, LEASE);
            let claimed = self
                .store
                .claim_backfill(&tenant, &buckets, &lease, self.clock.now())
                .await?;
            if let Some(claim) = claimed {
                self.run(&claim, &registry).await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn run(&self, claim: &ClaimedBackfill, registry: &BucketRegistry) {
        let Some(bucket) = registry.get(&claim.bucket_id) else {
            return;
        };
        tracing::info!(
            tenant = %claim.tenant_id,
            bucket = %claim.bucket_id,
            mode = claim.mode.as_str(),
            "bucket backfill started"
        );
        let routing = self.modules.routing_snapshot(&claim.tenant_id);
        let mut attempts = 0;
        loop {
            let lease = Lease::starting_now(&self.owner, LEASE);
            let step = self
                .store
                .backfill_step(
                    claim,
                    bucket,
                    &lease,
                    PAGE_SIZE,
                    self.clock.now(),
                    routing.clone(),
                )
                .await;
            match step {
                Ok(BackfillStep::Progress { .. }) => attempts = 0,
                Ok(BackfillStep::Completed { done, joined, left }) => {
                    tracing::info!(
                        tenant = %claim.tenant_id,
                        bucket = %claim.bucket_id,
                        scanned = done,
                        joined,
                        left,
                        "bucket backfill completed"
                    );
                    return;
                }
                Ok(BackfillStep::Lost) => {
                    tracing::info!(
                        bucket = %claim.bucket_id,
                        "bucket backfill taken over or restarted elsewhere; stopping"
                    );
                    return;
                }
                Err(error) => {
                    attempts += 1;
                    tracing::warn!(bucket = %claim.bucket_id, %error, attempts, "backfill page failed");
                    if attempts >= MAX_PAGE_ATTEMPTS {
                        let message = error.to_string();
                        if let Err(error) = self
                            .store
                            .fail_backfill(claim, &self.owner, &message, self.clock.now())
                            .await
                        {
                            tracing::warn!(%error, "recording a failed backfill failed");
                        }
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200) * attempts).await;
                }
            }
        }
    }
}
