//! A tenant's bucket configs, once for both backends: recording the buckets a module load
//! brings ([`register_buckets`], each through [`backfill_rules::on_register`]) and restarting
//! one bucket's backfill by hand ([`restart_backfill`]). The pages of a queued backfill are
//! [`super::backfill_page`].

use crate::buckets::backfill_rules::{self, BackfillMode, ConfigChange, StoredConfig};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{BackfillStatus, BucketFingerprint, StoreError, StoreResult};

/// What the config flows ask of a backend inside its open write transaction.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait BucketConfigTx {
    /// The bucket's stored config, kept from other writers until the transaction ends.
    async fn bucket_config(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<Option<BackfillStatus>>;
    /// Insert or reset the config to a pending backfill of `target_hash` from the beginning;
    /// the stored fingerprint stays.
    async fn enqueue_backfill(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        mode: BackfillMode,
        target_hash: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The stored fingerprint is the target again: the backfill completes with nothing to do.
    async fn settle_backfill(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
}

/// Record the tenant's enabled computed buckets as loaded now, in bucket id order (so two
/// hosts registering at once take the config rows' locks in the same order).
pub async fn register_buckets(
    tx: &mut impl BucketConfigTx,
    tenant: &TenantId,
    buckets: &[BucketFingerprint],
    now: Timestamp,
) -> StoreResult<()> {
    let mut sorted: Vec<&BucketFingerprint> = buckets.iter().collect();
    sorted.sort_by(|a, b| a.bucket_id.cmp(&b.bucket_id));
    for bucket in sorted {
        let stored = tx
            .bucket_config(tenant, &bucket.bucket_id)
            .await?
            .map(|status| stored_config(&status));
        match backfill_rules::on_register(stored.as_ref(), &bucket.fingerprint) {
            ConfigChange::Keep => {}
            ConfigChange::Enqueue { mode, target_hash } => {
                tx.enqueue_backfill(tenant, &bucket.bucket_id, mode, &target_hash, now)
                    .await?;
            }
            ConfigChange::Settle => tx.settle_backfill(tenant, &bucket.bucket_id, now).await?,
        }
    }
    Ok(())
}

/// (Re)start the bucket's backfill of its fingerprint from the beginning, in the mode
/// [`backfill_rules::restart_mode`] gives: the config as it then is.
pub async fn restart_backfill(
    tx: &mut impl BucketConfigTx,
    tenant: &TenantId,
    bucket: &BucketFingerprint,
    now: Timestamp,
) -> StoreResult<BackfillStatus> {
    let stored = tx.bucket_config(tenant, &bucket.bucket_id).await?;
    let mode = backfill_rules::restart_mode(stored.and_then(|s| s.criteria_hash).as_deref());
    tx.enqueue_backfill(tenant, &bucket.bucket_id, mode, &bucket.fingerprint, now)
        .await?;
    tx.bucket_config(tenant, &bucket.bucket_id)
        .await?
        .ok_or_else(|| StoreError::corrupt("bucket config", "missing after its upsert"))
}

fn stored_config(status: &BackfillStatus) -> StoredConfig {
    StoredConfig {
        criteria_hash: status.criteria_hash.clone(),
        state: status.state,
        mode: status.mode,
        target_hash: status.target_hash.clone(),
    }
}
