//! Between rows and records: the column lists and row mappers shared by the queries, the
//! filtering and paging shared by the list queries, and the parse/serialise helpers that report
//! unreadable values as corruption.

use crate::clock::Timestamp;
use crate::ids::{EmailId, RunId, TenantId};
use crate::journeys::RunStatus;
use crate::journeys::journal::{JournalEntry, StepKind};
use crate::store::{EmailRecord, EmailStatus, RunRecord, Scope, StoreError, StoreResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

/// List endpoints: the default page when the filter says 0, and the cap.
const DEFAULT_LIST_LIMIT: u32 = 100;
const MAX_LIST_LIMIT: u32 = 1000;

/// The columns [`run_from_row`] reads.
macro_rules! run_columns {
    () => {
        "id, tenant_id, journey_id, module_hash, contact_key, status, created_at, updated_at, \
         wake_at, activations, error"
    };
}
pub(super) use run_columns;

/// The columns [`email_from_row`] reads.
macro_rules! email_columns {
    () => {
        "id, tenant_id, run_id, contact_key, to_address, template, subject, body, status, \
         attempts, last_error, created_at, sent_at"
    };
}
pub(super) use email_columns;

fn list_limit(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    }
}

/// Narrows a list query to rows whose `column` equals `value`, when the filter names one.
pub(super) fn and_equals(
    query: &mut QueryBuilder<Sqlite>,
    column: &'static str,
    value: Option<&str>,
) {
    if let Some(value) = value {
        query
            .push(" AND ")
            .push(column)
            .push(" = ")
            .push_bind(value);
    }
}

/// Runs a list query as every list endpoint pages: newest first (the id breaking ties), at
/// most `limit` rows (0 for the default page, capped), each read by `from_row`.
pub(super) async fn fetch_newest_first<T>(
    pool: &SqlitePool,
    mut query: QueryBuilder<Sqlite>,
    limit: u32,
    from_row: fn(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(list_limit(limit)));
    query
        .build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub(super) fn run_from_row(row: &SqliteRow) -> StoreResult<RunRecord> {
    Ok(RunRecord {
        id: RunId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        journey_id: row.try_get("journey_id")?,
        module_hash: row.try_get("module_hash")?,
        contact_key: row.try_get("contact_key")?,
        status: parse_run_status(row.try_get("status")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        wake_at: row.try_get::<Option<i64>, _>("wake_at")?.map(Timestamp),
        activations: to_u32("run activations", row.try_get("activations")?)?,
        error: row.try_get("error")?,
    })
}

pub(super) fn journal_from_row(row: &SqliteRow) -> StoreResult<JournalEntry> {
    let kind: &str = row.try_get("kind")?;
    Ok(JournalEntry {
        seq: to_u32("journal seq", row.try_get("seq")?)?,
        kind: StepKind::parse(kind)
            .ok_or_else(|| StoreError::corrupt("journal step kind", format!("{kind:?}")))?,
        request: parse_json("journal request", row.try_get("request")?)?,
        response: parse_json("journal response", row.try_get("response")?)?,
        recorded_at: Timestamp(row.try_get("recorded_at")?),
    })
}

pub(super) fn email_from_row(row: &SqliteRow) -> StoreResult<EmailRecord> {
    let status: &str = row.try_get("status")?;
    Ok(EmailRecord {
        id: EmailId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        run_id: row.try_get::<Option<String>, _>("run_id")?.map(RunId),
        contact_key: row.try_get("contact_key")?,
        to: row.try_get("to_address")?,
        template: row.try_get("template")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: EmailStatus::parse(status)
            .ok_or_else(|| StoreError::corrupt("email status", format!("{status:?}")))?,
        attempts: to_u32("email attempts", row.try_get("attempts")?)?,
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(Timestamp),
    })
}

pub(super) fn parse_run_status(text: &str) -> StoreResult<RunStatus> {
    RunStatus::parse(text).ok_or_else(|| StoreError::corrupt("run status", format!("{text:?}")))
}

pub(super) fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn scopes_from_text(text: &str) -> StoreResult<Vec<Scope>> {
    text.split_whitespace()
        .map(|name| {
            Scope::parse(name)
                .ok_or_else(|| StoreError::corrupt("api key scope", format!("{name:?}")))
        })
        .collect()
}

pub(super) fn to_u32(what: &'static str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::corrupt(what, format!("{value} is out of range")))
}

pub(super) fn parse_json<T: DeserializeOwned>(what: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

pub(super) fn parse_object(what: &'static str, text: &str) -> StoreResult<Map<String, Value>> {
    match parse_json(what, text)? {
        Value::Object(map) => Ok(map),
        other => Err(StoreError::corrupt(
            what,
            format!("expected a JSON object, found {other}"),
        )),
    }
}

/// JSON for a TEXT column. Serialising these types cannot fail in practice (string-keyed maps
/// and derived structs); the error is reported rather than unwrapped all the same.
pub(super) fn to_json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(what, e))
}
