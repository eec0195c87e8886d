//! Tenants and their API keys.

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{ApiKeyRecord, NewApiKey, StoreResult, Tenant, TenantKey};
use async_trait::async_trait;

#[async_trait]
pub trait Tenancy: Send + Sync {
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;
    /// Create a tenant; a name already taken answers the existing tenant with `created: false`.
    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<(Tenant, bool)>;
    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord>;
    /// The live (not revoked) key with this hash, and its tenant.
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<TenantKey>>;
    /// Revoke a key, only within `tenant` when one is given. Whether a live key was revoked.
    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        id: &ApiKeyId,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// A tenant's keys, revoked ones included, newest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKeyRecord>>;
}
