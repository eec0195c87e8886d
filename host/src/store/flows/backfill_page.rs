//! One page of a bucket backfill, once for both backends: the contacts after the stored cursor
//! each through [`backfill_rules::apply_to_contact`] (joins silent, with their dwell anchor; leaves
//! ingested as transitions), then the progress saved — or, on the last page, the target
//! fingerprint stored and the backfill completed. The job that drives it is
//! [`crate::backfill_job`]; the rules are [`crate::buckets::backfill_rules`].

use super::ingest::{IngestTx, ingest_transition};
use crate::buckets::BucketDef;
use crate::buckets::backfill_rules::{self, ContactOutcome};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::codec::{SkipTally, StartedRuns};
use crate::store::{
    BackfillStep, ClaimedBackfill, ContactRecord, IngestRouting, Lease, StoreResult,
};

/// What a backfill page asks of a backend inside its open write transaction.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait BackfillTx: IngestTx {
    /// The progress of the backfill `claim` names while `lease_owner` still holds it (running,
    /// same target), kept from other writers until the transaction ends; `None` when it lost
    /// the lease.
    async fn held_backfill(
        &mut self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
    ) -> StoreResult<Option<BackfillProgress>>;
    /// At most `limit` live contacts of the tenant with an id after `after`, in id order,
    /// kept from other writers until the transaction ends.
    async fn contacts_after(
        &mut self,
        tenant: &TenantId,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<ContactRecord>>;
    /// Anchor the person's new membership's dwell at their latest event named `event`.
    async fn set_dwell_anchor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        contact_key: &str,
        event: &str,
    ) -> StoreResult<()>;
    /// Store the progress after a page (cursor included) and renew the lease.
    async fn save_backfill_progress(
        &mut self,
        claim: &ClaimedBackfill,
        progress: &BackfillProgress,
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The last page is done: store the target fingerprint as the bucket's, the final counts,
    /// and release the lease.
    async fn complete_backfill(
        &mut self,
        claim: &ClaimedBackfill,
        progress: &BackfillProgress,
        now: Timestamp,
    ) -> StoreResult<()>;
}

/// A running backfill's progress as stored.
#[derive(Debug, Clone, Default)]
pub struct BackfillProgress {
    /// The id of the last contact scanned.
    pub cursor: Option<String>,
    pub done: i64,
    /// Known once counted at the claim.
    pub total: Option<i64>,
    pub joined: i64,
    pub left: i64,
}

/// Scan the next page of at most `page_size` contacts of the backfill `claim` names.
/// Nothing is written when `lease.owner` no longer holds it.
pub async fn backfill_step(
    tx: &mut impl BackfillTx,
    claim: &ClaimedBackfill,
    bucket: &BucketDef,
    lease: &Lease,
    page_size: u32,
    now: Timestamp,
    routing: &dyn IngestRouting,
) -> StoreResult<BackfillStep> {
    let tenant = &claim.tenant_id;
    let Some(mut progress) = tx.held_backfill(claim, &lease.owner).await? else {
        return Ok(BackfillStep::Lost);
    };
    let after = progress.cursor.clone().unwrap_or_default();
    let page = tx.contacts_after(tenant, &after, page_size).await?;
    let anchor = bucket
        .criteria
        .as_ref()
        .and_then(backfill_rules::anchor_event);
    let mut runs = StartedRuns::default();
    for contact in &page {
        let outcome = backfill_rules::apply_to_contact(
            tx,
            bucket,
            claim.mode,
            tenant,
            &contact.key,
            &contact.properties,
            now,
        )
        .await?;
        match outcome {
            ContactOutcome::Joined => {
                progress.joined += 1;
                if let Some(event) = anchor {
                    tx.set_dwell_anchor(tenant, &bucket.id, &contact.key, event)
                        .await?;
                }
            }
            ContactOutcome::Left(transition) => {
                progress.left += 1;
                ingest_transition(tx, routing, contact, &transition, now, &mut runs).await?;
            }
            ContactOutcome::Unchanged => {}
        }
    }
    tx.count_skips(&SkipTally::of(tenant, &runs.skipped))
        .await?;

    progress.done += i64::try_from(page.len()).unwrap_or(i64::MAX);
    let total = progress.total.unwrap_or(0).max(progress.done);
    progress.total = Some(total);
    let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
    if page.len() < page_size as usize {
        tx.complete_backfill(claim, &progress, now).await?;
        return Ok(BackfillStep::Completed {
            done: as_u64(progress.done),
            joined: as_u64(progress.joined),
            left: as_u64(progress.left),
        });
    }
    progress.cursor = page.last().map(|c| c.id.0.clone());
    tx.save_backfill_progress(claim, &progress, lease, now)
        .await?;
    Ok(BackfillStep::Progress {
        done: as_u64(progress.done),
        total: as_u64(total),
    })
}
