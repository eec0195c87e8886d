//! The HTTP API (`/v1`). Each submodule is one resource; all share [`AppState`], the one error
//! mapping in [`error`] and authentication in [`auth`] (tenant keys on tenant routes, operator
//! keys on [`tenants`], the operator's side of [`tenant_limits`] and the operator's [`usage`]
//! views). Handlers translate HTTP to calls on the ingest pipeline or the store and back; they
//! hold no domain logic.

pub mod admin;
pub mod auth;
pub mod buckets;
pub mod client;
pub mod contacts;
pub mod email_settings;
pub mod error;
pub mod events;
pub mod journeys;
pub mod keys;
pub mod limits;
pub mod memberships;
pub mod modules;
pub mod nul;
pub mod runs;
pub mod serve;
pub mod templates;
pub mod tenant_limits;
pub mod tenants;
pub mod unsubscribe;
pub mod usage;

use crate::clock::Clock;
use crate::ingest::Ingestor;
use crate::modules::ModuleRegistry;
use crate::modules::deploy::Deployer;
use crate::secrets::SecretBox;
use crate::store::Store;
use crate::tenancy::limits::TenantLimits;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router, middleware};
use error::ApiError;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The loaded modules: each tenant's journeys and buckets.
    pub modules: Arc<ModuleRegistry>,
    pub ingestor: Arc<Ingestor>,
    pub clock: Clock,
    /// Woken when the dev clock moves so due timers fire at once.
    pub scheduler_wake: Arc<Notify>,
    pub rate_limits: Arc<limits::RateLimits>,
    /// Every tenant's limits, as this host applies them.
    pub tenant_limits: Arc<TenantLimits>,
    /// Each tenant's ingest rate (events per second, per host).
    pub ingest_limits: Arc<limits::IngestLimits>,
    /// Woken when a bucket backfill is (re)started.
    pub backfill_wake: Arc<Notify>,
    /// Deploys, rollbacks and removals of modules.
    pub deployer: Arc<Deployer>,
    /// Seals tenants' transport secrets; absent when the host has no secrets key.
    pub secrets: Option<Arc<SecretBox>>,
}

#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Dev mode adds `POST /v1/admin/clock/advance`.
    pub dev: bool,
    pub max_body_bytes: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            dev: false,
            max_body_bytes: 1 << 20,
        }
    }
}

pub fn router(state: AppState, options: &ApiOptions) -> Router {
    let mut authenticated = Router::new()
        .route("/v1/events", post(events::ingest))
        .route("/v1/events/batch", post(events::ingest_batch))
        .route("/v1/contacts", put(contacts::upsert))
        .route("/v1/contacts/find", get(contacts::find))
        .route("/v1/contacts/{key}/events", get(contacts::events))
        .route(
            "/v1/contacts/{key}",
            get(contacts::detail).delete(contacts::delete),
        )
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::detail).delete(runs::cancel))
        .route("/v1/emails", get(runs::emails))
        .route("/v1/limits", get(tenant_limits::own))
        .route("/v1/usage", get(usage::own))
        .merge(buckets::routes())
        .merge(templates::routes())
        .merge(email_settings::routes())
        .merge(journeys::routes())
        .merge(modules::routes());
    if options.dev {
        authenticated = authenticated
            .route("/v1/admin/clock", get(admin::clock))
            .route("/v1/admin/clock/advance", post(admin::advance_clock))
            .route("/v1/admin/memory", get(admin::memory));
    }
    // Layers run last-added first: authentication, then the NUL check (see `nul`).
    let body_limit = options.max_body_bytes;
    let authenticated = authenticated.route_layer(middleware::from_fn(move |request, next| {
        nul::refuse_nul(body_limit, request, next)
    }));
    let authenticated = authenticated.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    // The operator's routes: operator keys only, never a tenant's (see `auth`).
    let operator = tenants::routes()
        .merge(tenant_limits::operator_routes())
        .merge(usage::operator_routes())
        .route_layer(middleware::from_fn(move |request, next| {
            nul::refuse_nul(body_limit, request, next)
        }))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate_operator,
        ));
    Router::new()
        .route("/v1/health", get(health))
        // No API key: the signed token in the link is the authority.
        .merge(unsubscribe::routes())
        .merge(authenticated)
        .merge(operator)
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}
