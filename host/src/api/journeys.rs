//! `/v1/journeys`: the tenant's active journeys (declared ones and bucket reactions) with what
//! they have done — runs by status, skipped triggers by reason — and the admin controls: the
//! per-tenant switch and enrolling a person. Always within the caller's tenant.
//!
//! | route | scope | answer |
//! |---|---|---|
//! | `GET /v1/journeys?from=&limit=` | read | `{ journeys: [journey + runs + skips], page }`, at most 1,000 a page |
//! | `GET /v1/journeys/{id}` | read | journey + `runs` + `skips` |
//! | `PATCH /v1/journeys/{id}` `{enabled}` | admin | the journey, switched for new runs |
//! | `POST /v1/journeys/{id}/enroll` | admin | 202 `{ status: started, runId }` or `{ status: skipped, reason }`, with the ingest result |
//!
//! `enabled` is what the enrollment guards apply: the module's declaration and the admin
//! switch together. Enrolling ingests the journey's trigger event for the person through the
//! normal ingest path, so every guard applies (and the event reaches every other journey and
//! bucket it concerns, like any event).

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody, QueryParams};
use super::events::result_view;
use crate::ingest::IngestRequest;
use crate::journeys::{RunStatus, SkipReason};
use crate::modules::LoadedModule;
use crate::modules::manifest::JourneyDef;
use crate::store::JourneyStats;
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys", get(list))
        .route("/v1/journeys/{id}", get(detail).patch(switch))
        .route("/v1/journeys/{id}/enroll", post(enroll))
}

fn journey_view(module: &LoadedModule, journey: &JourneyDef, stats: &JourneyStats) -> Value {
    let runs: Map<String, Value> = RunStatus::ALL
        .iter()
        .map(|s| {
            let n = stats.runs.get(s).copied().unwrap_or(0);
            (s.as_str().to_owned(), json!(n))
        })
        .collect();
    let skips: Map<String, Value> = SkipReason::ALL
        .iter()
        .map(|r| {
            let n = stats.skips.get(r).copied().unwrap_or(0);
            (r.as_str().to_owned(), json!(n))
        })
        .collect();
    json!({
        "id": journey.id,
        "name": journey.name,
        "module": module.name,
        "moduleVersion": module.hash,
        "trigger": journey.trigger,
        "triggerWhere": journey.trigger_where.as_ref().map(|c| c.to_json()),
        "exitOn": journey.exit_on.iter().map(|rule| json!({
            "event": rule.event,
            "where": rule.condition.as_ref().map(|c| c.to_json()),
        })).collect::<Vec<_>>(),
        "entryLimit": journey.entry_limit,
        "enabled": journey.enabled && stats.admin_enabled != Some(false),
        "declaredEnabled": journey.enabled,
        "adminEnabled": stats.admin_enabled,
        "sourceBucketId": journey.source_bucket_id,
        "runs": runs,
        "skips": skips,
    })
}

fn find_journey(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(Arc<LoadedModule>, JourneyDef), ApiError> {
    state
        .modules
        .journey(&principal.tenant_id, id)
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no journey {id:?} is active")))
}

async fn one_view(
    state: &AppState,
    principal: &Principal,
    module: &LoadedModule,
    journey: &JourneyDef,
) -> Result<Value, ApiError> {
    let stats = state
        .store
        .journey_stats(&principal.tenant_id, Some(&journey.id))
        .await?
        .remove(&journey.id)
        .unwrap_or_default();
    Ok(journey_view(module, journey, &stats))
}

/// Journeys a list shows at most: what a tenant's modules declare is bounded by their size,
/// not small, so the list comes in pages.
const MAX_LISTED_JOURNEYS: usize = 1_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The first journey shown, by its position in the list.
    from: Option<usize>,
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(page): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let stats = state
        .store
        .journey_stats(&principal.tenant_id, None)
        .await?;
    let all = state.modules.journeys(&principal.tenant_id);
    let from = page.from.unwrap_or(0);
    let limit = page
        .limit
        .unwrap_or(MAX_LISTED_JOURNEYS)
        .clamp(1, MAX_LISTED_JOURNEYS);
    let journeys: Vec<Value> = all
        .iter()
        .skip(from)
        .take(limit)
        .map(|(module, journey)| {
            let none = JourneyStats::default();
            journey_view(module, journey, stats.get(&journey.id).unwrap_or(&none))
        })
        .collect();
    let next = (from + limit < all.len()).then_some(from + limit);
    Ok(Json(json!({
        "journeys": journeys,
        "page": { "from": from, "limit": limit, "total": all.len(), "next": next },
    })))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let (module, journey) = find_journey(&state, &principal, &id)?;
    Ok(Json(one_view(&state, &principal, &module, &journey).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    enabled: Option<bool>,
}

/// `PATCH /v1/journeys/{id}` `{enabled}`: takes effect for the next ingest; runs already
/// started continue.
pub async fn switch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SwitchBody>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let enabled = body
        .enabled
        .ok_or_else(|| ApiError::invalid_field("enabled", "is required: true or false"))?;
    let (module, journey) = find_journey(&state, &principal, &id)?;
    state
        .store
        .set_journey_enabled(&principal.tenant_id, &id, enabled, state.clock.now())
        .await?;
    Ok(Json(one_view(&state, &principal, &module, &journey).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollBody {
    user_id: Option<String>,
    email: Option<String>,
    anonymous_id: Option<String>,
    /// The trigger event's properties.
    properties: Option<Map<String, Value>>,
}

/// `POST /v1/journeys/{id}/enroll`: ingest the journey's trigger event for the person; the
/// answer says what the enrollment guards made of it for this journey.
pub async fn enroll(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EnrollBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let (_, journey) = find_journey(&state, &principal, &id)?;
    if let Some(bucket) = &journey.source_bucket_id {
        return Err(ApiError::Conflict(format!(
            "journey {id:?} is a reaction of bucket {bucket:?}: it starts when a person enters \
             or leaves the bucket, not by enrollment"
        )));
    }
    let request = IngestRequest {
        name: journey.trigger.clone(),
        user_id: body.user_id,
        email: body.email,
        anonymous_id: body.anonymous_id,
        event_properties: body.properties.unwrap_or_default(),
        ..IngestRequest::default()
    };
    let result = state.ingestor.ingest(&principal.tenant_id, request).await?;
    let started = result.started.iter().find(|s| s.journey_id == id);
    let skipped = result.skipped.iter().find(|s| s.journey_id == id);
    let mut view = match (started, skipped) {
        (Some(run), _) => json!({ "status": "started", "runId": run.run_id }),
        (None, Some(skip)) => json!({ "status": "skipped", "reason": skip.reason }),
        (None, None) => {
            return Err(ApiError::Conflict(format!(
                "journey {id:?} was not triggered: the tenant's modules changed meanwhile"
            )));
        }
    };
    view["journeyId"] = json!(id);
    view["event"] = json!(journey.trigger);
    view["ingest"] = result_view(&result);
    Ok((StatusCode::ACCEPTED, Json(view)))
}
