//! `/v1/buckets`: the tenant's declared buckets with their membership counts, one bucket with
//! the journeys it feeds and its first members, keyset pages of members, and whether one
//! person is a member. Read scope; always within the caller's tenant. Counts and members only
//! ever include live contacts.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/buckets` | `{ buckets: [bucket + counts] }` |
//! | `GET /v1/buckets/{id}` | bucket + `counts`, `feeds` (journeys), `recentMembers` (latest 20 joins) |
//! | `GET /v1/buckets/{id}/members?limit=&cursor=` | `{ members, nextCursor, total }` |
//! | `GET /v1/buckets/{id}/members/{key}` | `{ member, entryCount?, enteredAt? }` |
//! | `POST /v1/buckets/{id}/backfill` (admin) | `202 { backfill }`: (re)start its backfill |
//!
//! A computed bucket's `backfill` (in its detail, and after a restart) is `{ state, mode,
//! done, total, joined, left, error, startedAt, finishedAt }` (`state` pending, running,
//! completed or failed; `mode` first-time or reeval; `done` of `total` live contacts scanned),
//! `null` before the host registered it; the list shows only `backfillState`.
//!
//! Member pages are in membership-id order (opaque, not chronological): `limit` defaults to
//! 50 and a larger one than 100 is clamped to 100; `nextCursor` is `null` on the last page.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, QueryParams};
use crate::buckets::{ANY_ENTERED_EVENT, ANY_LEFT_EVENT, BucketDef, entered_event, left_event};
use crate::ids::TenantId;
use crate::store::{
    BackfillStatus, BucketCounts, BucketFingerprint, BucketMember, MemberPage, MemberPageRequest,
};
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The read routes; the membership writes are added beside them.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/buckets", get(list))
        .route("/v1/buckets/{id}", get(detail))
        .route("/v1/buckets/{id}/members", get(members))
        .route("/v1/buckets/{id}/backfill", post(restart_backfill))
        .route(
            "/v1/buckets/{id}/members/{key}",
            get(membership)
                .post(super::memberships::add)
                .delete(super::memberships::remove),
        )
}

/// `?limit=&cursor=`, taken as text so a bad limit is refused naming the field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl MembersQuery {
    /// The page asked for: `limit` a whole number of at least 1 (over 100 is clamped by the
    /// store), `cursor` as given (an empty one is the first page).
    fn page(self) -> Result<MemberPageRequest, ApiError> {
        let limit = match self.limit.as_deref().map(str::trim) {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                _ => {
                    return Err(ApiError::invalid_field(
                        "limit",
                        format!(
                            "{text:?} is not a whole number of at least 1 (pages hold at most {})",
                            MemberPageRequest::MAX_LIMIT
                        ),
                    ));
                }
            },
        };
        Ok(MemberPageRequest {
            limit,
            cursor: self.cursor.filter(|c| !c.is_empty()),
        })
    }
}

/// The bucket `id` of the caller's tenant, or a 404 naming it.
fn find_bucket(state: &AppState, tenant: &TenantId, id: &str) -> Result<BucketDef, ApiError> {
    state
        .modules
        .bucket_registry(tenant)
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::NotFoundNamed(format!("no bucket {id:?} in this tenant")))
}

pub fn bucket_view(bucket: &BucketDef, counts: BucketCounts) -> Value {
    json!({
        "id": bucket.id,
        "name": bucket.name,
        "description": bucket.description,
        "enabled": bucket.enabled,
        "kind": bucket.kind,
        "criteria": bucket.criteria.as_ref().map(|c| c.to_json()),
        "timeBased": bucket.is_time_based(),
        "fastExpiry": bucket.fast_expiry,
        "minDwellMs": bucket.min_dwell_ms,
        "maxDwellMs": bucket.max_dwell_ms,
        "entryLimit": bucket.entry_limit,
        "counts": counts,
    })
}

pub fn member_view(member: &BucketMember) -> Value {
    json!({
        "id": member.id,
        "key": member.contact_key,
        "email": member.email,
        "enteredAt": member.entered_at.to_rfc3339(),
        "entryCount": member.entry_count,
    })
}

