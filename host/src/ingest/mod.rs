//! Ingest: the only way an event enters Waymark (HTTP today; bucket transitions and journey
//! triggers later go through here too). It validates an event, asks the journey router which
//! journeys it starts, and hands it to the group-commit [`writer`], which stores it, resolves
//! its contact and starts its runs in one transaction shared with concurrent ingests. Then it
//! wakes the scheduler. It must not run journeys itself.

mod item;
pub mod writer;

pub use item::IngestItem;

use crate::buckets::{BUCKET_EVENT_PREFIX, BucketKind, is_bucket_event};
use crate::clock::{Clock, Timestamp};
use crate::contacts::Identity;
use crate::ids::{EventId, TenantId};
use crate::modules::ModuleRegistry;
use crate::store::{
    BucketTransition, ContactUpsert, ExitedRun, IngestOutcome, ManualChangeOutcome,
    MembershipChange, NewEvent, SkippedRun, StartedRun, Store, StoreError,
};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::Notify;
use writer::{IngestWriter, WriterStopped};

const MAX_NAME_LEN: usize = 200;
const MAX_KEY_LEN: usize = 500;

/// An event as a producer submits it.
#[derive(Debug, Clone, Default)]
pub struct IngestRequest {
    pub name: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub anonymous_id: Option<String>,
    pub event_properties: Map<String, Value>,
    pub contact_properties: Map<String, Value>,
    pub idempotency_key: Option<String>,
    /// When it happened; defaults to when it was received.
    pub occurred_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Stopped(#[from] WriterStopped),
}

/// Why a manual membership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("no bucket {0:?} is declared by this tenant's modules")]
    UnknownBucket(String),
    #[error(
        "bucket {0:?} is computed: its membership follows its criteria, and only manual \
         buckets accept changes through the API"
    )]
    NotManual(String),
    #[error("no live contact has the key {0:?}")]
    UnknownContact(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> IngestError {
    IngestError::Invalid {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestResult {
    pub stored: bool,
    pub event_id: EventId,
    /// The contact's resolved key (absent for a duplicate, which resolved nothing).
    pub contact_key: Option<String>,
    pub started: Vec<StartedRun>,
    pub skipped: Vec<SkippedRun>,
    /// Live runs the event ended (their journeys' `exitOn`).
    pub exits: Vec<ExitedRun>,
    /// Bucket memberships the event changed.
    pub buckets: Vec<BucketTransition>,
}

impl From<IngestOutcome> for IngestResult {
    fn from(outcome: IngestOutcome) -> Self {
        match outcome {
            IngestOutcome::Duplicate { event_id } => IngestResult {
                stored: false,
                event_id,
                contact_key: None,
                started: vec![],
                skipped: vec![],
                exits: vec![],
                buckets: vec![],
            },
            IngestOutcome::Stored {
                event_id,
                contact_key,
                started,
                skipped,
                exited,
                transitions,
            } => IngestResult {
                stored: true,
                event_id,
                contact_key: Some(contact_key),
                started,
                skipped,
                exits: exited,
                buckets: transitions,
            },
        }
    }
}

pub struct Ingestor {
    writer: IngestWriter,
    /// For manual membership changes, which commit on their own (not group-committed).
    store: Arc<dyn Store>,
    registry: Arc<ModuleRegistry>,
    clock: Clock,
    scheduler_wake: Arc<Notify>,
}

impl Ingestor {
    pub fn new(
        writer: IngestWriter,
        store: Arc<dyn Store>,
        registry: Arc<ModuleRegistry>,
        clock: Clock,
        scheduler_wake: Arc<Notify>,
    ) -> Self {
        Self {
            writer,
            store,
            registry,
            clock,
            scheduler_wake,
        }
    }

    pub async fn ingest(
        &self,
        tenant: &TenantId,
        request: IngestRequest,
    ) -> Result<IngestResult, IngestError> {
        self.ingest_batch(tenant, vec![request])
            .await
            .pop()
            .expect("one result per request")
    }

    /// Ingest several events; results in input order. Invalid events are refused one by one
    /// while the valid ones are committed together.
    pub async fn ingest_batch(
        &self,
        tenant: &TenantId,
        requests: Vec<IngestRequest>,
    ) -> Vec<Result<IngestResult, IngestError>> {
        let mut results: Vec<Option<Result<IngestResult, IngestError>>> =
            Vec::with_capacity(requests.len());
        let mut items = Vec::new();
        let mut positions = Vec::new();
        // One snapshot of the tenant's modules routes every event of the request, whole.
        let routing = self.registry.routing_snapshot(tenant);
        for (position, request) in requests.into_iter().enumerate() {
            match self.validate(tenant, request) {
                Ok(event) => {
                    let candidates = routing.journeys(tenant, &event.name, &event.event_properties);
                    items.push(IngestItem {
                        event,
                        candidates,
                        routing: Some(routing.clone()),
                    });
                    positions.push(position);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        if !items.is_empty() {
            match self.writer.submit(items).await {
                Ok(outcomes) => {
                    let mut started_any = false;
                    for (position, outcome) in positions.into_iter().zip(outcomes) {
                        let result = outcome.map(IngestResult::from).map_err(IngestError::from);
                        started_any |= result.as_ref().is_ok_and(|r| !r.started.is_empty());
                        results[position] = Some(result);
                    }
                    if started_any {
                        self.scheduler_wake.notify_one();
                    }
                }
                Err(stopped) => {
                    for position in positions {
                        results[position] = Some(Err(IngestError::Stopped(stopped.clone())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every position answered"))
            .collect()
    }

    /// Create or update a contact without an event (the contacts API, a journey's
    /// `update-contact`). The property buckets its changed properties can move follow at once,
    /// in the same transaction, their transitions ingested like real-time ones.
    pub async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<ContactUpsert, StoreError> {
        let routing = self.registry.routing_snapshot(tenant);
        let upsert = self
            .store
            .upsert_contact(tenant, identity, properties, now, routing)
            .await?;
        if !upsert.started.is_empty() {
            self.scheduler_wake.notify_one();
        }
        Ok(upsert)
    }

    /// Add a person to, or remove them from, a manual bucket. The transition event is ingested
    /// (and routed to journeys) in the same transaction as the membership change.
    pub async fn change_membership(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        key: &str,
        change: MembershipChange,
    ) -> Result<Option<BucketTransition>, MembershipError> {
        let registry = self.registry.bucket_registry(tenant);
        let bucket = registry
            .get(bucket_id)
            .ok_or_else(|| MembershipError::UnknownBucket(bucket_id.to_owned()))?;
        if bucket.kind != BucketKind::Manual {
            return Err(MembershipError::NotManual(bucket_id.to_owned()));
        }
        let routing = self.registry.routing_snapshot(tenant);
        let outcome = match self
            .store
            .change_membership(tenant, bucket, key, change, self.clock.now(), routing)
            .await?
        {
            ManualChangeOutcome::UnknownContact => {
                return Err(MembershipError::UnknownContact(key.to_owned()));
            }
            ManualChangeOutcome::Unchanged => None,
            ManualChangeOutcome::Moved(transition) => Some(transition),
        };
        if outcome.is_some() {
            self.scheduler_wake.notify_one();
        }
        Ok(outcome)
    }

    fn validate(&self, tenant: &TenantId, request: IngestRequest) -> Result<NewEvent, IngestError> {
        let name = request.name.trim().to_owned();
        if name.is_empty() {
            return Err(invalid("name", "the event name must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "name",
                format!("the event name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        // `bucket:` names and keys belong to bucket transitions: a client that could send one
        // could fake a transition, or take a transition's key first and silence it.
        if is_bucket_event(&name) {
            return Err(invalid(
                "name",
                format!(
                    "event names starting with {BUCKET_EVENT_PREFIX:?} are reserved for bucket transitions"
                ),
            ));
        }
        if request
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.trim_start().starts_with(BUCKET_EVENT_PREFIX))
        {
            return Err(invalid(
                "idempotencyKey",
                format!(
                    "keys starting with {BUCKET_EVENT_PREFIX:?} are reserved for bucket transitions"
                ),
            ));
        }
        let identity = validate_identity(
            request.user_id.as_deref(),
            request.email.as_deref(),
            request.anonymous_id.as_deref(),
        )?;
        for (field, value) in [
            ("eventProperties", &request.event_properties),
            ("contactProperties", &request.contact_properties),
        ] {
            if contains_nul(value.values()) || value.keys().any(|k| k.contains('\0')) {
                return Err(invalid(field, "text must not contain NUL characters"));
            }
        }
        if name.contains('\0')
            || request
                .idempotency_key
                .as_deref()
                .is_some_and(|k| k.contains('\0'))
        {
            return Err(invalid("name", "text must not contain NUL characters"));
        }
        let idempotency_key = request
            .idempotency_key
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        if idempotency_key
            .as_deref()
            .is_some_and(|k| k.len() > MAX_KEY_LEN)
        {
            return Err(invalid(
                "idempotencyKey",
                format!("longer than {MAX_KEY_LEN} characters"),
            ));
        }
        let received_at = self.clock.now();
        Ok(NewEvent {
            id: EventId::generate(),
            tenant_id: tenant.clone(),
            name,
            identity,
            event_properties: request.event_properties,
            contact_properties: request.contact_properties,
            idempotency_key,
            occurred_at: request.occurred_at.unwrap_or(received_at),
            received_at,
        })
    }
}

/// Check and normalise the identifying values of an event or contact: a valid email if one is
/// given, bounded ids, and at least one of them (an anonymous id alone is enough).
pub fn validate_identity(
    user_id: Option<&str>,
    email: Option<&str>,
    anonymous_id: Option<&str>,
) -> Result<Identity, IngestError> {
    if let Some(raw) = email.map(str::trim).filter(|e| !e.is_empty()) {
        let normalised = raw.to_lowercase();
        let valid = normalised.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }) && !normalised.contains(char::is_whitespace)
            && normalised.matches('@').count() == 1;
        if !valid {
            return Err(invalid(
                "email",
                format!("{raw:?} is not a valid email address"),
            ));
        }
    }
    for (field, value) in [("userId", user_id), ("anonymousId", anonymous_id)] {
        if value.is_some_and(|v| v.len() > MAX_KEY_LEN) {
            return Err(invalid(
                field,
                format!("longer than {MAX_KEY_LEN} characters"),
            ));
        }
    }
    for (field, value) in [
        ("userId", user_id),
        ("email", email),
        ("anonymousId", anonymous_id),
    ] {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(invalid(field, "text must not contain NUL characters"));
        }
    }
    let identity = Identity::new(user_id, email, anonymous_id);
    if identity.is_empty() {
        return Err(invalid("userId", "email or userId is required"));
    }
    Ok(identity)
}

/// NUL characters cannot be stored in PostgreSQL text: refuse them on every backend alike.
fn contains_nul<'a>(values: impl IntoIterator<Item = &'a Value>) -> bool {
    values.into_iter().any(|value| match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => contains_nul(items),
        Value::Object(map) => map.keys().any(|k| k.contains('\0')) || contains_nul(map.values()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_needs_at_least_one_value() {
        let err = validate_identity(Some("  "), None, None).unwrap_err();
        assert!(matches!(
            err,
            IngestError::Invalid {
                field: "userId",
                ..
            }
        ));
        assert!(validate_identity(None, None, Some("anon-1")).is_ok());
    }

    #[test]
    fn nul_characters_are_refused_anywhere_in_an_identity_or_property() {
        assert!(validate_identity(Some("a\0b"), None, None).is_err());
        let nested = serde_json::json!({"a": [{"b": "x\0y"}]});
        assert!(contains_nul(nested.as_object().unwrap().values()));
        assert!(!contains_nul(
            serde_json::json!({"a": [1, "ok"]})
                .as_object()
                .unwrap()
                .values()
        ));
    }

    #[test]
    fn emails_are_checked_and_normalised() {
        for bad in ["not-an-email", "a@b", "a@@b.c", "a b@c.d", "@b.c", "a@.bc"] {
            assert!(validate_identity(None, Some(bad), None).is_err(), "{bad}");
        }
        let identity = validate_identity(None, Some(" Ada@Example.COM "), None).unwrap();
        assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    }
}
