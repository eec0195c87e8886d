//! Journey administration: the admin switch, per-journey statistics, cancelling a run.

use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::{CancelOutcome, JourneyStats, StoreResult};
use async_trait::async_trait;
use std::collections::HashMap;

#[async_trait]
pub trait JourneyAdmin: Send + Sync {
    /// Switch a journey on or off for the tenant (upsert): read by the enrollment guards of
    /// every later ingest; runs already started continue.
    async fn set_journey_enabled(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Runs by status, skips by reason and the admin switch of the tenant's journeys, by
    /// journey id; only `journey_id` when given. A journey with none of them is absent.
    async fn journey_stats(
        &self,
        tenant: &TenantId,
        journey_id: Option<&str>,
    ) -> StoreResult<HashMap<String, JourneyStats>>;
    /// End a live run (status exited, timer removed), as an admin cancel.
    async fn cancel_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome>;
}
