//! `/v1/contacts`: upsert with properties, find by email or user id, read one (with its live
//! runs and current bucket memberships), and delete (a soft delete that erases personal data and stops the person's journeys).

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody, QueryParams};
use crate::ingest::validate_identity;
use crate::store::{ContactLookup, ContactRecord, RunFilter};
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpsertBody {
    user_id: Option<String>,
    email: Option<String>,
    anonymous_id: Option<String>,
    /// Merged into the contact's properties; `null` removes a key.
    properties: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindQuery {
    email: Option<String>,
    user_id: Option<String>,
}

pub fn contact_view(contact: &ContactRecord) -> Value {
    json!({
        "id": contact.id,
        "key": contact.key,
        "userId": contact.external_id,
        "email": contact.email,
        "anonymousId": contact.anonymous_id,
        "properties": contact.properties,
        "firstSeenAt": contact.first_seen_at.to_rfc3339(),
        "lastSeenAt": contact.last_seen_at.to_rfc3339(),
    })
}

pub async fn upsert(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<UpsertBody>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Ingest)?;
    let identity = validate_identity(
        body.user_id.as_deref(),
        body.email.as_deref(),
        body.anonymous_id.as_deref(),
    )?;
    let upsert = state
        .ingestor
        .upsert_contact(
            &principal.tenant_id,
            &identity,
            &body.properties.unwrap_or_default(),
            state.clock.now(),
        )
        .await?;
    let resolution = &upsert.resolution;
    let mut view = contact_view(&resolution.contact);
    view["created"] = json!(resolution.created);
    view["linked"] = json!(resolution.linked);
    view["merged"] = json!(resolution.merged);
    view["transitions"] = json!(upsert.transitions);
    Ok(Json(view))
}

pub async fn find(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<FindQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let email = query.email.filter(|e| !e.trim().is_empty());
    let user_id = query.user_id.filter(|u| !u.trim().is_empty());
    if email.is_none() && user_id.is_none() {
        return Err(ApiError::invalid_field(
            "email",
            "email or userId is required",
        ));
    }
    let contacts = state
        .store
        .find_contacts(&principal.tenant_id, &ContactLookup::Any { user_id, email })
        .await?;
    Ok(Json(
        json!({ "contacts": contacts.iter().map(contact_view).collect::<Vec<_>>() }),
    ))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let contact = state
        .store
        .find_contacts(&principal.tenant_id, &ContactLookup::Key(key))
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound)?;
    let filter = RunFilter {
        contact_key: Some(contact.key.clone()),
        live_only: true,
        limit: 100,
        ..Default::default()
    };
    let runs = state.store.list_runs(&principal.tenant_id, &filter).await?;
    let memberships = state
        .store
        .contact_memberships(&principal.tenant_id, &contact.key)
        .await?;
    let mut view = contact_view(&contact);
    view["activeRuns"] = json!(runs.iter().map(super::runs::run_view).collect::<Vec<_>>());
    view["buckets"] = super::buckets::memberships_view(&memberships);
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events of this name.
    name: Option<String>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
}

/// `GET /v1/contacts/{key}/events`: the person's timeline, newest first — their own events and
/// the bucket transitions ingest stored for them (`bucket:entered:<id>` …, with their
/// idempotency keys).
pub async fn events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let contact = state
        .store
        .find_contacts(&principal.tenant_id, &ContactLookup::Key(key))
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound)?;
    let events = state
        .store
        .contact_events(
            &principal.tenant_id,
            &contact.key,
            query.name.as_deref(),
            query.limit.unwrap_or(0),
        )
        .await?;
    let events: Vec<Value> = events
        .iter()
        .map(|event| {
            json!({
                "id": event.id,
                "name": event.name,
                "properties": event.properties,
                "occurredAt": event.occurred_at.to_rfc3339(),
                "receivedAt": event.received_at.to_rfc3339(),
                "idempotencyKey": event.idempotency_key,
            })
        })
        .collect();
    Ok(Json(json!({ "key": contact.key, "events": events })))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Ingest)?;
    let deleted = state
        .store
        .delete_contact(&principal.tenant_id, &key, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::OK,
        Json(json!({ "deleted": true, "contact": deleted })),
    ))
}
