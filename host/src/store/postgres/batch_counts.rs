//! The event counts an ingest batch's bucket evaluations ask for, read for the whole batch in
//! one statement right after its locks instead of one per event.
//!
//! Which counts: for each item whose identity values all lead to one known person, the
//! queries of every bucket its event could change (the buckets the evaluation will consider,
//! or more). Each count is read as two parts so that every item's own window is answered
//! exactly: the events from the latest window start any item of the batch asks for, and the
//! times of those between the earliest and that one (a sliver: a batch's items arrive within
//! moments of each other).
//!
//! Exact, not a cache: the batch holds the person's locks, so no other writer stores their
//! events until the commit, and the batch's own events wait in memory (they are added by
//! [`PgTx::pending_events_matching`](super::tx::PgTx)). What would change the stored counts
//! under the batch forgets them all: history moved to another key (a merge or a new key), and
//! a batch that writes transitions as they happen reads none up front.

use crate::buckets::EventQuery;
use crate::ids::TenantId;
use crate::store::StoreResult;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

/// For each `(tenant, person, name, earliest, latest)` of the arrays `$1`…`$5` (`n` its
/// position): how many of the person's events of that name occurred from `latest` on (`c`),
/// and the times of those that occurred from `earliest` up to `latest` (`edge`), both from one
/// range walk of the person's events of that name from `earliest` on, as the per-event count
/// walks it.
const READ_COUNTS: &str = "SELECT q.n, r.c, r.edge \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) WITH ORDINALITY \
         AS q(tenant_id, contact_key, name, earliest, latest, n) \
     CROSS JOIN LATERAL (SELECT COUNT(*) FILTER (WHERE e.occurred_at >= q.latest) AS c, \
         COALESCE(array_agg(e.occurred_at) FILTER (WHERE e.occurred_at < q.latest), '{}') \
             AS edge \
         FROM events e WHERE e.tenant_id = q.tenant_id AND e.contact_key = q.contact_key \
         AND e.name = q.name AND e.occurred_at >= q.earliest) r";

/// A count the batch will ask for: a person's query over windows starting between
/// `earliest` and `latest`.
#[derive(Debug, Clone)]
pub(super) struct WantedCount {
    pub tenant: TenantId,
    pub contact_key: String,
    pub query: EventQuery,
    pub earliest: i64,
    pub latest: i64,
}

/// One count as read: events from `latest` on, and the times before it back to `earliest`.
#[derive(Debug)]
struct ReadCount {
    query: EventQuery,
    earliest: i64,
    latest: i64,
    from_latest: u64,
    edge: Vec<i64>,
}

impl ReadCount {
    /// The stored count of the query's window at `now`, if it starts within what was read.
    fn at(&self, now: i64) -> Option<u64> {
        let since = self.query.window_start(now).unwrap_or(i64::MIN);
        (self.earliest..=self.latest)
            .contains(&since)
            .then(|| self.from_latest + self.edge.iter().filter(|&&t| t >= since).count() as u64)
    }
}

#[derive(Default)]
pub(super) struct BatchCounts {
    /// By tenant, then person.
    read: HashMap<TenantId, HashMap<String, Vec<ReadCount>>>,
}

impl BatchCounts {
    /// The stored counts of `queries` for the person at `now`, in order, when every one was
    /// read.
    pub(super) fn answer(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: i64,
    ) -> Option<Vec<u64>> {
        let read = self.read.get(tenant)?.get(contact_key)?;
        queries
            .iter()
            .map(|query| read.iter().find(|r| r.query == *query)?.at(now))
            .collect()
    }

    /// Forget every count read (history moved between keys).
    pub(super) fn forget(&mut self) {
        self.read.clear();
    }

    /// Read `wanted` (distinct by person and query) in one statement.
    pub(super) async fn read(
        &mut self,
        conn: &mut PgConnection,
        wanted: Vec<WantedCount>,
    ) -> StoreResult<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(READ_COUNTS)
            .bind(wanted.iter().map(|w| w.tenant.as_str()).collect::<Vec<_>>())
            .bind(
                wanted
                    .iter()
                    .map(|w| w.contact_key.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                wanted
                    .iter()
                    .map(|w| w.query.event.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(wanted.iter().map(|w| w.earliest).collect::<Vec<_>>())
            .bind(wanted.iter().map(|w| w.latest).collect::<Vec<_>>())
            .fetch_all(conn)
            .await?;
        let mut wanted: Vec<Option<WantedCount>> = wanted.into_iter().map(Some).collect();
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let Some(w) = usize::try_from(n - 1)
                .ok()
                .and_then(|i| wanted.get_mut(i))
                .and_then(Option::take)
            else {
                continue;
            };
            let from_latest: i64 = row.try_get("c")?;
            self.read
                .entry(w.tenant)
                .or_default()
                .entry(w.contact_key)
                .or_default()
                .push(ReadCount {
                    query: w.query,
                    earliest: w.earliest,
                    latest: w.latest,
                    from_latest: u64::try_from(from_latest).unwrap_or(0),
                    edge: row.try_get("edge")?,
                });
        }
        Ok(())
    }
}

/// Gather what several items want into one [`WantedCount`] per person and query, its window
/// starts spanning every item's.
pub(super) fn merge_wanted(items: impl IntoIterator<Item = WantedCount>) -> Vec<WantedCount> {
    let mut merged: HashMap<(TenantId, String, EventQuery), (i64, i64)> = HashMap::new();
    for w in items {
        let span = merged
            .entry((w.tenant, w.contact_key, w.query))
            .or_insert((w.earliest, w.latest));
        span.0 = span.0.min(w.earliest);
        span.1 = span.1.max(w.latest);
    }
    merged
        .into_iter()
        .map(
            |((tenant, contact_key, query), (earliest, latest))| WantedCount {
                tenant,
                contact_key,
                query,
                earliest,
                latest,
            },
        )
        .collect()
}
