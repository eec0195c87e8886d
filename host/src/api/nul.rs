//! No NUL character gets past the API: PostgreSQL cannot store one in text or JSON, so a NUL
//! in a path, a query parameter or a JSON body is refused up front with a 400 naming where
//! it is, on both backends alike (rather than a 500 from the database on one of them).
//!
//! Runs after authentication. A JSON body is scanned for the `\u0000` escape (a raw NUL is
//! not valid JSON) and only parsed to find the field when the scan finds one.

use super::error::ApiError;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// Refuse a request with a NUL in its path, its query or its JSON body; bodies up to `limit`.
pub async fn refuse_nul(limit: usize, request: Request, next: Next) -> Result<Response, ApiError> {
    let uri = request.uri();
    if uri.path().contains("%00") {
        return Err(ApiError::invalid_field(
            "path",
            "must not contain a NUL character",
        ));
    }
    if let Some(query) = uri.query().filter(|q| q.contains("%00")) {
        let field = query
            .split('&')
            .find(|pair| pair.contains("%00"))
            .and_then(|pair| pair.split('=').next())
            .unwrap_or("query");
        return Err(ApiError::invalid_field(
            field,
            "must not contain a NUL character",
        ));
    }
    // Ingest refuses a NUL event by event, so that one bad event of a batch does not sink
    // the others (`crate::ingest`).
    let ingest = uri.path().starts_with("/v1/events");
    let json = !ingest
        && request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Ok(next.run(request).await);
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    if memchr_escape(&bytes)
        && let Ok(value) = serde_json::from_slice::<Value>(&bytes)
        && let Some(field) = nul_field(&value, String::new())
    {
        let field = if field.is_empty() {
            "body".to_owned()
        } else {
            field.replace('\0', "\\0")
        };
        return Err(ApiError::invalid_field(
            &field,
            "must not contain a NUL character",
        ));
    }
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// Whether the JSON text holds a `\u0000` escape.
fn memchr_escape(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

/// The path of the first string (or object key) holding a NUL: `contactProperties.plan`,
/// `events[3].name`.
fn nul_field(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_field(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_field(item, here)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_field_holding_a_nul_is_named_by_its_path() {
        let body = json!({
            "name": "ok",
            "contactProperties": { "plan": "pro", "nested": [1, "fine", { "bad": "a\u{0}b" }] }
        });
        assert_eq!(
            nul_field(&body, String::new()).as_deref(),
            Some("contactProperties.nested[2].bad")
        );
        assert_eq!(
            nul_field(&json!({ "k\u{0}": 1 }), String::new()).as_deref(),
            Some("k\u{0}")
        );
        assert_eq!(nul_field(&json!({ "a": ["b"] }), String::new()), None);
        assert!(memchr_escape(br#"{"a":"x\u0000"}"#));
        assert!(!memchr_escape(br#"{"a":"x\u0001"}"#));
    }
}
