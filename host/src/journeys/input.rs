//! The input a run starts with: who the person was and what triggered it, snapshotted when
//! the triggering event is ingested.

use super::{PersonSnapshot, RunInput, TriggerEvent};
use crate::store::records::{ContactRecord, NewEvent};

impl RunInput {
    /// The input of a run an event starts: the contact as it is after this event's resolution and
    /// property merge, and the event itself.
    pub fn started_by(contact: &ContactRecord, event: &NewEvent) -> RunInput {
        RunInput {
            person: PersonSnapshot {
                key: contact.key.clone(),
                email: contact.email.clone(),
                properties: contact.properties.clone(),
            },
            trigger: TriggerEvent {
                name: event.name.clone(),
                occurred_at: event.occurred_at,
                properties: event.event_properties.clone(),
            },
        }
    }
}
