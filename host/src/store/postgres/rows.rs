//! PostgreSQL-only row plumbing: the list queries' shared filtering and paging, and the column
//! lists and mappings this dialect alone needs. The record mappers both backends share are in
//! `crate::store::rows`; parsing stored values is in `crate::store::codec`.

use crate::clock::Timestamp;
use crate::journeys::journal::JournalEntry;
use crate::store::StoreResult;
use crate::store::codec::{list_limit, parse_json, parse_step_kind, to_u32};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder};

/// The columns [`contact_from_row`] reads, qualified by the table alias `c`.
macro_rules! contact_columns {
    () => {
        "c.id, c.tenant_id, c.key, c.external_id, c.email, c.anonymous_id, \
         c.properties::text AS properties, c.first_seen_at, c.last_seen_at, c.deleted_at"
    };
}
pub(super) use contact_columns;

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
