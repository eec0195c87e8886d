//! Bucket backfills: the SQL side of evaluating a bucket for every existing contact (the job is
//! [`crate::backfill_job`], its rules [`crate::buckets::backfill_rules`]).

use crate::buckets::BucketDef;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{
    BackfillStatus, BackfillStep, BucketFingerprint, ClaimedBackfill, IngestRouting, Lease,
    StoreResult,
};
use async_trait::async_trait;
use std::sync::Arc;

/// The fingerprint a retired bucket's config holds: no criteria has it.
pub const RETIRED: &str = "retired";

#[async_trait]
pub trait Backfills: Send + Sync {
    /// Record the tenant's enabled computed buckets as loaded now: per bucket, apply
    /// [`crate::buckets::backfill_rules::on_register`] to its stored config in one transaction
    /// (a new bucket gets a row with no fingerprint and a pending first-time backfill; changed
    /// criteria queue a re-evaluation; unchanged ones change nothing).
    async fn register_buckets(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The buckets left the tenant's modules: their members are no longer kept current, so a
    /// bucket that comes back is re-evaluated for everyone when registered (its stored
    /// fingerprint, [`RETIRED`], is no criteria's). A backfill in progress stops.
    async fn retire_buckets(
        &self,
        tenant: &TenantId,
        bucket_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The tenant's bucket configs, by bucket id order.
    async fn backfill_statuses(&self, tenant: &TenantId) -> StoreResult<Vec<BackfillStatus>>;
    /// (Re)start the bucket's backfill of `fingerprint` from the beginning (state pending,
    /// progress, error and lease cleared; mode [`crate::buckets::backfill_rules::restart_mode`]);
    /// a worker holding it loses its lease.
    async fn restart_backfill(
        &self,
        tenant: &TenantId,
        bucket: &BucketFingerprint,
        now: Timestamp,
    ) -> StoreResult<BackfillStatus>;
    /// Claim one of the tenant's backfills this host can compute — one of `buckets` whose
    /// target is that fingerprint — that is pending, or running under a lease that ran out
    /// (real clock): it becomes running, leased to `lease.owner`, its total counted when not
    /// yet known. Concurrent claimers take different ones.
    async fn claim_backfill(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<Option<ClaimedBackfill>>;
    /// Scan the next page of at most `page_size` live contacts (keyset on the contact id,
    /// after the stored cursor) in one transaction: each through
    /// [`crate::buckets::backfill_rules::apply_to_contact`] at `now` (joins silent, with their dwell
    /// anchor; leaves ingested as transition events, routed by `routing`), then advance the
    /// cursor and progress and renew the lease — or, on the last page, store the target
    /// fingerprint and complete. Nothing is written when `lease.owner` no longer holds it.
    async fn backfill_step(
        &self,
        claim: &ClaimedBackfill,
        bucket: &BucketDef,
        lease: &Lease,
        page_size: u32,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<BackfillStep>;
    /// Mark a backfill `lease_owner` holds as failed with `message`.
    async fn fail_backfill(
        &self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
        message: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
}
