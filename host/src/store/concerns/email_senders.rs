//! A tenant's own sender settings (`/v1/email/settings`): one row per tenant, read by the
//! delivery worker before each batch so a change on any host applies to the next send.

use crate::ids::TenantId;
use crate::store::{EmailSenderRecord, StoreResult};
use async_trait::async_trait;

#[async_trait]
pub trait EmailSenders: Send + Sync {
    /// The tenant's sender, when it set one.
    async fn email_sender(&self, tenant: &TenantId) -> StoreResult<Option<EmailSenderRecord>>;
    /// Create or replace the tenant's sender in one statement (keeping its `created_at` when it
    /// existed). Whether it was created.
    async fn put_email_sender(
        &self,
        tenant: &TenantId,
        sender: &EmailSenderRecord,
    ) -> StoreResult<bool>;
    /// Whether a sender was deleted (the tenant then sends with the host's transport).
    async fn delete_email_sender(&self, tenant: &TenantId) -> StoreResult<bool>;
}
