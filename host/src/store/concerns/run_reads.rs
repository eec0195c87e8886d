//! Runs as the API shows them: a filtered list and one run's detail.

use crate::ids::{RunId, TenantId};
use crate::store::{ActivationInput, RunFilter, RunRecord, StoreResult};
use async_trait::async_trait;

#[async_trait]
pub trait RunReads: Send + Sync {
    async fn list_runs(&self, tenant: &TenantId, filter: &RunFilter)
    -> StoreResult<Vec<RunRecord>>;
    async fn run_detail(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>>;
}