fn page_view(page: &MemberPage) -> Value {
    json!({
        "members": page.members.iter().map(member_view).collect::<Vec<_>>(),
        "nextCursor": page.next_cursor,
        "total": page.total,
    })
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let registry = state.modules.bucket_registry(&principal.tenant_id);
    let counts = state.store.bucket_counts(&principal.tenant_id).await?;
    let backfills = state.store.backfill_statuses(&principal.tenant_id).await?;
    let buckets: Vec<Value> = registry
        .all()
        .iter()
        .map(|b| {
            let mut view = bucket_view(b, counts.get(&b.id).copied().unwrap_or_default());
            view["backfillState"] =
                json!(backfill_of(b, &backfills).map(|status| status.state.as_str()));
            view
        })
        .collect();
    Ok(Json(json!({ "buckets": buckets })))
}

/// How many of the latest joins a bucket's detail shows.
const RECENT_MEMBERS: u32 = 20;

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let tenant = &principal.tenant_id;
    let bucket = find_bucket(&state, tenant, &id)?;
    let counts = state.store.bucket_counts_of(tenant, &id).await?;
    let recent = state
        .store
        .recent_members(tenant, &id, RECENT_MEMBERS)
        .await?;
    let backfills = state.store.backfill_statuses(tenant).await?;
    let mut view = bucket_view(&bucket, counts);
    view["backfill"] = backfill_view(backfill_of(&bucket, &backfills));
    view["feeds"] = json!(feeds(&state, tenant, &bucket));
    view["recentMembers"] = json!(recent.iter().map(member_view).collect::<Vec<_>>());
    Ok(Json(view))
}

/// The bucket's backfill status, for a bucket the host evaluates.
fn backfill_of<'a>(bucket: &BucketDef, all: &'a [BackfillStatus]) -> Option<&'a BackfillStatus> {
    if !bucket.is_evaluated() {
        return None;
    }
    all.iter().find(|status| status.bucket_id == bucket.id)
}

pub fn backfill_view(status: Option<&BackfillStatus>) -> Value {
    let Some(status) = status else {
        return Value::Null;
    };
    json!({
        "state": status.state,
        "mode": status.mode,
        "done": status.done,
        "total": status.total,
        "joined": status.joined,
        "left": status.left,
        "error": status.error,
        "startedAt": status.started_at.map(|t| t.to_rfc3339()),
        "finishedAt": status.finished_at.map(|t| t.to_rfc3339()),
    })
}

/// `POST /v1/buckets/{id}/backfill`: recompute the members of the bucket's current criteria
/// from the beginning (a failed backfill's retry); members who no longer match leave once a
/// first backfill completed.
pub async fn restart_backfill(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let tenant = &principal.tenant_id;
    let bucket = find_bucket(&state, tenant, &id)?;
    let Some(fingerprint) = bucket
        .criteria_fingerprint()
        .filter(|_| bucket.is_evaluated())
    else {
        return Err(ApiError::Conflict(format!(
            "bucket {id:?} is not an enabled computed bucket: there is nothing to backfill"
        )));
    };
    let status = state
        .store
        .restart_backfill(
            tenant,
            &BucketFingerprint {
                bucket_id: bucket.id.clone(),
                fingerprint,
            },
            state.clock.now(),
        )
        .await?;
    state.backfill_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": bucket.id, "backfill": backfill_view(Some(&status)) })),
    ))
}

/// The enabled journeys the bucket's transitions start: its own reactions and the journeys
/// bound to its transition events (or to every bucket's).
fn feeds(state: &AppState, tenant: &TenantId, bucket: &BucketDef) -> Vec<Value> {
    let triggers = [
        entered_event(&bucket.id),
        left_event(&bucket.id),
        ANY_ENTERED_EVENT.to_owned(),
        ANY_LEFT_EVENT.to_owned(),
    ];
    triggers
        .iter()
        .flat_map(|trigger| state.modules.triggered_by(tenant, trigger))
        .map(|(module, journey)| {
            let reaction = journey.source_bucket_id.as_deref() == Some(bucket.id.as_str());
            json!({
                "journeyId": journey.id,
                "name": journey.name,
                "module": module.name,
                "trigger": journey.trigger,
                "kind": if reaction { "reaction" } else { "binding" },
            })
        })
        .collect()
}

