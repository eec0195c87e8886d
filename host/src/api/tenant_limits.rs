//! Per-tenant limits over HTTP: the operator reads and changes a tenant's
//! (`GET`/`PATCH /v1/tenants/{id}/limits`, operator key only), and a tenant reads its own
//! (`GET /v1/limits`, read scope). Each answer has what applies (`limits`), the tenant's own
//! settings (`own`, `null` where the host's default applies) and the host's `defaults`.
//!
//! A `PATCH` is checked whole before anything is written; once stored, the change applies on
//! this host at once and on the others at their next refresh (see
//! [`crate::tenancy::limits::cache`]).

use super::AppState;
use super::auth::{Operator, Principal};
use super::error::{ApiError, JsonBody};
use super::tenants::resolve;
use crate::ids::TenantId;
use crate::tenancy::Scope;
use crate::tenancy::limits::TenantLimitsRecord;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

/// The operator's routes (mounted behind operator authentication).
pub fn operator_routes() -> Router<AppState> {
    Router::new().route(
        "/v1/tenants/{tenant}/limits",
        get(operator_get).patch(operator_patch),
    )
}

/// What applies to the tenant, its own settings and the host's defaults.
fn limits_view(state: &AppState, tenant: &TenantId, record: Option<&TenantLimitsRecord>) -> Value {
    let own = record.map(|r| r.own).unwrap_or_default();
    let defaults = state.tenant_limits.defaults();
    json!({
        "tenantId": tenant,
        "limits": defaults.with(&own).to_json(|value| json!(value)),
        "own": own.to_json(|value| json!(value)),
        "defaults": defaults.to_json(|value| json!(value)),
        "updatedAt": record.map(|r| r.updated_at.to_rfc3339()),
    })
}

pub async fn operator_get(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = resolve(&state, &reference).await?;
    let record = state.store.tenant_limits(&tenant.id).await?;
    Ok(Json(limits_view(&state, &tenant.id, record.as_ref())))
}

/// A field present sets the tenant's own value, `null` returns it to the host's default, an
/// absent one stays as it is.
pub async fn operator_patch(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let tenant = resolve(&state, &reference).await?;
    let patch = state.tenant_limits.rules().parse_patch(&body)?;
    let record = state
        .store
        .change_tenant_limits(&tenant.id, &patch, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no tenant {reference:?}")))?;
    state.tenant_limits.install(&record);
    tracing::info!(tenant = %tenant.id, own = ?record.own, "tenant limits changed");
    Ok(Json(limits_view(&state, &tenant.id, Some(&record))))
}

/// `GET /v1/limits`: the calling tenant's own.
pub async fn own(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let record = state.store.tenant_limits(&principal.tenant_id).await?;
    Ok(Json(limits_view(
        &state,
        &principal.tenant_id,
        record.as_ref(),
    )))
}
