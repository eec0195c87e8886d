//! `POST /v1/events`: Hogsend's body, handed to ingest. Answers 202.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody};
use crate::clock::Timestamp;
use crate::ingest::IngestRequest;
use crate::store::Scope;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventBody {
    #[serde(alias = "event")]
    name: String,
    user_id: Option<String>,
    email: Option<String>,
    event_properties: Option<Map<String, Value>>,
    contact_properties: Option<Map<String, Value>>,
    idempotency_key: Option<String>,
    timestamp: Option<String>,
}

pub async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EventBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Ingest)?;
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
    let occurred_at = body
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
    let request = IngestRequest {
        name: body.name,
        user_id: body.user_id,
        email: body.email,
        event_properties: body.event_properties.unwrap_or_default(),
        contact_properties: body.contact_properties.unwrap_or_default(),
        idempotency_key: header_key.or(body.idempotency_key),
        occurred_at,
    };
    let result = state.ingestor.ingest(&principal.tenant_id, request).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "stored": result.stored,
            "eventId": result.event_id,
            "exits": [],
            "started": result.started,
            "skipped": result.skipped,
        })),
    ))
}
