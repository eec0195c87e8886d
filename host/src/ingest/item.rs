//! What ingest hands the store: an event with the journeys it may start.

use crate::journeys::router::RunCandidate;
use crate::store::NewEvent;

/// One event of an ingest batch with the journeys its name triggers.
#[derive(Debug, Clone)]
pub struct IngestItem {
    pub event: NewEvent,
    pub candidates: Vec<RunCandidate>,
}
