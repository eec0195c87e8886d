//! `/v1/keys`: a tenant's admin key creates and revokes its own tenant's API keys. The secret
//! is returned once, at creation; only its hash is stored.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody};
use crate::ids::ApiKeyId;
use crate::store::ApiKeyRecord;
use crate::tenancy;
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    scopes: Vec<String>,
}

pub fn key_view(key: &ApiKeyRecord) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "scopes": key.scopes,
        "createdAt": key.created_at.to_rfc3339(),
        "revokedAt": key.revoked_at.map(|t| t.to_rfc3339()),
    })
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let keys = state.store.list_api_keys(&principal.tenant_id).await?;
    Ok(Json(
        json!({ "keys": keys.iter().map(key_view).collect::<Vec<_>>() }),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let scopes = tenancy::parse_scopes(&body.scopes.join(","))
        .map_err(|e| ApiError::invalid_field("scopes", e))?;
    let name =
        tenancy::check_key_name(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    let (record, secret) = tenancy::create_key(
        state.store.as_ref(),
        &principal.tenant_id,
        name,
        scopes,
        state.clock.now(),
    )
    .await?;
    let mut view = key_view(&record);
    view["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let revoked = state
        .store
        .revoke_api_key(Some(&principal.tenant_id), &ApiKeyId(id), state.clock.now())
        .await?;
    if !revoked {
        return Err(ApiError::NotFound);
    }
    Ok(Json(json!({ "revoked": true })))
}
