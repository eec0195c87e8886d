//! Ingest: the only way an event enters Waymark (HTTP today; bucket transitions and journey
//! triggers later go through here too). It validates the event, identifies the contact, asks
//! the journey router which journeys the event starts, and hands it all to the store to commit
//! in one transaction; then it wakes the scheduler. It must not run journeys itself.

use crate::clock::{Clock, Timestamp};
use crate::contacts;
use crate::ids::{EventId, TenantId};
use crate::journeys::router;
use crate::modules::ModuleRegistry;
use crate::store::{IngestOutcome, NewEvent, SkippedRun, StartedRun, Store, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::Notify;

const MAX_NAME_LEN: usize = 200;
const MAX_KEY_LEN: usize = 500;

/// An event as a producer submits it.
#[derive(Debug, Clone, Default)]
pub struct IngestRequest {
    pub name: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
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
    pub started: Vec<StartedRun>,
    pub skipped: Vec<SkippedRun>,
}

pub struct Ingestor {
    store: Arc<dyn Store>,
    registry: Arc<ModuleRegistry>,
    clock: Clock,
    scheduler_wake: Arc<Notify>,
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<ModuleRegistry>,
        clock: Clock,
        scheduler_wake: Arc<Notify>,
    ) -> Self {
        Self {
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
        let event = self.validate(tenant, request)?;
        let candidates = router::candidates(&self.registry, tenant, &event.name);
        let outcome = self.store.ingest(event, &candidates).await?;
        Ok(match outcome {
            IngestOutcome::Duplicate { event_id } => IngestResult {
                stored: false,
                event_id,
                started: vec![],
                skipped: vec![],
            },
            IngestOutcome::Stored {
                event_id,
                started,
                skipped,
            } => {
                if !started.is_empty() {
                    self.scheduler_wake.notify_one();
                }
                IngestResult {
                    stored: true,
                    event_id,
                    started,
                    skipped,
                }
            }
        })
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
        let email = match request
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            None => None,
            Some(raw) => {
                let email = contacts::normalize_email(raw).unwrap_or_default();
                let valid = email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && domain.contains('.')
                        && !email.contains(char::is_whitespace)
                });
                if !valid {
                    return Err(invalid(
                        "email",
                        format!("{raw:?} is not a valid email address"),
                    ));
                }
                Some(email)
            }
        };
        if request
            .user_id
            .as_deref()
            .is_some_and(|id| id.len() > MAX_KEY_LEN)
        {
            return Err(invalid(
                "userId",
                format!("longer than {MAX_KEY_LEN} characters"),
            ));
        }
        let contact_key = contacts::contact_key(request.user_id.as_deref(), email.as_deref())
            .ok_or_else(|| invalid("userId", "email or userId is required"))?;
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
            contact_key,
            email,
            event_properties: request.event_properties,
            contact_properties: request.contact_properties,
            idempotency_key,
            occurred_at: request.occurred_at.unwrap_or(received_at),
            received_at,
        })
    }
}
