//! `/v1/tenants`: the operator creates, lists, shows, suspends, resumes and deletes tenants,
//! with an operator key only (see [`super::auth::authenticate_operator`]). A tenant is named
//! in the path by its id or its name.

use super::AppState;
use super::auth::Operator;
use super::error::{ApiError, JsonBody};
use super::keys::key_view;
use crate::clock::Timestamp;
use crate::store::Tenant;
use crate::tenancy::{self, DEFAULT_TENANT, Scope};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(list).post(create))
        .route("/v1/tenants/{tenant}", get(detail).delete(delete))
        .route("/v1/tenants/{tenant}/suspend", post(suspend))
        .route("/v1/tenants/{tenant}/resume", post(resume))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
}

fn tenant_view(tenant: &Tenant) -> Value {
    json!({
        "id": tenant.id,
        "name": tenant.name,
        "status": if tenant.suspended_at.is_some() { "suspended" } else { "active" },
        "createdAt": tenant.created_at.to_rfc3339(),
        "suspendedAt": tenant.suspended_at.map(|t| t.to_rfc3339()),
    })
}

/// The tenant a path names, by id, else by name; 404 naming it otherwise.
pub(super) async fn resolve(state: &AppState, reference: &str) -> Result<Tenant, ApiError> {
    let by_id = state
        .store
        .tenant_by_id(&crate::ids::TenantId(reference.to_owned()))
        .await?;
    if let Some(tenant) = by_id {
        return Ok(tenant);
    }
    state
        .store
        .tenant_by_name(reference)
        .await?
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no tenant {reference:?}")))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
) -> Result<Json<Value>, ApiError> {
    let tenants = state.store.list_tenants().await?;
    Ok(Json(
        json!({ "tenants": tenants.iter().map(tenant_view).collect::<Vec<_>>() }),
    ))
}

/// A new tenant and its first admin key, whose secret is in this answer only: what the
/// operator hands its customer.
pub async fn create(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name =
        tenancy::check_tenant_name(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    let now = state.clock.now();
    let (tenant, created) = state.store.create_tenant(name, now).await?;
    if !created {
        return Err(ApiError::FieldConflict {
            field: "name",
            message: format!("a tenant named {name:?} exists already"),
        });
    }
    let key = tenancy::create_key(
        state.store.as_ref(),
        &tenant.id,
        "admin (operator)",
        Scope::ALL.to_vec(),
        now,
    )
    .await;
    let (record, secret) = match key {
        Ok(made) => made,
        Err(err) => {
            // Nothing half-made: a tenant nobody holds a key of is taken back.
            if let Err(undo) = state.store.delete_tenant(&tenant.id).await {
                tracing::error!(tenant = %tenant.id, "taking back a tenant without a key failed: {undo}");
            }
            return Err(err.into());
        }
    };
    let mut view = tenant_view(&tenant);
    let mut admin_key = key_view(&record);
    admin_key["key"] = json!(secret);
    view["adminKey"] = admin_key;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(tenant_view(&resolve(&state, &reference).await?)))
}

/// Idempotent: a suspended tenant stays suspended since it first was.
pub async fn suspend(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let suspended_at = Some(state.clock.now());
    let tenant = set_suspended(&state, &reference, suspended_at).await?;
    Ok(Json(tenant_view(&tenant)))
}

/// Idempotent. Runs that fell due meanwhile are claimed at once.
pub async fn resume(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = set_suspended(&state, &reference, None).await?;
    // This host's scheduler; the others find them at their next poll.
    state.scheduler_wake.notify_one();
    Ok(Json(tenant_view(&tenant)))
}

/// Suspend the tenant `reference` names (since `at`), or resume it (`None`).
async fn set_suspended(
    state: &AppState,
    reference: &str,
    at: Option<Timestamp>,
) -> Result<Tenant, ApiError> {
    let tenant = resolve(state, reference).await?;
    state
        .store
        .set_tenant_suspended(&tenant.id, at)
        .await?
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no tenant {reference:?}")))
}

/// Every row of a suspended tenant goes, in one transaction; its modules are unloaded here at
/// once and by the other hosts as they follow the catalog.
pub async fn delete(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = resolve(&state, &reference).await?;
    if tenant.name == DEFAULT_TENANT {
        return Err(ApiError::Conflict(
            "the default tenant cannot be deleted: the host's admin key file and its \
             `--modules` directory belong to it (suspend it instead)"
                .into(),
        ));
    }
    if tenant.suspended_at.is_none() {
        // A suspended tenant's requests stop at authentication; one still arriving while its
        // rows go would fail inside a group commit it shares with other tenants' events.
        return Err(ApiError::Conflict(format!(
            "tenant {} is active: suspend it first (POST /v1/tenants/{}/suspend), then delete it",
            tenant.name, tenant.name
        )));
    }
    if !state.store.delete_tenant(&tenant.id).await? {
        return Err(ApiError::NotFoundNamed(format!("no tenant {reference:?}")));
    }
    state.modules.forget_tenant(&tenant.id);
    tracing::info!(tenant = %tenant.id, "tenant deleted: its modules unloaded");
    Ok(StatusCode::NO_CONTENT)
}
