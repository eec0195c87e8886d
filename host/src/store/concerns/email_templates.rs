//! A tenant's API-managed email templates.

use crate::ids::TenantId;
use crate::store::{StoreResult, TenantTemplate};
use async_trait::async_trait;

#[async_trait]
pub trait EmailTemplates: Send + Sync {
    /// The tenant's API-managed templates, by key.
    async fn email_templates(&self, tenant: &TenantId) -> StoreResult<Vec<TenantTemplate>>;
    async fn email_template(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<TenantTemplate>>;
    /// Create or replace a template (keeping its `created_at` when it existed). Whether it
    /// was created.
    async fn put_email_template(
        &self,
        tenant: &TenantId,
        template: &TenantTemplate,
    ) -> StoreResult<bool>;
    /// Whether a template was deleted.
    async fn delete_email_template(&self, tenant: &TenantId, key: &str) -> StoreResult<bool>;
}
