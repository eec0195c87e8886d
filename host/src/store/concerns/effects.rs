//! Journey effects stored by activations (emits, contact updates) and applied after commit.

use crate::ids::RunId;
use crate::store::{EffectFailure, Lease, RunEffect, StoreResult};
use async_trait::async_trait;

#[async_trait]
pub trait RunEffects: Send + Sync {
    /// Claim stored effects that are due (unleased, or whose lease or retry time passed on the
    /// real clock), oldest first, leasing them to `lease.owner`.
    async fn claim_run_effects(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<RunEffect>>;
    /// An effect claimed by `lease_owner` is done: applied (`Ok`: deleted), or failed
    /// (`Err(message)`: released with the error, not retried before `retry_at`, real clock).
    async fn finish_run_effect(
        &self,
        run_id: &RunId,
        seq: u32,
        lease_owner: &str,
        outcome: Result<(), EffectFailure>,
    ) -> StoreResult<()>;
}
