//! Manual buckets: a person added or removed by hand (the API), the transition ingested.

use crate::buckets::BucketDef;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{BucketTransition, IngestRouting, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

/// What [`ManualMemberships::change_membership`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ManualChangeOutcome {
    /// No live contact has the key.
    UnknownContact,
    /// Nothing changed: already a member (add), or not one (remove).
    Unchanged,
    /// The person joined or left; the transition was ingested.
    Moved(BucketTransition),
}

/// A change to a manual bucket's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Add,
    Remove,
}

#[async_trait]
pub trait ManualMemberships: Send + Sync {
    /// Add a person to (or remove them from) a manual bucket, ingesting the transition like
    /// [`crate::store::EventIngest::ingest`] does.
    async fn change_membership(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        key: &str,
        change: MembershipChange,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ManualChangeOutcome>;
}
