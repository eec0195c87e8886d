//! Authentication: `Authorization: Bearer <key>` resolves to a [`Principal`] (a tenant key's
//! tenant and scopes) on tenant routes, or an [`Operator`] (an operator key) on the operator
//! routes; an unknown key is a 401, a key of the other kind a 403, and so is every key of a
//! suspended tenant. Then the key's rate limit applies (429). Handlers check the scope they
//! need with [`Principal::require`].

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

/// The operator, authenticated by one of its keys: it manages tenants and reaches none's data.
#[derive(Debug, Clone)]
pub struct Operator {
    pub key_id: ApiKeyId,
}

/// The hash of the request's bearer key; 401 without one.
fn bearer_hash(request: &Request) -> Result<String, ApiError> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .map(hash_key)
        .ok_or(ApiError::Unauthorized)
}

/// Tenant routes: a live key of a tenant that is not suspended.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let hash = bearer_hash(&request)?;
    let Some(found) = state.store.api_key_by_hash(&hash).await? else {
        // Only a miss asks: the hot path stays one lookup.
        if state.store.operator_key_by_hash(&hash).await?.is_some() {
            return Err(ApiError::Refused(
                "an operator key reaches only the operator routes (/v1/tenants); use a key \
                 of the tenant"
                    .into(),
            ));
        }
        return Err(ApiError::Unauthorized);
    };
    if found.tenant.suspended_at.is_some() {
        return Err(ApiError::Refused(format!(
            "tenant {} is suspended",
            found.tenant.name
        )));
    }
    state.rate_limits.check(&found.key.id)?;
    request.extensions_mut().insert(Principal {
        key_id: found.key.id,
        tenant_id: found.key.tenant_id,
        scopes: found.key.scopes,
    });
    Ok(next.run(request).await)
}

/// Operator routes: a live operator key. A tenant's key, whatever its scopes, never passes.
pub async fn authenticate_operator(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let hash = bearer_hash(&request)?;
    let Some(key) = state.store.operator_key_by_hash(&hash).await? else {
        if state.store.api_key_by_hash(&hash).await?.is_some() {
            return Err(ApiError::Refused(
                "the operator routes need an operator key; a tenant's key never reaches them"
                    .into(),
            ));
        }
        return Err(ApiError::Unauthorized);
    };
    state.rate_limits.check(&key.id)?;
    request.extensions_mut().insert(Operator { key_id: key.id });
    Ok(next.run(request).await)
}
