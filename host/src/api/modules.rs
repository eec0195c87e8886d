//! `/v1/modules`: the tenant's modules — deploy a version, list and inspect them, roll back,
//! remove, prune versions nobody needs. Always within the caller's tenant.
//!
//! | route | scope | answer |
//! |---|---|---|
//! | `POST /v1/modules/{name}` (or `POST /v1/modules?name=`), the component as the body | deploy | 201 (200 when already active) `{ module, version, revision, changed, changes }` |
//! | `GET /v1/modules` | read | `{ modules: [module] }` |
//! | `GET /v1/modules/{name}` | read | module + `versions` (each with its live runs) |
//! | `POST /v1/modules/{name}/rollback` `{version?}` | deploy | as a deploy; default: the version active before |
//! | `POST /v1/modules/{name}/verify`, a candidate as the body | deploy | the replay of every live run of the module against it, per journey: clean, diverged (step, recorded, called), journey missing, failed; nothing changes |
//! | `POST /v1/modules/{name}/upgrade`, a candidate as the body | deploy | a deploy, then the clean runs moved to it: the deploy's answer + `verification`, `migrated`, `movedOn` |
//! | `DELETE /v1/modules/{name}` | deploy | as a deploy: no new runs, live runs finish on their versions |
//! | `POST /v1/modules/{name}/prune` `{keep?}` | deploy | `{ pruned: [version] }`: versions neither active nor needed by a live run, but the `keep` (default 3) last active |
//!
//! The scope is checked before the body is read; the body is read up to the module size cap
//! (`--max-module-bytes`), not the API's JSON body limit.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, QueryParams};
use crate::modules::LoadedModule;
use crate::modules::deploy::Deployed;
use crate::store::{ModuleRecord, ModuleVersionRecord};
use crate::tenancy::Scope;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Versions kept by a prune when the request does not say.
const DEFAULT_PRUNE_KEEP: usize = 3;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/modules", get(list).post(deploy_named_in_query))
        .route(
            "/v1/modules/{name}",
            get(detail).post(deploy).delete(remove),
        )
        .route("/v1/modules/{name}/rollback", post(rollback))
        .route("/v1/modules/{name}/verify", post(verify))
        .route("/v1/modules/{name}/upgrade", post(upgrade))
        .route("/v1/modules/{name}/prune", post(prune))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameQuery {
    name: Option<String>,
}

pub async fn deploy_named_in_query(
    state: State<AppState>,
    principal: Extension<Principal>,
    QueryParams(query): QueryParams<NameQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = query
        .name
        .ok_or_else(|| ApiError::invalid_field("name", "give the module's name: ?name=…"))?;
    deploy(state, principal, Path(name), body).await
}

pub async fn deploy(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Deploy)?;
    let max = state.deployer.max_module_bytes;
    // One byte over the cap tells a body at the cap from one past it.
    let wasm = axum::body::to_bytes(body, max + 1).await.map_err(|_| {
        ApiError::PayloadTooLargeNamed(format!("the component is over the limit of {max} bytes"))
    })?;
    let deployed = state
        .deployer
        .deploy(
            &principal.tenant_id,
            &name,
            wasm.to_vec(),
            Some(principal.key_id.clone()),
        )
        .await?;
    Ok(deployed_view(&deployed, true))
}

/// The body of a deploy-like request, read up to the module size cap (after the scope check).
async fn component(state: &AppState, body: Body) -> Result<Vec<u8>, ApiError> {
    let max = state.deployer.max_module_bytes;
    // One byte over the cap tells a body at the cap from one past it.
    let wasm = axum::body::to_bytes(body, max + 1).await.map_err(|_| {
        ApiError::PayloadTooLargeNamed(format!("the component is over the limit of {max} bytes"))
    })?;
    Ok(wasm.to_vec())
}

pub async fn verify(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Deploy)?;
    let wasm = component(&state, body).await?;
    let verification = state
        .deployer
        .verify(&principal.tenant_id, &name, &wasm)
        .await?;
    Ok(Json(json!(verification)))
}

