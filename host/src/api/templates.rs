//! `/v1/templates`: a tenant's own email templates. A template stored here overrides a
//! module's shipped template of the same key at the next send (every host on the database
//! reads it through the store), so copy changes need no redeploy; deleting it falls back to
//! the module's. Every part must parse as minijinja, or the request is a 400 naming the field.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody};
use crate::delivery::templates::TemplateSource;
use crate::store::TenantTemplate;
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// Longest accepted template key.
const MAX_KEY_LEN: usize = 200;
/// Largest accepted template part.
const MAX_PART_BYTES: usize = 256 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/templates", get(list)).route(
        "/v1/templates/{key}",
        get(detail).put(upsert).delete(delete),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    subject: String,
    /// The plain-text body.
    text: String,
    html: Option<String>,
}

fn template_view(template: &TenantTemplate) -> Value {
    json!({
        "key": template.key,
        "subject": template.subject,
        "text": template.text,
        "html": template.html,
        "createdAt": template.created_at.to_rfc3339(),
        "updatedAt": template.updated_at.to_rfc3339(),
    })
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.trim().is_empty() || key.trim() != key {
        return Err(ApiError::invalid_field(
            "key",
            "must be non-empty, without surrounding whitespace",
        ));
    }
    if key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "key",
            format!("must be at most {MAX_KEY_LEN} bytes, without control characters"),
        ));
    }
    Ok(())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let templates = state.store.email_templates(&principal.tenant_id).await?;
    Ok(Json(
        json!({ "templates": templates.iter().map(template_view).collect::<Vec<_>>() }),
    ))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let template = state
        .store
        .email_template(&principal.tenant_id, &key)
        .await?
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no template {key:?}")))?;
    Ok(Json(template_view(&template)))
}

/// Create (201) or replace (200) a template.
pub async fn upsert(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<TemplateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Deploy)?;
    check_key(&key)?;
    let source = TemplateSource {
        subject: body.subject,
        text: body.text,
        html: body.html,
    };
    for (field, part) in [
        ("subject", Some(&source.subject)),
        ("text", Some(&source.text)),
        ("html", source.html.as_ref()),
    ] {
        if part.is_some_and(|p| p.len() > MAX_PART_BYTES) {
            return Err(ApiError::invalid_field(
                field,
                format!("is larger than {MAX_PART_BYTES} bytes"),
            ));
        }
    }
    source.check().map_err(|invalid| {
        ApiError::invalid_field(
            invalid.part.api_field(),
            format!("not a valid template: {}", invalid.message),
        )
    })?;
    let now = state.clock.now();
    let template = TenantTemplate {
        key,
        subject: source.subject,
        text: source.text,
        html: source.html,
        created_at: now,
        updated_at: now,
    };
    let created = state
        .store
        .put_email_template(&principal.tenant_id, &template)
        .await?;
    // Read back: an update keeps the original creation time.
    let stored = state
        .store
        .email_template(&principal.tenant_id, &template.key)
        .await?
        .unwrap_or(template);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(template_view(&stored))))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Deploy)?;
    if state
        .store
        .delete_email_template(&principal.tenant_id, &key)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFoundNamed(format!("no template {key:?}")))
    }
}
