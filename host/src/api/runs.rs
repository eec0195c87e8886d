//! Inspection: `GET /v1/runs`, `GET /v1/runs/{id}` (with the journal as a readable timeline)
//! and `GET /v1/emails`, with read scope; and `DELETE /v1/runs/{id}`, an admin cancel of a live
//! run (admin scope). Always within the caller's tenant.

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, QueryParams};
use crate::clock::Timestamp;
use crate::ids::RunId;
use crate::journeys::RunStatus;
use crate::journeys::journal::{JournalEntry, StepKind};
use crate::store::{CancelOutcome, EmailFilter, EmailRecord, RunFilter, RunRecord};
use crate::tenancy::Scope;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunQuery {
    journey: Option<String>,
    user_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailQuery {
    to: Option<String>,
    user_id: Option<String>,
    limit: Option<u32>,
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

pub fn run_view(run: &RunRecord) -> Value {
    json!({
        "id": run.id,
        "journeyId": run.journey_id,
        "moduleVersion": run.module_hash,
        "userId": run.contact_key,
        "status": run.status,
        "createdAt": run.created_at.to_rfc3339(),
        "updatedAt": run.updated_at.to_rfc3339(),
        "wakeAt": time(run.wake_at),
        "activations": run.activations,
        "error": run.error,
    })
}

/// Timeline steps a run's detail shows when the request does not say, and at most: a run
/// may hold ten thousand steps of up to 64 KiB each, far too much for one answer.
const DEFAULT_TIMELINE_STEPS: usize = 100;
const MAX_TIMELINE_STEPS: usize = 1_000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetailQuery {
    /// The first journal step shown (by its seq).
    from: Option<u32>,
    /// How many steps.
    limit: Option<usize>,
}

/// A page of the run's timeline: journal entries from step `from`, each with the time until
/// the next one (`elapsedMs`: for a sleep or a wait, how long the run was parked there).
fn timeline(journal: &[JournalEntry], from: usize, limit: usize) -> Vec<Value> {
    journal
        .iter()
        .enumerate()
        .skip(from)
        .take(limit)
        .map(|(i, entry)| timeline_entry(entry, journal.get(i + 1)))
        .collect()
}

/// Where the run is: the label of its latest checkpoint, sleep or wait.
fn current_step(journal: &[JournalEntry]) -> Option<&str> {
    journal.iter().rev().find_map(|entry| match entry.kind {
        StepKind::Checkpoint | StepKind::Sleep | StepKind::SleepUntil | StepKind::WaitForEvent => {
            entry.request["label"].as_str()
        }
        _ => None,
    })
}

/// One journal entry as a line of the run's timeline.
fn timeline_entry(entry: &JournalEntry, next: Option<&JournalEntry>) -> Value {
    let r = &entry.response;
    let q = &entry.request;
    let summary = match entry.kind {
        StepKind::Now | StepKind::WasiWallClock | StepKind::WasiMonotonicClock => {
            format!(
                "read the clock: {}",
                r.as_i64()
                    .map(|ms| Timestamp(ms).to_rfc3339())
                    .unwrap_or_else(|| r.to_string())
            )
        }
        StepKind::Random => format!("drew a random number: {r}"),
        StepKind::WasiRandom => format!("drew {} random bytes", q["len"]),
        StepKind::Sleep => format!(
            "{} — sleeps until {}",
            q["label"].as_str().unwrap_or("sleep"),
            r["wakeAt"]
                .as_i64()
                .map(|ms| Timestamp(ms).to_rfc3339())
                .unwrap_or_default()
        ),
        StepKind::SendEmail => match (r["ok"].as_str(), r["error"].as_str()) {
            (Some(id), _) if r["status"] == "suppressed" => format!(
                "recorded email {:?} as suppressed, not sent ({}; email {id})",
                q["template"].as_str().unwrap_or_default(),
                r["reason"].as_str().unwrap_or_default()
            ),
            (Some(id), _) => format!(
                "queued email {:?} (email {id})",
                q["template"].as_str().unwrap_or_default()
            ),
            (_, Some(error)) => format!(
                "could not queue email {:?}: {error}",
                q["template"].as_str().unwrap_or_default()
            ),
            _ => "send-email".to_owned(),
        },
        StepKind::SleepUntil => format!(
            "{} — sleeps until {}",
            q["label"].as_str().unwrap_or("sleep until"),
            r["wakeAt"]
                .as_i64()
                .map(|ms| Timestamp(ms).to_rfc3339())
                .unwrap_or_default()
        ),
        StepKind::WaitForEvent => format!(
            "{} — waits for {} until {}",
            q["label"].as_str().unwrap_or("wait"),
            q["event"],
            r["deadline"]
                .as_i64()
                .map(|ms| Timestamp(ms).to_rfc3339())
                .unwrap_or_default()
        ),
        StepKind::WaitResolved => match &r["event"] {
            Value::Object(event) => format!(
                "{} arrived (event {})",
                q["event"],
                event.get("id").unwrap_or(&Value::Null)
            ),
            _ => format!("timed out waiting for {}", q["event"]),
        },
        StepKind::Checkpoint => format!("checkpoint {}", q["label"]),
        StepKind::Trigger => format!("triggered {} for {}", q["name"], q["personKey"]),
        StepKind::UpdateContact => format!(
            "updated the contact's {}",
            q["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        StepKind::HistoryEventCount => format!(
            "counted {}'s {} events{}: {}",
            q["personKey"].as_str().unwrap_or("the person"),
            q["name"],
            q["sinceMs"]
                .as_i64()
                .map(|since| format!(" since {}", Timestamp(since).to_rfc3339()))
                .unwrap_or_default(),
            r["ok"]
        ),
        StepKind::HistoryJourney => format!(
            "looked up {}'s runs of {}: {}",
            q["personKey"].as_str().unwrap_or("the person"),
            q["journey"],
            r["ok"]
        ),
        StepKind::HistoryEmail => format!(
            "looked up the {} emails to {}: {}",
            q["template"], q["to"], r["ok"]
        ),
        StepKind::IsSubscribed => format!("asked whether the person accepts email: {r}"),
        StepKind::BucketCount | StepKind::BucketHas | StepKind::BucketMembers => {
            let bucket = q["bucket"].as_str().unwrap_or_default();
            match (&r["ok"], r["error"].as_str()) {
                (_, Some(error)) => format!("could not read bucket {bucket:?}: {error}"),
                (ok, _) => match entry.kind {
                    StepKind::BucketCount => format!("counted bucket {bucket:?}: {ok} members"),
                    StepKind::BucketHas => {
                        format!("asked whether {} is in bucket {bucket:?}: {ok}", q["key"])
                    }
                    _ => format!(
                        "read {} members of bucket {bucket:?}",
                        ok["members"].as_array().map_or(0, Vec::len)
                    ),
                },
            }
        }
    };
    json!({
        "seq": entry.seq,
        "step": entry.kind,
        "at": entry.recorded_at.to_rfc3339(),
        "elapsedMs": next.map(|next| next.recorded_at.0 - entry.recorded_at.0),
        "summary": summary,
        "request": entry.request,
        "response": entry.response,
    })
}

fn email_view(email: &EmailRecord) -> Value {
    json!({
        "id": email.id,
        "runId": email.run_id,
        "userId": email.contact_key,
        "to": email.to,
        "template": email.template,
        "subject": email.subject,
        "body": email.body,
        "html": email.html,
        "status": email.status,
        "suppressedReason": email.suppressed_reason,
        "attempts": email.attempts,
        "lastError": email.last_error,
        "createdAt": email.created_at.to_rfc3339(),
        "sentAt": time(email.sent_at),
    })
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<RunQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "status",
                    format!("{s:?} is not one of active, waiting, completed, failed, exited"),
                )
            })
        })
        .transpose()?;
    let filter = RunFilter {
        journey_id: query.journey,
        contact_key: query.user_id,
        status,
        limit: query.limit.unwrap_or(100),
        live_only: false,
    };
    let runs = state.store.list_runs(&principal.tenant_id, &filter).await?;
    Ok(Json(
        json!({ "runs": runs.iter().map(run_view).collect::<Vec<_>>() }),
    ))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<DetailQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let detail = state
        .store
        .run_detail(&principal.tenant_id, &RunId(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut view = run_view(&detail.run);
    view["input"] = json!(detail.input);
    view["currentStep"] = json!(current_step(&detail.journal));
    let from = page.from.unwrap_or(0) as usize;
    let limit = page
        .limit
        .unwrap_or(DEFAULT_TIMELINE_STEPS)
        .clamp(1, MAX_TIMELINE_STEPS);
    view["timeline"] = json!(timeline(&detail.journal, from, limit));
    let total = detail.journal.len();
    let next = (from + limit < total).then_some(from + limit);
    view["timelinePage"] = json!({ "from": from, "limit": limit, "total": total, "next": next });
    Ok(Json(view))
}

/// `DELETE /v1/runs/{id}`: the live run exits at once (its timer goes; an activation in
/// flight commits nothing). 404 for an unknown run, 409 for one already finished.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let run_id = RunId(id);
    match state
        .store
        .cancel_run(&principal.tenant_id, &run_id, state.clock.now())
        .await?
    {
        CancelOutcome::Cancelled { journey_id } => Ok(Json(json!({
            "id": run_id,
            "journeyId": journey_id,
            "status": RunStatus::Exited,
        }))),
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::Conflict(format!(
            "run {run_id} has already finished ({})",
            status.as_str()
        ))),
        CancelOutcome::NotFound => Err(ApiError::NotFoundNamed(format!("no run {run_id}"))),
    }
}

pub async fn emails(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<EmailQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let filter = EmailFilter {
        to: query
            .to
            .as_deref()
            .and_then(crate::contacts::normalize_email),
        contact_key: query.user_id,
        limit: query.limit.unwrap_or(100),
    };
    let emails = state
        .store
        .list_emails(&principal.tenant_id, &filter)
        .await?;
    Ok(Json(
        json!({ "emails": emails.iter().map(email_view).collect::<Vec<_>>() }),
    ))
}
