//! A person's history, for journeys' `history-*` reads.

use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{EmailHistory, JourneyHistory, StoreResult};
use async_trait::async_trait;

#[async_trait]
pub trait History: Send + Sync {
    /// How many events named `name` the person stored under `contact_key` has, only those
    /// that occurred at or after `since` when given.
    async fn count_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: &str,
        since: Option<Timestamp>,
    ) -> StoreResult<u64>;
    async fn journey_history(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<JourneyHistory>;
    /// `to` is normalised by the caller.
    async fn email_history(
        &self,
        tenant: &TenantId,
        to: &str,
        template: &str,
    ) -> StoreResult<EmailHistory>;
}