pub async fn members(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<MembersQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let page = query.page()?;
    find_bucket(&state, &principal.tenant_id, &id)?;
    let found = state
        .store
        .bucket_members(&principal.tenant_id, &id, &page)
        .await?;
    Ok(Json(page_view(&found)))
}

pub async fn membership(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    find_bucket(&state, &principal.tenant_id, &id)?;
    let found = state
        .store
        .bucket_membership(&principal.tenant_id, &id, &key)
        .await?;
    Ok(Json(match found {
        Some(m) => json!({
            "member": true,
            "entryCount": m.entry_count,
            "enteredAt": m.entered_at.to_rfc3339(),
        }),
        None => json!({ "member": false }),
    }))
}

/// A contact's current memberships, for its detail view.
pub fn memberships_view(memberships: &[crate::store::ActiveMembership]) -> Value {
    json!(
        memberships
            .iter()
            .map(|m| json!({
                "bucketId": m.bucket_id,
                "entryCount": m.entry_count,
                "enteredAt": m.entered_at.to_rfc3339(),
            }))
            .collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::BucketKind;
    use axum::response::IntoResponse;

    fn query(limit: Option<&str>, cursor: Option<&str>) -> MembersQuery {
        MembersQuery {
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn given_no_limit_when_parsed_then_the_store_default_applies() {
        let page = query(None, None).page().unwrap();
        assert_eq!(page, MemberPageRequest::default());
        assert_eq!(page.page_size(), 50);
    }

    #[test]
    fn given_a_limit_over_100_when_parsed_then_it_is_accepted_and_clamped_to_100() {
        for text in ["101", "5000", "99999999999"] {
            let page = query(Some(text), Some("0190-abc")).page().unwrap();
            assert_eq!(page.page_size(), 100, "{text}");
            assert_eq!(page.cursor.as_deref(), Some("0190-abc"));
        }
        assert_eq!(query(Some(" 7 "), None).page().unwrap().limit, Some(7));
    }

    #[test]
    fn given_a_bad_limit_when_parsed_then_a_400_names_the_field() {
        for text in ["0", "-3", "ten", "", "1.5"] {
            let error = query(Some(text), None).page().unwrap_err();
            let ApiError::BadRequest { message, details } = &error else {
                panic!("{text:?}: expected a bad request, got {error:?}");
            };
            assert!(message.starts_with("invalid limit"), "{message}");
            assert_eq!(details, &Some(json!({ "field": "limit" })));
            assert_eq!(error.into_response().status(), 400);
        }
    }

    #[test]
    fn given_an_empty_cursor_when_parsed_then_it_is_the_first_page() {
        assert_eq!(query(None, Some("")).page().unwrap().cursor, None);
    }

    #[test]
    fn given_an_unknown_bucket_when_reported_then_it_is_a_404_naming_it() {
        let error = ApiError::NotFoundNamed("no bucket \"vip\" in this tenant".into());
        assert_eq!(error.to_string(), "no bucket \"vip\" in this tenant");
        assert_eq!(error.into_response().status(), 404);
    }

    #[test]
    fn given_a_bucket_when_viewed_then_its_declaration_and_counts_are_shown() {
        let bucket = BucketDef {
            id: "vip".into(),
            name: "VIP".into(),
            description: None,
            enabled: true,
            kind: BucketKind::Manual,
            criteria: None,
            time_based: None,
            fast_expiry: false,
            min_dwell_ms: Some(1000),
            max_dwell_ms: None,
            entry_limit: crate::journeys::EntryLimit::Unlimited,
            reactions: vec![],
        };
        let view = bucket_view(&bucket, BucketCounts { active: 3, left: 1 });
        assert_eq!(view["kind"], json!("manual"));
        assert_eq!(view["criteria"], Value::Null);
        assert_eq!(view["timeBased"], json!(false));
        assert_eq!(view["minDwellMs"], json!(1000));
        assert_eq!(view["counts"], json!({ "active": 3, "left": 1 }));
    }
}
