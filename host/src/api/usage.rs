//! Usage per tenant (see [`crate::usage`] for what counts): `GET /v1/usage`, a tenant's own,
//! with read scope; and the operator's views, with an operator key only —
//! `GET /v1/tenants/{id-or-name}/usage` (one tenant's, the same answer) and
//! `GET /v1/usage/tenants` (every tenant's totals). Each takes `from` and `to` (`YYYY-MM-DD`,
//! UTC days of the host clock, both included): by default the last 30 days, today included.

use super::AppState;
use super::auth::{Operator, Principal};
use super::error::{ApiError, QueryParams};
use super::tenants::resolve;
use crate::ids::TenantId;
use crate::tenancy::Scope;
use crate::usage::{Day, DayRange, DayUsage, UsageCounts};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The operator's routes (the tenant's is beside the other tenant routes).
pub fn operator_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/usage", get(of_tenant))
        .route("/v1/usage/tenants", get(every_tenant))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

impl RangeQuery {
    /// The days asked for; "today" is the host clock's.
    fn range(&self, state: &AppState) -> Result<DayRange, ApiError> {
        let today = Day::of(state.clock.now());
        Ok(DayRange::resolve(
            self.from.as_deref(),
            self.to.as_deref(),
            today,
        )?)
    }
}

fn counts_view(counts: &UsageCounts) -> Value {
    json!({
        "events": counts.events,
        "activations": counts.activations,
        "cpuMs": counts.cpu_ms(),
        "emailsSent": counts.emails_sent,
    })
}

/// The days that have some usage, and their total.
fn days_view(range: DayRange, days: &[DayUsage]) -> Value {
    let mut total = UsageCounts::default();
    let days: Vec<Value> = days
        .iter()
        .map(|day| {
            total.add(&day.counts);
            let mut view = counts_view(&day.counts);
            view["day"] = json!(day.day.to_string());
            view
        })
        .collect();
    json!({
        "from": range.from.to_string(),
        "to": range.to.to_string(),
        "days": days,
        "total": counts_view(&total),
    })
}

async fn usage_of(state: &AppState, tenant: &TenantId, range: DayRange) -> Result<Value, ApiError> {
    let days = state.store.usage_by_day(tenant, range).await?;
    Ok(days_view(range, &days))
}

/// `GET /v1/usage`: the caller's tenant's.
pub async fn own(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let range = query.range(&state)?;
    Ok(Json(usage_of(&state, &principal.tenant_id, range).await?))
}

/// `GET /v1/tenants/{id-or-name}/usage`: what the tenant itself sees.
pub async fn of_tenant(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    Path(reference): Path<String>,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let range = query.range(&state)?;
    let tenant = resolve(&state, &reference).await?;
    Ok(Json(usage_of(&state, &tenant.id, range).await?))
}

/// `GET /v1/usage/tenants`: every tenant's total over the range, oldest tenant first, those
/// with none included.
pub async fn every_tenant(
    State(state): State<AppState>,
    Extension(_): Extension<Operator>,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let range = query.range(&state)?;
    let tenants = state.store.usage_by_tenant(range).await?;
    let tenants: Vec<Value> = tenants
        .iter()
        .map(|(tenant, counts)| {
            json!({
                "id": tenant.id,
                "name": tenant.name,
                "total": counts_view(counts),
            })
        })
        .collect();
    Ok(Json(json!({
        "from": range.from.to_string(),
        "to": range.to.to_string(),
        "tenants": tenants,
    })))
}
