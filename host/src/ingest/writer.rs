//! Ingest's group commit: concurrent ingests share database transactions
//! ([`crate::group_commit`]). One batch is one `EventIngest::ingest` transaction, so a caller's
//! answer — and so its 202 — comes only after its event's transaction committed.

use crate::group_commit::{Batch, GroupCommit, GroupCommitter};
use crate::ingest::IngestItem;
use crate::store::{EventIngest, IngestOutcome, IngestRouting, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

pub use crate::group_commit::WriterStopped;

/// The handle ingest submits to; cheap to clone.
pub type IngestWriter = GroupCommitter<IngestBatch>;

/// Events stored in one `EventIngest::ingest` transaction; `routing` answers, per batch, which
/// journeys and buckets the events reach.
pub struct IngestBatch {
    pub store: Arc<dyn EventIngest>,
    pub routing: Arc<dyn IngestRouting>,
}

#[async_trait]
impl Batch for IngestBatch {
    type Item = IngestItem;
    type Outcome = IngestOutcome;

    async fn commit(&self, items: Arc<[IngestItem]>) -> StoreResult<Vec<IngestOutcome>> {
        self.store.ingest(items, self.routing.clone()).await
    }
}

/// Start the ingest writer.
pub fn spawn(
    store: Arc<dyn EventIngest>,
    routing: Arc<dyn IngestRouting>,
    config: GroupCommit,
) -> IngestWriter {
    GroupCommitter::spawn(IngestBatch { store, routing }, config)
}
