//! Between PostgreSQL rows and records: the column lists (JSONB columns read as text, then
//! parsed by the shared codec) and row mappers, and the filtering and paging the list queries
//! share. Value conversions themselves are backend-agnostic, in `crate::store::codec`.

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, ContactId, EmailId, RunId, TenantId};
use crate::journeys::journal::JournalEntry;
use crate::store::codec::{
    list_limit, parse_email_status, parse_json, parse_object, parse_run_status, parse_step_kind,
    parse_suppressed_reason, scopes_from_text, to_u32,
};
use crate::store::{ApiKeyRecord, ContactRecord, EmailRecord, RunRecord, StoreResult, Tenant};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

/// The columns [`contact_from_row`] reads, qualified by the table alias `c`.
macro_rules! contact_columns {
    () => {
        "c.id, c.tenant_id, c.key, c.external_id, c.email, c.anonymous_id, \
         c.properties::text AS properties, c.first_seen_at, c.last_seen_at, c.deleted_at"
    };
}
pub(super) use contact_columns;

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
        "id, tenant_id, run_id, contact_key, to_address, template, subject, body, html_body, \
         status, suppressed_reason, attempts, last_error, created_at, sent_at"
    };
}
pub(super) use email_columns;

/// The columns [`api_key_from_row`] reads.
macro_rules! api_key_columns {
    () => {
        "id, tenant_id, name, scopes, created_at, revoked_at"
    };
}
pub(super) use api_key_columns;

/// Narrows a list query to rows whose `column` equals `value`, when the filter names one.
pub(super) fn and_equals(
    query: &mut QueryBuilder<Postgres>,
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
    pool: &PgPool,
    mut query: QueryBuilder<Postgres>,
    limit: u32,
    from_row: fn(&PgRow) -> StoreResult<T>,
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

pub(super) fn tenant_from_row(row: &PgRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(super) fn api_key_from_row(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: ApiKeyId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        scopes: scopes_from_text(row.try_get("scopes")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

pub(super) fn contact_from_row(row: &PgRow) -> StoreResult<ContactRecord> {
    Ok(ContactRecord {
        id: ContactId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        key: row.try_get("key")?,
        external_id: row.try_get("external_id")?,
        email: row.try_get("email")?,
        anonymous_id: row.try_get("anonymous_id")?,
        properties: parse_object("contact properties", row.try_get("properties")?)?,
        first_seen_at: Timestamp(row.try_get("first_seen_at")?),
        last_seen_at: Timestamp(row.try_get("last_seen_at")?),
        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(Timestamp),
    })
}

pub(super) fn run_from_row(row: &PgRow) -> StoreResult<RunRecord> {
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

/// A run's journal as `activation` reads it: one JSON array of
/// `[seq, kind, request, response, recorded_at]` rows in `seq` order, aggregated in the same
/// statement as the run so both come from one snapshot.
pub(super) fn journal_from_json(text: &str) -> StoreResult<Vec<JournalEntry>> {
    let rows: Vec<(i64, String, Value, Value, i64)> = parse_json("journal", text)?;
    rows.into_iter()
        .map(|(seq, kind, request, response, recorded_at)| {
            Ok(JournalEntry {
                seq: to_u32("journal seq", seq)?,
                kind: parse_step_kind(&kind)?,
                request,
                response,
                recorded_at: Timestamp(recorded_at),
            })
        })
        .collect()
}

pub(super) fn email_from_row(row: &PgRow) -> StoreResult<EmailRecord> {
    Ok(EmailRecord {
        id: EmailId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        run_id: row.try_get::<Option<String>, _>("run_id")?.map(RunId),
        contact_key: row.try_get("contact_key")?,
        to: row.try_get("to_address")?,
        template: row.try_get("template")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        html: row.try_get("html_body")?,
        suppressed_reason: parse_suppressed_reason(
            row.try_get::<Option<String>, _>("suppressed_reason")?,
        )?,
        status: parse_email_status(row.try_get("status")?)?,
        attempts: to_u32("email attempts", row.try_get("attempts")?)?,
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(Timestamp),
    })
}
