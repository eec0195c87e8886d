//! SQLite-only row plumbing: the list queries' shared filtering and paging, and the column
//! lists and mappings this dialect alone needs. The record mappers both backends share are in
//! `crate::store::rows`; parsing stored values is in `crate::store::codec`.

use crate::clock::Timestamp;
use crate::journeys::journal::JournalEntry;
use crate::store::StoreResult;
use crate::store::codec::parse_step_kind;
pub(super) use crate::store::codec::{
    count, list_limit, parse_json, parse_run_status, scopes_to_text, to_json, to_u32,
};
use rusqlite::types::Value;
use rusqlite::{Row, Transaction, params_from_iter};

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

/// A list query being built: its SQL and the values bound to its `?N` parameters, in order.
pub(super) struct ListQuery {
    sql: String,
    params: Vec<Value>,
}

impl ListQuery {
    /// A query starting with `sql` (which takes no parameters).
    pub(super) fn new(sql: &str) -> ListQuery {
        ListQuery {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
    }

    /// Append `sql` as is.
    pub(super) fn push(&mut self, sql: &str) -> &mut ListQuery {
        self.sql.push_str(sql);
        self
    }

    /// Append the next parameter's placeholder (`?N`), bound to `value`.
    pub(super) fn push_bind(&mut self, value: impl Into<Value>) -> &mut ListQuery {
        self.params.push(value.into());
        self.sql.push_str(&format!("?{}", self.params.len()));
        self
    }
}

/// Narrows a list query to rows whose `column` equals `value`, when the filter names one.
pub(super) fn and_equals(query: &mut ListQuery, column: &'static str, value: Option<&str>) {
    if let Some(value) = value {
        query
            .push(" AND ")
            .push(column)
            .push(" = ")
            .push_bind(value.to_owned());
    }
}

/// Runs a list query as every list endpoint pages: newest first (the id breaking ties), at
/// most `limit` rows (0 for the default page, capped), each read by `from_row`.
pub(super) fn fetch_newest_first<T>(
    tx: &Transaction<'_>,
    mut query: ListQuery,
    limit: u32,
    from_row: fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(list_limit(limit)));
    // A few shapes per list (one per combination of filters): cached like any statement.
    let mut statement = tx.prepare_cached(&query.sql)?;
    collect(statement.query(params_from_iter(&query.params))?, from_row)
}

pub(super) fn journal_from_row(row: &Row<'_>) -> StoreResult<JournalEntry> {
    Ok(JournalEntry {
        seq: to_u32("journal seq", row.get("seq")?)?,
        kind: parse_step_kind(&row.get::<_, String>("kind")?)?,
        request: parse_json("journal request", &row.get::<_, String>("request")?)?,
        response: parse_json("journal response", &row.get::<_, String>("response")?)?,
        recorded_at: Timestamp(row.get("recorded_at")?),
    })
}
