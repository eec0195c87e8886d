//! `/v1/email/settings`: the tenant's own sender — From, Reply-To and the transport its email
//! goes out through (see [`crate::delivery::senders`]). A PUT is checked whole, the host
//! resolved, before one write, so a refused PUT changes nothing; a password or API key is
//! stored sealed and never answered (`passwordSet`, `apiKeySet` say whether one is stored).
//! Every route needs the admin scope.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody};
use crate::delivery::senders::{self, SenderError, SenderInput, TransportSettings};
use crate::store::EmailSenderRecord;
use crate::tenancy::Scope;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/email/settings",
        get(detail).put(replace).delete(delete),
    )
}

fn no_settings() -> ApiError {
    ApiError::NotFoundNamed(
        "no sender settings: this tenant's email goes out with the host's transport".into(),
    )
}

fn settings_view(record: &EmailSenderRecord) -> Result<Value, ApiError> {
    let stored = record.secret.is_some();
    let transport =
        match senders::stored_transport(record).map_err(|e| ApiError::Internal(e.to_string()))? {
            TransportSettings::Smtp {
                host,
                port,
                security,
                username,
            } => json!({
                "kind": "smtp",
                "host": host,
                "port": port,
                "security": security,
                "username": username,
                "passwordSet": stored,
            }),
            TransportSettings::Http { provider, endpoint } => json!({
                "kind": "http",
                "provider": provider,
                "endpoint": endpoint,
                "apiKeySet": stored,
            }),
        };
    Ok(json!({
        "from": { "name": record.from_name, "address": record.from_address },
        "replyTo": record.reply_to,
        "transport": transport,
        "createdAt": record.created_at.to_rfc3339(),
        "updatedAt": record.updated_at.to_rfc3339(),
    }))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let record = state
        .store
        .email_sender(&principal.tenant_id)
        .await?
        .ok_or_else(no_settings)?;
    Ok(Json(settings_view(&record)?))
}

/// Create (201) or replace (200) the tenant's sender.
pub async fn replace(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(input): JsonBody<SenderInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let previous = state.store.email_sender(&principal.tenant_id).await?;
    let record = senders::check(
        input,
        &principal.tenant_id,
        previous.as_ref(),
        state.secrets.as_deref(),
        state.clock.now(),
    )
    .await
    .map_err(|err| match err {
        SenderError::Invalid { field, message } => ApiError::invalid_field(field, message),
        no_key @ SenderError::NoSecretsKey { .. } => ApiError::Conflict(no_key.to_string()),
    })?;
    let created = state
        .store
        .put_email_sender(&principal.tenant_id, &record)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(settings_view(&record)?)))
}

/// 204; the tenant's email goes out with the host's transport again.
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Admin)?;
    if state
        .store
        .delete_email_sender(&principal.tenant_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_settings())
    }
}
