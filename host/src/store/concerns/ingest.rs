//! Ingest: events in, in one transaction per batch, with everything they cause.

use crate::ingest::IngestItem;
use crate::store::{IngestOutcome, IngestRouting, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
pub trait EventIngest: Send + Sync {
    /// Ingest a batch of events in ONE transaction; outcomes in input order. Per item: dedupe
    /// on the tenant's idempotency key (a duplicate changes nothing at all, and an earlier item
    /// of the same batch counts), resolve the contact with [`identity::resolve`] (merging
    /// `contact_properties`), store the event under the resolved key, end the person's live
    /// runs of the journeys whose `exitOn` the event matches ([`IngestRouting::exits`]: status
    /// exited, timer removed), then for each candidate run the enrollment guards
    /// ([`crate::journeys::Enrollment::admit`], reading the admin switch and prior runs) and
    /// create the run (status active, input snapshotting the contact after the merge and the
    /// event) with a timer due at `received_at`, or add the skip to the journey's counters.
    /// All or nothing: on an error nothing of the batch is written (the caller retries items
    /// alone).
    ///
    /// Then, for a tenant with buckets, it re-evaluates the buckets the event can change
    /// ([`crate::buckets::membership::evaluate_event`]) and ingests each emitted transition as
    /// its own event (deduplicated on its deterministic key, routed to journeys by `routing`,
    /// never re-evaluated), in the same transaction.
    async fn ingest(
        &self,
        batch: Arc<[IngestItem]>,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Vec<IngestOutcome>>;
}
