//! The operator's view of tenants: listing, suspending and deleting them, and the operator's
//! own keys (apart from tenants' keys: they reach no tenant's data).

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{NewOperatorKey, OperatorKeyRecord, StoreResult, Tenant};
use async_trait::async_trait;

#[async_trait]
pub trait Operators: Send + Sync {
    async fn create_operator_key(&self, key: NewOperatorKey) -> StoreResult<OperatorKeyRecord>;
    /// The live (not revoked) operator key with this hash.
    async fn operator_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<OperatorKeyRecord>>;
    /// Revoke a live operator key; whether one was revoked.
    async fn revoke_operator_key(&self, id: &ApiKeyId, now: Timestamp) -> StoreResult<bool>;
    /// Whether any operator key was ever made (revoked ones count): first boot makes one only
    /// when none was.
    async fn operator_keys_exist(&self) -> StoreResult<bool>;
    /// Every tenant, oldest first.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn tenant_by_id(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    /// Suspend (`Some(at)`) or resume (`None`) a tenant; suspending a suspended tenant keeps
    /// when it was first suspended. The tenant as it is now, `None` when there is no such
    /// tenant.
    async fn set_tenant_suspended(
        &self,
        id: &TenantId,
        at: Option<Timestamp>,
    ) -> StoreResult<Option<Tenant>>;
    /// Delete the tenant and every row of its data, in one transaction; whether it existed.
    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool>;
}
