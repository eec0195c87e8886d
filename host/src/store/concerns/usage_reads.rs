//! Usage per tenant as the API shows it: one tenant's days, every tenant's totals. The counts
//! are written by the transactions that do the work (see [`crate::usage`]), not here.

use crate::ids::TenantId;
use crate::store::{StoreResult, Tenant};
use crate::usage::{DayRange, DayUsage, UsageCounts};
use async_trait::async_trait;

#[async_trait]
pub trait UsageReads: Send + Sync {
    /// The tenant's usage on each day of `range` that has some, oldest first.
    async fn usage_by_day(&self, tenant: &TenantId, range: DayRange) -> StoreResult<Vec<DayUsage>>;
    /// Every tenant with its usage over `range` (zero for none), oldest tenant first.
    async fn usage_by_tenant(&self, range: DayRange) -> StoreResult<Vec<(Tenant, UsageCounts)>>;
}
