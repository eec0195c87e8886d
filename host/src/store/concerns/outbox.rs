//! The email outbox: claiming queued emails, keeping the claim, recording the delivery; listing
//! emails, and whether a journey emailed an address lately (its `suppress` window).

use crate::clock::Timestamp;
use crate::ids::{EmailId, TenantId};
use crate::store::{DeliveryResult, EmailFilter, EmailRecord, Lease, OutboxEmail, StoreResult};
use async_trait::async_trait;

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claim queued emails whose next attempt is due (real clock), leasing them.
    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>>;
    /// Extend this worker's claim on one email to `lease.until_real`, if it still holds it and
    /// the email is still queued; false when another worker claimed it after this one's lease
    /// lapsed (or it was sent or cancelled meanwhile), so it must not be sent.
    async fn renew_outbox_lease(&self, id: &EmailId, lease: &Lease) -> StoreResult<bool>;
    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()>;
    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>>;
    /// Whether `journey_id` queued or sent an email to `to` created at or after `since` (host
    /// clock): what its `suppress` window looks for. Failed, cancelled and suppressed emails
    /// do not count.
    async fn journey_emailed_since(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> StoreResult<bool>;
}
