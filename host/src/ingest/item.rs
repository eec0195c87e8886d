//! What ingest hands the store: an event with the journeys it may start, and the routing
//! those were found with.

use crate::journeys::router::RunCandidate;
use crate::store::{IngestRouting, NewEvent};
use std::sync::Arc;

/// One event of an ingest batch with the journeys its name triggers.
#[derive(Clone)]
pub struct IngestItem {
    pub event: NewEvent,
    pub candidates: Vec<RunCandidate>,
    /// The tenant's modules as they were when `candidates` were found: the event's exits,
    /// bucket moves and their transitions are routed by the same set, so a deploy that swaps
    /// the set meanwhile never routes one event half by each. `None`: the batch's routing.
    pub routing: Option<Arc<dyn IngestRouting>>,
}

impl std::fmt::Debug for IngestItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestItem")
            .field("event", &self.event)
            .field("candidates", &self.candidates)
            .field("routing", &self.routing.as_ref().map(|_| "snapshot"))
            .finish()
    }
}
