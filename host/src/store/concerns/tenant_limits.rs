//! Each tenant's own limits (`tenant_limits`, set through the operator API): one row per
//! tenant that set any, a `NULL` column meaning the host's default. Every host reads them all
//! into its cache ([`crate::tenancy::limits::TenantLimits`]) every second.

use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::StoreResult;
use crate::tenancy::limits::{LimitPatch, TenantLimitsRecord};
use async_trait::async_trait;

#[async_trait]
pub trait TenantLimitStore: Send + Sync {
    /// The tenant's own limits; `None` when it never set any.
    async fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<Option<TenantLimitsRecord>>;
    /// Apply `patch` to the tenant's own limits in one statement (concurrent patches of other
    /// limits both apply); the limits after it, `None` when there is no such tenant (nothing
    /// is written then).
    async fn change_tenant_limits(
        &self,
        tenant: &TenantId,
        patch: &LimitPatch,
        at: Timestamp,
    ) -> StoreResult<Option<TenantLimitsRecord>>;
    /// Every tenant's own limits.
    async fn all_tenant_limits(&self) -> StoreResult<Vec<TenantLimitsRecord>>;
}
