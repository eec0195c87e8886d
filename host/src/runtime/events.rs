//! What `wait-for-event` reads: the events of the run's person, through the narrow
//! [`EventReader`] an activation is given. [`StoreEvents`] is the real one; tests may give
//! their own.
//!
//! The reader answers "the first event named N received in this span whose properties satisfy
//! this filter". Matching happens here, at activation time, not at ingest: ingest only wakes a
//! waiting run when its person gets an event of the awaited name (a cheap indexed update), and
//! the woken activation decides. A wake that finds no match just waits again.

use crate::buckets::{Condition, EventCounts, evaluate};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{EventRecord, ReceivedEvents, Store};
use async_trait::async_trait;
use std::sync::Arc;

/// Events read per store round trip while looking for a match.
const PAGE: u32 = 200;

/// A span of receive times, inclusive at both ends (host clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub from: Timestamp,
    pub until: Timestamp,
}

/// What looking for the awaited event found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WaitCheck {
    /// The first match, if any.
    pub event: Option<EventRecord>,
    /// How many events of the name in the span were looked at (all of them, when none
    /// matched): the commit compares it with what is stored by then, to wake the run at once
    /// if another arrived meanwhile.
    pub examined: u64,
}

/// A person's events as one run sees them.
#[async_trait]
pub trait EventReader: Send + Sync {
    /// The earliest event named `name` received in `span` whose properties satisfy `filter`
    /// (any event when `None`). An error means the host could not answer (retry later).
    async fn first_match(
        &self,
        name: &str,
        span: ReceivedSpan,
        filter: Option<&Condition>,
    ) -> Result<WaitCheck, String>;
}

/// A reader that never finds an event. For activations outside a store (tests, tools).
pub struct NoEvents;

#[async_trait]
impl EventReader for NoEvents {
    async fn first_match(
        &self,
        _name: &str,
        _span: ReceivedSpan,
        _filter: Option<&Condition>,
    ) -> Result<WaitCheck, String> {
        Ok(WaitCheck::default())
    }
}

/// The events of one person (by resolved key) in the store.
pub struct StoreEvents {
    store: Arc<dyn Store>,
    tenant: TenantId,
    contact_key: String,
}

impl StoreEvents {
    pub fn new(store: Arc<dyn Store>, tenant: TenantId, contact_key: String) -> Self {
        Self {
            store,
            tenant,
            contact_key,
        }
    }
}

#[async_trait]
impl EventReader for StoreEvents {
    async fn first_match(
        &self,
        name: &str,
        span: ReceivedSpan,
        filter: Option<&Condition>,
    ) -> Result<WaitCheck, String> {
        let mut examined = 0u64;
        let mut request = ReceivedEvents {
            contact_key: self.contact_key.clone(),
            name: name.to_owned(),
            from: span.from,
            until: span.until,
            after: None,
            limit: PAGE,
        };
        loop {
            let page = self
                .store
                .events_received(&self.tenant, &request)
                .await
                .map_err(|e| e.to_string())?;
            let full = page.len() == PAGE as usize;
            let last = page.last().map(|e| (e.received_at, e.id.clone()));
            for event in page {
                examined += 1;
                if filter.is_none_or(|f| evaluate(f, &event.properties, &EventCounts::new())) {
                    return Ok(WaitCheck {
                        event: Some(event),
                        examined,
                    });
                }
            }
            match last {
                Some(last) if full => request.after = Some(last),
                _ => {
                    return Ok(WaitCheck {
                        event: None,
                        examined,
                    });
                }
            }
        }
    }
}
