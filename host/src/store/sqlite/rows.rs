//! Between rows and records: the column lists and row mappers shared by the queries, and the
//! filtering and paging shared by the list queries. Parsing stored values (and reporting what
//! does not parse as corruption) is shared with the other backends, in `store::codec`.

use crate::clock::Timestamp;
use crate::ids::{EmailId, RunId, TenantId};
use crate::journeys::journal::JournalEntry;
pub(super) use crate::store::codec::{
    count, list_limit, parse_json, parse_object, parse_run_status, scopes_from_text,
    scopes_to_text, to_json, to_u32,
};
use crate::store::codec::{parse_email_status, parse_step_kind};
use crate::store::{EmailRecord, RunRecord, StoreResult};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

/// Every row of `rows`, each read by `from_row`.
pub(super) fn collect<T>(
    mut rows: rusqlite::Rows<'_>,
    from_row: impl Fn(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

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
    Ok(JournalEntry {
        seq: to_u32("journal seq", row.try_get("seq")?)?,
        kind: parse_step_kind(row.try_get("kind")?)?,
        request: parse_json("journal request", row.try_get("request")?)?,
        response: parse_json("journal response", row.try_get("response")?)?,
        recorded_at: Timestamp(row.try_get("recorded_at")?),
    })
}

pub(super) fn email_from_row(row: &SqliteRow) -> StoreResult<EmailRecord> {
    Ok(EmailRecord {
        id: EmailId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        run_id: row.try_get::<Option<String>, _>("run_id")?.map(RunId),
        contact_key: row.try_get("contact_key")?,
        to: row.try_get("to_address")?,
        template: row.try_get("template")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: parse_email_status(row.try_get("status")?)?,
        attempts: to_u32("email attempts", row.try_get("attempts")?)?,
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(Timestamp),
    })
}