pub async fn upgrade(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Deploy)?;
    let wasm = component(&state, body).await?;
    let upgrade = state
        .deployer
        .upgrade(
            &principal.tenant_id,
            &name,
            wasm,
            Some(principal.key_id.clone()),
        )
        .await?;
    let (status, Json(mut answer)) = deployed_view(&upgrade.deployed, true);
    answer["verification"] = json!(upgrade.verification);
    answer["migrated"] = json!(upgrade.migrated);
    answer["movedOn"] = json!(upgrade.moved_on);
    Ok((status, Json(answer)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// A version's hash, or a prefix naming one version.
    version: Option<String>,
}

pub async fn rollback(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Deploy)?;
    let body: RollbackBody = optional_json(&body)?;
    let deployed = state
        .deployer
        .rollback(&principal.tenant_id, &name, body.version.as_deref())
        .await?;
    Ok(deployed_view(&deployed, false))
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Deploy)?;
    let deployed = state.deployer.remove(&principal.tenant_id, &name).await?;
    Ok(deployed_view(&deployed, false))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    keep: Option<usize>,
}

pub async fn prune(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Deploy)?;
    let body: PruneBody = optional_json(&body)?;
    let keep = body.keep.unwrap_or(DEFAULT_PRUNE_KEEP);
    if state
        .store
        .module_versions(&principal.tenant_id, &name)
        .await?
        .is_empty()
    {
        return Err(ApiError::NotFoundNamed(format!("no module named {name:?}")));
    }
    let pruned = state
        .store
        .prune_module_versions(&principal.tenant_id, &name, keep)
        .await?;
    Ok(Json(json!({ "module": name, "pruned": pruned })))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let set = state.store.module_set(&principal.tenant_id).await?;
    let active = state.modules.active_set(&principal.tenant_id);
    let modules: Vec<Value> = set
        .modules
        .iter()
        .map(|record| {
            let loaded = active
                .as_ref()
                .and_then(|set| set.modules.iter().find(|m| m.name == record.name));
            module_view(record, loaded.map(|m| m.as_ref()))
        })
        .collect();
    Ok(Json(
        json!({ "revision": set.revision, "modules": modules }),
    ))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let set = state.store.module_set(&principal.tenant_id).await?;
    let record = set
        .modules
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no module named {name:?}")))?;
    let versions = state
        .store
        .module_versions(&principal.tenant_id, &name)
        .await?;
    let active = state.modules.active_set(&principal.tenant_id);
    let loaded = active
        .as_ref()
        .and_then(|set| set.modules.iter().find(|m| m.name == name));
    let mut view = module_view(record, loaded.map(|m| m.as_ref()));
    view["versions"] = versions
        .iter()
        .map(|version| version_view(version, record.active_hash.as_deref()))
        .collect();
    Ok(Json(view))
}

/// An optional JSON body: empty is the default.
fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: "the JSON body does not match the expected shape".into(),
        details: Some(json!({ "reason": e.to_string() })),
    })
}

/// A change's answer: 201 when a deploy made a new version active, else 200.
fn deployed_view(deployed: &Deployed, created: bool) -> (StatusCode, Json<Value>) {
    let status = if created && deployed.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "module": deployed.module,
            "version": deployed.version,
            "revision": deployed.revision,
            "changed": deployed.changed,
            "changes": deployed.changes,
            "timings": {
                "validateMs": deployed.timings.validate.as_secs_f64() * 1e3,
                "commitMs": deployed.timings.commit.as_secs_f64() * 1e3,
                "swapUs": deployed.timings.swap.as_secs_f64() * 1e6,
            },
        })),
    )
}

/// A module with what its active version declares (as this host has it loaded).
fn module_view(record: &ModuleRecord, loaded: Option<&LoadedModule>) -> Value {
    let ids = |reactions: bool| -> Vec<&str> {
        loaded
            .map(|m| {
                m.manifest
                    .journeys
                    .iter()
                    .filter(|j| j.source_bucket_id.is_some() == reactions)
                    .map(|j| j.id.as_str())
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "name": record.name,
        "status": if record.active_hash.is_some() { "active" } else { "removed" },
        "activeVersion": record.active_hash,
        "origin": record.origin,
        "updatedAt": record.updated_at.to_rfc3339(),
        "journeys": ids(false),
        "reactions": ids(true),
        "buckets": loaded.map(|m| m.manifest.buckets.iter().map(|b| b.id.as_str()).collect::<Vec<_>>()).unwrap_or_default(),
        "templates": loaded.map(|m| m.manifest.templates.iter().map(|t| t.key.as_str()).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

fn version_view(version: &ModuleVersionRecord, active: Option<&str>) -> Value {
    json!({
        "version": version.hash,
        "active": Some(version.hash.as_str()) == active,
        "sizeBytes": version.size_bytes,
        "deployedBy": version.deployed_by,
        "deployedAt": version.deployed_at.to_rfc3339(),
        "activatedAt": version.activated_at.map(|t| t.to_rfc3339()),
        "liveRuns": version.live_runs,
    })
}
