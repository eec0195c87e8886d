//! Settings and upkeep of the host itself, shared by every process on one database: the dev
//! clock's offset, and the planner statistics the database plans the hot statements with.

use crate::store::StoreResult;
use async_trait::async_trait;

#[async_trait]
pub trait HostSettings: Send + Sync {
    /// The persisted dev-clock offset (0 when never advanced).
    async fn clock_offset(&self) -> StoreResult<i64>;
    /// Add `by_ms` (not negative) to the stored offset in one statement, so concurrent advances
    /// from several processes all count; returns the new offset.
    async fn advance_clock_offset(&self, by_ms: i64) -> StoreResult<i64>;
    /// Refresh the planner statistics of the tables that changed a lot since they were last
    /// taken (by the rule autovacuum would use), so plans follow the data without autovacuum;
    /// the tables refreshed. One process at a time does it; the others find nothing to do.
    async fn refresh_statistics(&self) -> StoreResult<Vec<String>>;
}
