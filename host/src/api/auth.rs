//! Authentication: `Authorization: Bearer <key>` resolves to a [`Principal`] (the key's tenant
//! and scopes) or a 401, then the key's rate limit applies (429). Handlers check the scope they need with [`Principal::require`].

use super::AppState;
use super::error::ApiError;
use crate::ids::{ApiKeyId, TenantId};
use crate::tenancy::Scope;
use crate::tenancy::hash_key;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: ApiKeyId,
    pub tenant_id: TenantId,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                needed: scope.as_str(),
            })
        }
    }
}

pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let secret = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let key = state
        .store
        .api_key_by_hash(&hash_key(secret))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    state.rate_limits.check(&key.id)?;
    request.extensions_mut().insert(Principal {
        key_id: key.id,
        tenant_id: key.tenant_id,
        scopes: key.scopes,
    });
    Ok(next.run(request).await)
}
