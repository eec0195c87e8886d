//! The run queue: claiming due runs, committing their activations, giving them back.

use crate::clock::Timestamp;
use crate::ids::RunId;
use crate::store::{ActivationCommit, ActivationInput, Lease, StoreError, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Claim up to `limit` runs whose timer is due at `now` (host clock) and not leased, fairly
    /// across tenants, each kept under its activations-in-flight limit (its own, else
    /// `default_in_flight`): see [`crate::store::flows::fair_claim`]. The runs are leased to
    /// `lease.owner` until `lease.until_real`, and what each one's activation needs is read in
    /// the claim's transaction (no second read, and on SQLite no trip through the reader pool,
    /// whose page caches every write invalidates).
    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
        default_in_flight: u32,
    ) -> StoreResult<Vec<ActivationInput>>;
    /// Commit activations in ONE transaction (group commit): per commit, in order, whether
    /// anything was written — nothing is for a run that ended or whose lease another worker
    /// holds now. See [`ActivationCommit`].
    async fn commit_activations(&self, commits: Arc<[ActivationCommit]>) -> StoreResult<Vec<bool>>;
    /// [`crate::store::RunQueue::commit_activations`] of one activation.
    async fn commit_activation(&self, commit: ActivationCommit) -> StoreResult<bool> {
        let written = self.commit_activations(Arc::new([commit])).await?;
        written.first().copied().ok_or_else(|| {
            StoreError::corrupt("activation commit", "the store answered no outcome")
        })
    }
    /// Give a claimed run back (a host-side failure): its timer becomes due again at `retry_at`.
    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()>;
    /// The earliest due time among unleased timers, to know how long the scheduler may sleep.
    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>>;
}
