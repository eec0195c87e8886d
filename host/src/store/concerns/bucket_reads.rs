//! Buckets as the API and journeys read them: counts, members, a person's memberships.
//!
//! Every read sees live contacts only: a membership row whose contact was deleted (or merged
//! away) is invisible, whatever its status.

use crate::ids::TenantId;
use crate::store::{
    ActiveMembership, BucketCounts, BucketMember, MemberPage, MemberPageRequest, StoreResult,
};
use async_trait::async_trait;
use std::collections::HashMap;

#[async_trait]
pub trait BucketReads: Send + Sync {
    // Every read sees live contacts only: a membership row whose contact was deleted (or
    // merged away) is invisible, whatever its status.
    /// Counts of every bucket of the tenant that has membership rows, by bucket id (one
    /// query); a bucket without any is absent.
    async fn bucket_counts(&self, tenant: &TenantId) -> StoreResult<HashMap<String, BucketCounts>>;
    /// Counts of one bucket (zero when it has no rows).
    async fn bucket_counts_of(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<BucketCounts>;
    /// A page of a bucket's current members in membership-id order (keyset on the id, so a
    /// member present across the whole walk appears exactly once), with the total.
    async fn bucket_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        page: &MemberPageRequest,
    ) -> StoreResult<MemberPage>;
    /// The bucket's most recent joins among its current members, newest first (membership ids
    /// are UUIDv7, created at the join), at most `limit` (capped at 100).
    async fn recent_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<BucketMember>>;
    /// The current membership of the live contact `key` designates (resolved like
    /// [`ContactLookup::Key`]: its key, a key it had before, or an aliased user or anonymous
    /// id); `None` when no live contact has that key or it is not a member.
    async fn bucket_membership(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        key: &str,
    ) -> StoreResult<Option<ActiveMembership>>;
    /// The current memberships of the live contact whose resolved key is `contact_key`, by
    /// bucket id.
    async fn contact_memberships(
        &self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>>;
}
