//! The API's one error type and its one mapping to HTTP: a status and a JSON body
//! `{ "error": …, "details"?: … }`. Client input never produces a 500.

use crate::ingest::IngestError;
use crate::modules::deploy::DeployError;
use crate::store::StoreError;
use crate::tenancy::limits::LimitError;
use crate::usage::RangeError;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::header::{CONNECTION, RETRY_AFTER};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("Forbidden: insufficient scope")]
    Forbidden { needed: &'static str },
    /// 403 naming why: a key of the wrong kind for the route, or a suspended tenant.
    #[error("{0}")]
    Refused(String),
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Option<Value>,
    },
    #[error("Not Found")]
    NotFound,
    /// 404 naming what was not found.
    #[error("{0}")]
    NotFoundNamed(String),
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    /// 413 naming the limit.
    #[error("{0}")]
    PayloadTooLargeNamed(String),
    #[error("Rate limit exceeded")]
    TooManyRequests { retry_after_secs: u64 },
    /// 429 naming the limit that was reached.
    #[error("{message}")]
    TooManyRequestsNamed {
        message: String,
        retry_after_secs: u64,
    },
    /// The request conflicts with how the resource is defined (e.g. a manual change to a
    /// computed bucket).
    #[error("{0}")]
    Conflict(String),
    /// 409 naming the field whose value conflicts (e.g. a name already taken).
    #[error("{message}")]
    FieldConflict {
        field: &'static str,
        message: String,
    },
    #[error("Internal Server Error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            message: format!("invalid {field}: {message}"),
            details: Some(json!({ "field": field })),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, details) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ApiError::Forbidden { needed } => (
                StatusCode::FORBIDDEN,
                Some(json!({ "requiredScope": needed })),
            ),
            ApiError::BadRequest { details, .. } => (StatusCode::BAD_REQUEST, details.clone()),
            ApiError::NotFound | ApiError::NotFoundNamed(_) => (StatusCode::NOT_FOUND, None),
            ApiError::PayloadTooLarge | ApiError::PayloadTooLargeNamed(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, None)
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, None),
            ApiError::FieldConflict { field, .. } => {
                (StatusCode::CONFLICT, Some(json!({ "field": field })))
            }
            ApiError::Refused(_) => (StatusCode::FORBIDDEN, None),
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::TooManyRequestsNamed {
                retry_after_secs, ..
            } => {
                let body = Json(
                    json!({ "error": self.to_string(), "details": { "retryAfterSeconds": retry_after_secs } }),
                );
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(RETRY_AFTER, retry_after_secs.to_string())],
                    body,
                )
                    .into_response();
            }
            ApiError::Internal(cause) => {
                tracing::error!("internal error: {cause}");
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        };
        let mut body = json!({ "error": self.to_string() });
        if let Some(details) = details {
            body["details"] = details;
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read: the connection cannot carry another
            // request, and a client that reused it would see it cut.
            return (status, [(CONNECTION, "close")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(message) => ApiError::bad_request(message),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Invalid { field, message } => ApiError::BadRequest {
                message: message.clone(),
                details: Some(json!({ "field": field })),
            },
            IngestError::Store(err) => err.into(),
            IngestError::Stopped(err) => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(err: DeployError) -> Self {
        match err {
            DeployError::InvalidName { .. } => ApiError::BadRequest {
                message: err.to_string(),
                details: Some(json!({ "field": "name" })),
            },
            DeployError::TooLarge { .. } => ApiError::PayloadTooLargeNamed(err.to_string()),
            DeployError::Invalid(_) => ApiError::bad_request(err.to_string()),
            DeployError::Conflict(_)
            | DeployError::NothingToRollBackTo(_)
            | DeployError::ModuleBytes { .. }
            | DeployError::Contended => ApiError::Conflict(err.to_string()),
            DeployError::NoSuchModule(_) | DeployError::NoSuchVersion { .. } => {
                ApiError::NotFoundNamed(err.to_string())
            }
            DeployError::Store(err) => err.into(),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(err: LimitError) -> Self {
        ApiError::BadRequest {
            message: err.to_string(),
            details: err.field().map(|field| json!({ "field": field })),
        }
    }
}

impl From<RangeError> for ApiError {
    fn from(err: RangeError) -> Self {
        ApiError::BadRequest {
            message: err.to_string(),
            details: Some(json!({ "field": err.param() })),
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s: 400 naming what is wrong, 413 when too large.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::BytesRejection(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::PayloadTooLarge
                }
                JsonRejection::JsonDataError(e) => ApiError::BadRequest {
                    message: "the JSON body does not match the expected shape".into(),
                    details: Some(json!({ "reason": e.body_text() })),
                },
                JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
                    message: "the body is not valid JSON".into(),
                    details: Some(json!({ "reason": e.body_text() })),
                },
                JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
                    "expected a JSON body with `Content-Type: application/json`",
                ),
                other => ApiError::bad_request(other.body_text()),
            }),
        }
    }
}

/// `Query<T>` whose rejection is a JSON 400 naming the bad parameter.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection| ApiError::BadRequest {
                message: "invalid query parameters".into(),
                details: Some(json!({ "reason": rejection.body_text() })),
            })
    }
}
