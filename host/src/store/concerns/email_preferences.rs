//! Unsubscribes and the key that signs unsubscribe links.

use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::StoreResult;
use async_trait::async_trait;

#[async_trait]
pub trait EmailPreferences: Send + Sync {
    /// The key that signs the tenant's unsubscribe links, shared by every host on this
    /// database: the stored one, or else `candidate` stored now (a concurrent first use keeps
    /// whichever was stored first). Without a candidate, only a read (`None` when the tenant
    /// has no key yet).
    async fn email_signing_secret(
        &self,
        tenant: &TenantId,
        candidate: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<String>>;
    /// Record that the person `contact_key` opted out of email at `email` (normalised by the
    /// caller). Whether they were subscribed before.
    async fn unsubscribe(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Whether the person `contact_key`, or the address `email`, opted out.
    async fn is_unsubscribed(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool>;
}
