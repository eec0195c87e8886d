//! `/v1/email/unsubscribe?token=…`: where every email's unsubscribe link and `List-Unsubscribe`
//! header point. No API key: the signed token is the authority (see
//! [`crate::delivery::unsubscribe`]). `GET` (a person clicking the link) answers a small HTML
//! page; `POST` is RFC 8058 one-click (a mail client acting on `List-Unsubscribe-Post`) and
//! answers JSON. Either way the person is unsubscribed, and every later email to them is
//! recorded as suppressed, never sent. A bad, forged or expired token is a 400, never a 500.

use super::AppState;
use super::error::ApiError;
use crate::delivery::unsubscribe::{self, TokenError, UnsubscribeClaims};
use crate::store::ContactLookup;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/email/unsubscribe",
        get(unsubscribe_page).post(one_click),
    )
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Why an unsubscribe request was refused or failed.
enum Refusal {
    /// The client's fault: 400.
    Token(String),
    /// The database failed: 500.
    Internal(String),
}

/// Verify the token and record the opt-out; the claims it carried.
async fn unsubscribe_person(
    state: &AppState,
    token: Option<&str>,
) -> Result<UnsubscribeClaims, Refusal> {
    let token = token
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Refusal::Token("the unsubscribe link has no token".into()))?;
    let unverified =
        unsubscribe::decode(token).map_err(|e: TokenError| Refusal::Token(e.to_string()))?;
    let now = state.clock.now();
    let internal = |e: crate::store::StoreError| Refusal::Internal(e.to_string());
    // Read only: a token naming a tenant with no signing key cannot be genuine.
    let secret = state
        .store
        .email_signing_secret(&unverified.claims.tenant, None, now)
        .await
        .map_err(internal)?
        .ok_or_else(|| Refusal::Token(TokenError::BadSignature.to_string()))?;
    let claims = unverified
        .verify(&secret, now)
        .map_err(|e| Refusal::Token(e.to_string()))?;
    // The person may have merged into another contact since: record the opt-out under their
    // current key (the address is recorded too, so it holds whatever the key).
    let current_key = state
        .store
        .find_contacts(
            &claims.tenant,
            &ContactLookup::Key(claims.contact_key.clone()),
        )
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .map_or_else(|| claims.contact_key.clone(), |contact| contact.key);
    state
        .store
        .unsubscribe(&claims.tenant, &current_key, &claims.email, now)
        .await
        .map_err(internal)?;
    tracing::info!(tenant = %claims.tenant.as_str(), contact = %current_key, "unsubscribed from email");
    Ok(claims)
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; \
         padding: 0 1rem\"><h1>{title}</h1><p>{message}</p></body></html>\n",
        title = escape(title),
        message = escape(message),
    );
    (status, Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET`: a person followed the link.
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> Response {
    match unsubscribe_person(&state, query.token.as_deref()).await {
        Ok(claims) => page(
            StatusCode::OK,
            "You are unsubscribed",
            &format!("{} will receive no more emails from us.", claims.email),
        ),
        Err(Refusal::Token(message)) => page(
            StatusCode::BAD_REQUEST,
            "This unsubscribe link does not work",
            &format!("{message}. Use the link in a recent email, or contact us."),
        ),
        Err(Refusal::Internal(cause)) => {
            tracing::error!("unsubscribe failed: {cause}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "We could not record your request. Please try again in a moment.",
            )
        }
    }
}

/// `POST`: RFC 8058 one-click from a mail client (the body, `List-Unsubscribe=One-Click`, is
/// not needed: the token says everything).
pub async fn one_click(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match unsubscribe_person(&state, query.token.as_deref()).await {
        Ok(_) => Ok(Json(json!({ "unsubscribed": true }))),
        Err(Refusal::Token(message)) => Err(ApiError::invalid_field("token", message)),
        Err(Refusal::Internal(cause)) => Err(ApiError::Internal(cause)),
    }
}
