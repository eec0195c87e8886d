//! Settings of the host itself, shared by every process on one database: the dev clock's offset.

use crate::store::StoreResult;
use async_trait::async_trait;

#[async_trait]
pub trait HostSettings: Send + Sync {
    /// The persisted dev-clock offset (0 when never advanced).
    async fn clock_offset(&self) -> StoreResult<i64>;
    /// Add `by_ms` (not negative) to the stored offset in one statement, so concurrent advances
    /// from several processes all count; returns the new offset.
    async fn advance_clock_offset(&self, by_ms: i64) -> StoreResult<i64>;
}
