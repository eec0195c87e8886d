//! A person changed without an event, once for both backends: a contact upserted through the
//! API, and a manual bucket's member added or removed. Each ingests the bucket transitions it
//! causes as ingest does ([`super::ingest`]), in the same transaction.

use super::ingest::{IngestTx, ingest_transition, move_buckets};
use crate::buckets::membership::{self, Cause, Source};
use crate::buckets::{BucketDef, LeaveReason};
use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::TenantId;
use crate::store::codec::{SkipTally, StartedRuns};
use crate::store::identity;
use crate::store::{
    ContactRecord, ContactUpsert, IngestRouting, ManualChangeOutcome, MembershipChange, StoreResult,
};
use serde_json::{Map, Value};

/// The person a flow that starts from a key acts on, read inside its open write transaction.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait LiveContactTx: IngestTx {
    /// The live contact whose resolved key is `key` (kept from other writers until the
    /// transaction ends).
    async fn live_contact_by_key(
        &mut self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<ContactRecord>>;
}

/// Create or update a contact through [`identity::resolve`], then move the property buckets
/// its changed properties can move, ingesting each transition.
pub async fn upsert_contact(
    tx: &mut impl IngestTx,
    tenant: &TenantId,
    identity: &Identity,
    properties: &Map<String, Value>,
    now: Timestamp,
    routing: &dyn IngestRouting,
) -> StoreResult<ContactUpsert> {
    let resolution = identity::resolve(tx, tenant, identity, properties, now).await?;
    let mut runs = StartedRuns::default();
    let transitions = move_buckets(
        tx,
        routing,
        &resolution.contact,
        Cause {
            event: None,
            changed_properties: &resolution.changed_properties,
        },
        now,
        &mut runs,
    )
    .await?;
    tx.count_skips(&SkipTally::of(tenant, &runs.skipped))
        .await?;
    Ok(ContactUpsert {
        resolution,
        transitions,
        started: runs.started,
    })
}

/// Add the live contact `key` designates to a manual bucket, or remove it, ingesting the
/// transition.
pub async fn change_membership(
    tx: &mut impl LiveContactTx,
    tenant: &TenantId,
    key: &str,
    bucket: &BucketDef,
    change: MembershipChange,
    now: Timestamp,
    routing: &dyn IngestRouting,
) -> StoreResult<ManualChangeOutcome> {
    let Some(contact) = tx.live_contact_by_key(tenant, key).await? else {
        return Ok(ManualChangeOutcome::UnknownContact);
    };
    let transition = match change {
        MembershipChange::Add => {
            membership::join(tx, bucket, tenant, &contact.key, Source::Manual, now).await?
        }
        MembershipChange::Remove => {
            match membership::active_membership(tx, tenant, &bucket.id, &contact.key).await? {
                Some(active) => {
                    let reason = LeaveReason::Manual;
                    membership::leave(tx, bucket, tenant, &contact.key, &active, reason, now)
                        .await?
                }
                None => None,
            }
        }
    };
    let Some(transition) = transition else {
        return Ok(ManualChangeOutcome::Unchanged);
    };
    let mut runs = StartedRuns::default();
    let summary = ingest_transition(tx, routing, &contact, &transition, now, &mut runs).await?;
    tx.count_skips(&SkipTally::of(tenant, &runs.skipped))
        .await?;
    Ok(ManualChangeOutcome::Moved(summary))
}
