//! `POST /v1/events` (Hogsend's body) and `POST /v1/events/batch` (up to 1,000 of them), handed
//! to ingest. Both answer 202 once the events' transaction has committed. Each event counts
//! against the tenant's ingest rate (a batch of n takes n), before anything is stored.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody};
use crate::clock::Timestamp;
use crate::ingest::{IngestError, IngestRequest, IngestResult};
use crate::tenancy::Scope;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Most events one batch request may carry.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventBody {
    #[serde(alias = "event")]
    name: String,
    user_id: Option<String>,
    email: Option<String>,
    anonymous_id: Option<String>,
    event_properties: Option<Map<String, Value>>,
    contact_properties: Option<Map<String, Value>>,
    idempotency_key: Option<String>,
    timestamp: Option<String>,
}

impl EventBody {
    fn into_request(self, header_key: Option<String>) -> Result<IngestRequest, ApiError> {
        let occurred_at = self
            .timestamp
            .as_deref()
            .map(|text| {
                Timestamp::parse_rfc3339(text).ok_or_else(|| {
                    ApiError::invalid_field(
                        "timestamp",
                        format!("{text:?} is not an RFC 3339 date-time"),
                    )
                })
            })
            .transpose()?;
        Ok(IngestRequest {
            name: self.name,
            user_id: self.user_id,
            email: self.email,
            anonymous_id: self.anonymous_id,
            event_properties: self.event_properties.unwrap_or_default(),
            contact_properties: self.contact_properties.unwrap_or_default(),
            idempotency_key: header_key.or(self.idempotency_key),
            occurred_at,
        })
    }
}

pub fn result_view(result: &IngestResult) -> Value {
    json!({
        "stored": result.stored,
        "eventId": result.event_id,
        "contactKey": result.contact_key,
        "exits": result.exits,
        "started": result.started,
        "skipped": result.skipped,
        "buckets": result.buckets,
    })
}

pub async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EventBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Ingest)?;
    state.ingest_limits.admit(&principal.tenant_id, 1)?;
    let header_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::invalid_field("Idempotency-Key", "the header is not valid text")
                })?
                .to_owned(),
        ),
    };
    let result = state
        .ingestor
        .ingest(&principal.tenant_id, body.into_request(header_key)?)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(result_view(&result))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Each item is checked on its own, so one malformed event does not sink the others.
    events: Vec<Value>,
}

pub async fn ingest_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Ingest)?;
    if body.events.is_empty() {
        return Err(ApiError::invalid_field(
            "events",
            "must hold at least one event",
        ));
    }
    if body.events.len() > MAX_BATCH {
        return Err(ApiError::invalid_field(
            "events",
            format!(
                "holds {} events; the most is {MAX_BATCH}",
                body.events.len()
            ),
        ));
    }
    state
        .ingest_limits
        .admit(&principal.tenant_id, body.events.len())?;
    let mut answers: Vec<Option<Value>> = vec![None; body.events.len()];
    let mut requests = Vec::new();
    let mut positions = Vec::new();
    for (index, raw) in body.events.into_iter().enumerate() {
        let parsed = serde_json::from_value::<EventBody>(raw)
            .map_err(|e| ApiError::bad_request(e.to_string()))
            .and_then(|event| event.into_request(None));
        match parsed {
            Ok(request) => {
                requests.push(request);
                positions.push(index);
            }
            Err(error) => answers[index] = Some(invalid_item(index, &error)),
        }
    }
    let results = state
        .ingestor
        .ingest_batch(&principal.tenant_id, requests)
        .await;
    for (index, result) in positions.into_iter().zip(results) {
        answers[index] = Some(match result {
            Ok(result) => {
                let mut view = result_view(&result);
                view["index"] = json!(index);
                view["status"] = json!(if result.stored { "stored" } else { "duplicate" });
                view
            }
            Err(IngestError::Invalid { field, message }) => {
                json!({ "index": index, "status": "invalid", "error": message, "field": field })
            }
            Err(other) => {
                tracing::error!(index, "batch item failed: {other}");
                json!({ "index": index, "status": "error", "error": "the event could not be stored" })
            }
        });
    }
    let results: Vec<Value> = answers
        .into_iter()
        .map(|a| a.expect("every item answered"))
        .collect();
    let count = |status: &str| results.iter().filter(|r| r["status"] == status).count();
    let summary = json!({ "stored": count("stored"), "duplicate": count("duplicate"), "invalid": count("invalid"), "error": count("error") });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "results": results, "summary": summary })),
    ))
}

fn invalid_item(index: usize, error: &ApiError) -> Value {
    let mut item = json!({ "index": index, "status": "invalid", "error": error.to_string() });
    if let ApiError::BadRequest {
        details: Some(details),
        ..
    } = error
        && let Some(field) = details.get("field")
    {
        item["field"] = field.clone();
    }
    item
}
