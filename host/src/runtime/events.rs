//! What `wait-for-event` and the `history-*` imports read: the past as one run sees it, through
//! the narrow [`EventReader`] an activation is given. [`StoreEvents`] is the real one; tests
//! may give their own.
//!
//! The reader answers "the first event named N received in this span whose properties satisfy
//! this filter". Matching happens here, at activation time, not at ingest: ingest only wakes a
//! waiting run when its person gets an event of the awaited name (a cheap indexed update), and
//! the woken activation decides. A wake that finds no match just waits again.

use crate::buckets::{Condition, EventCounts, evaluate};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{
    ContactLookup, Contacts, EmailHistory, EventRecord, History, JourneyHistory, ReceivedEvents,
    Store,
};
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
    /// How many events named `name` the person `person_key` designates (`None`: the run's
    /// person) has, only those that occurred at or after `since` when given.
    async fn event_count(
        &self,
        person_key: Option<&str>,
        name: &str,
        since: Option<Timestamp>,
    ) -> Result<u64, String>;
    /// That person's runs of `journey`.
    async fn journey_history(
        &self,
        person_key: Option<&str>,
        journey: &str,
    ) -> Result<JourneyHistory, String>;
    /// The tenant's emails of `template` to the (normalised) address `to`.
    async fn email_history(&self, to: &str, template: &str) -> Result<EmailHistory, String>;
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

    async fn event_count(
        &self,
        _person_key: Option<&str>,
        _name: &str,
        _since: Option<Timestamp>,
    ) -> Result<u64, String> {
        Ok(0)
    }

    async fn journey_history(
        &self,
        _person_key: Option<&str>,
        _journey: &str,
    ) -> Result<JourneyHistory, String> {
        Ok(JourneyHistory::default())
    }

    async fn email_history(&self, _to: &str, _template: &str) -> Result<EmailHistory, String> {
        Ok(EmailHistory::default())
    }
}

/// The events of one person (by resolved key) in the store.
pub struct StoreEvents<S: ?Sized = dyn Store> {
    store: Arc<S>,
    tenant: TenantId,
    contact_key: String,
}

impl<S: Contacts + ?Sized> StoreEvents<S> {
    pub fn new(store: Arc<S>, tenant: TenantId, contact_key: String) -> Self {
        Self {
            store,
            tenant,
            contact_key,
        }
    }

    /// The key history is stored under for `person_key`: the run's person's for `None`; a
    /// live contact's current key for one of its keys or aliases; else the key as given.
    async fn resolved_key(&self, person_key: Option<&str>) -> Result<String, String> {
        let Some(key) = person_key else {
            return Ok(self.contact_key.clone());
        };
        let found = self
            .store
            .find_contacts(&self.tenant, &ContactLookup::Key(key.to_owned()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(found
            .into_iter()
            .next()
            .map_or_else(|| key.to_owned(), |contact| contact.key))
    }
}

#[async_trait]
impl<S> EventReader for StoreEvents<S>
where
    S: Contacts + History + ?Sized,
{
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

    async fn event_count(
        &self,
        person_key: Option<&str>,
        name: &str,
        since: Option<Timestamp>,
    ) -> Result<u64, String> {
        let key = self.resolved_key(person_key).await?;
        self.store
            .count_events(&self.tenant, &key, name, since)
            .await
            .map_err(|e| e.to_string())
    }

    async fn journey_history(
        &self,
        person_key: Option<&str>,
        journey: &str,
    ) -> Result<JourneyHistory, String> {
        let key = self.resolved_key(person_key).await?;
        self.store
            .journey_history(&self.tenant, &key, journey)
            .await
            .map_err(|e| e.to_string())
    }

    async fn email_history(&self, to: &str, template: &str) -> Result<EmailHistory, String> {
        self.store
            .email_history(&self.tenant, to, template)
            .await
            .map_err(|e| e.to_string())
    }
}
