//! `POST` / `DELETE /v1/buckets/{id}/members/{key}`: adding a person to, or removing them
//! from, a manual bucket. The transition (`bucket:entered:<id>` / `bucket:left:<id>` with
//! reason `manual`) is ingested like any other and starts the bucket's reactions. Computed
//! buckets refuse: their membership follows their criteria.

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use crate::ingest::MembershipError;
use crate::store::MembershipChange;
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

pub async fn add(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bucket_id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    change(state, principal, bucket_id, key, MembershipChange::Add).await
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bucket_id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    change(state, principal, bucket_id, key, MembershipChange::Remove).await
}

async fn change(
    state: AppState,
    principal: Principal,
    bucket_id: String,
    key: String,
    change: MembershipChange,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Ingest)?;
    let transition = state
        .ingestor
        .change_membership(&principal.tenant_id, &bucket_id, &key, change)
        .await
        .map_err(|error| match error {
            MembershipError::Store(store) => ApiError::from(store),
            MembershipError::UnknownBucket(_) | MembershipError::UnknownContact(_) => {
                ApiError::NotFoundNamed(error.to_string())
            }
            MembershipError::NotManual(_) => ApiError::Conflict(error.to_string()),
        })?;
    Ok(Json(json!({
        "changed": transition.is_some(),
        "transition": transition,
    })))
}
