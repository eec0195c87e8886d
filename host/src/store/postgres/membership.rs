//! Implements [`crate::store::ManualMemberships`] and the bucket membership primitives
//! ([`crate::buckets::membership::MembershipTx`]).
//!
//! The PostgreSQL side of bucket membership: [`MembershipTx`] over the ingest transaction's
//! [`PgTx`], and manual membership changes.
//!
//! Round trips are this backend's cost, so ingest's evaluation reads a person's counts and
//! active memberships in one statement, remembers the memberships for the rest of its
//! transaction (and knows a person it created has none), and numbers and inserts a join in
//! one statement.
//!
//! Concurrency: ingest holds the person's contact lock, as does every other writer of
//! memberships, so two transactions evaluating one person run one after the other and what
//! the transaction remembers stays true; the partial unique index on active rows (`ON
//! CONFLICT DO NOTHING`) and the compare-and-swap on leave are the final guards, and a
//! transition's event is stored once on its deterministic key
//! ([`PgTx::insert_transition_event`]).

use super::PgStore;
use super::deferred_joins::{DeferredJoin, DeferredLeave};
use super::tx::PgTx;
use crate::buckets::membership::{
    ActiveMembership, MembershipHistory, MembershipTx, NewMembership,
};
use crate::buckets::{BucketDef, EventCounts, EventQuery, LeaveReason};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::ManualMemberships;
use crate::store::codec::to_u32;
use crate::store::flows;
use crate::store::rows::active_membership_from_row;
use crate::store::{IngestRouting, ManualChangeOutcome, MembershipChange, StoreResult};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::sync::Arc;

/// For each `(name, since)` of the arrays `$3`, `$4`: how many events of that name the person
/// `$2` of tenant `$1` has from `since` on (`n` the query's position, `c` the count), shaped to
/// be followed by `UNION ALL` of the person's active memberships (the other four columns).
macro_rules! count_person_events {
    () => {
        "SELECT q.n, (SELECT COUNT(*) FROM events e WHERE e.tenant_id = $1 \
             AND e.contact_key = $2 AND e.name = q.name AND e.occurred_at >= q.since) AS c, \
             NULL::text AS id, NULL::text AS bucket_id, NULL::int8 AS entry_count, \
             NULL::int8 AS entered_at \
         FROM unnest($3::text[], $4::int8[]) WITH ORDINALITY AS q(name, since, n)"
    };
}

/// [`count_person_events`], for the tests that look at its plan.
#[cfg(test)]
pub(super) const COUNT_PERSON_EVENTS: &str = count_person_events!();

/// The active memberships of the person `$2` of tenant `$1`. The person's rows are found on
/// `bucket_memberships_by_contact` and only then filtered by status (`OFFSET 0` fences the
/// subquery): a test on status beside the tenant would let the planner pick one of the partial
/// indexes of active rows and walk every member of the tenant, as it does with a generic plan
/// made before the table has statistics (measured: 1.2 ms a read instead of 0.02 ms).
macro_rules! active_of_person {
    () => {
        "SELECT id, bucket_id, entry_count, entered_at FROM (\
             SELECT id, bucket_id, entry_count, entered_at, status FROM bucket_memberships \
             WHERE tenant_id = $1 AND contact_key = $2 OFFSET 0) p \
         WHERE status = 'active'"
    };
}

/// The `$3`, `$4` arrays of [`count_person_events`].
fn count_arrays(queries: &[EventQuery], now: Timestamp) -> (Vec<&str>, Vec<i64>) {
    queries
        .iter()
        .map(|q| {
            let since = q.window_start(now.0).unwrap_or(i64::MIN);
            (q.event.as_str(), since)
        })
        .unzip()
}

impl PgTx<'_> {
    /// Run `sql`, a statement starting with [`count_person_events`], for the person and the
    /// queries' arrays.
    async fn person_counts_query(
        &mut self,
        sql: &'static str,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<Vec<PgRow>> {
        let (names, since) = count_arrays(queries, now);
        Ok(sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(contact_key)
            .bind(&names)
            .bind(&since)
            .fetch_all(self.conn())
            .await?)
    }

    /// The counts [`count_person_events`] answered, plus the events this transaction stored
    /// but writes only at its end.
    fn counts_from_rows(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
        rows: &[&PgRow],
    ) -> StoreResult<EventCounts> {
        let mut counts = EventCounts::with_capacity(queries.len());
        for row in rows {
            let n: i64 = row.try_get("n")?;
            let stored: i64 = row.try_get("c")?;
            if let Some(query) = usize::try_from(n - 1).ok().and_then(|i| queries.get(i)) {
                let since = query.window_start(now.0).unwrap_or(i64::MIN);
                let pending =
                    self.pending_events_matching(tenant, contact_key, &query.event, since);
                let total = u64::try_from(stored).unwrap_or(0) + pending;
                counts.insert(query.clone(), total);
            }
        }
        Ok(counts)
    }
}

impl PgTx<'_> {
    /// The counts the batch read up front ([`super::batch_counts`]), plus the events it stored
    /// but writes only at its end; `None` when some query was not read.
    fn counts_read_up_front(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> Option<EventCounts> {
        let stored = self.counts.answer(tenant, contact_key, queries, now.0)?;
        let mut counts = EventCounts::with_capacity(queries.len());
        for (query, stored) in queries.iter().zip(stored) {
            let since = query.window_start(now.0).unwrap_or(i64::MIN);
            let pending = self.pending_events_matching(tenant, contact_key, &query.event, since);
            counts.insert(query.clone(), stored + pending);
        }
        Some(counts)
    }
}

impl MembershipTx for PgTx<'_> {
    async fn event_counts(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<EventCounts> {
        if let Some(counts) = self.counts_read_up_front(tenant, contact_key, queries, now) {
            return Ok(counts);
        }
        let rows = self
            .person_counts_query(count_person_events!(), tenant, contact_key, queries, now)
            .await?;
        let rows: Vec<&PgRow> = rows.iter().collect();
        self.counts_from_rows(tenant, contact_key, queries, now, &rows)
    }

    async fn active_memberships(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>> {
        if let Some(active) = self.deferred_joins.active_of(tenant, contact_key) {
            return Ok(active);
        }
        if let Some(known) = self.memberships.get(tenant, contact_key) {
            return Ok(known.to_vec());
        }
        let rows = sqlx::query(active_of_person!())
            .bind(tenant.as_str())
            .bind(contact_key)
            .fetch_all(self.conn())
            .await?;
        let active = rows
            .iter()
            .map(active_membership_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        self.memberships.put(tenant, contact_key, &active);
        Ok(active)
    }

    /// The counts and the active memberships in one statement (one round trip), unless the
    /// memberships are known.
    async fn evaluation_reads(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<(EventCounts, Vec<ActiveMembership>)> {
        let known = self.memberships.get(tenant, contact_key).is_some()
            || self.deferred_joins.holds(tenant, contact_key);
        let counted = self
            .counts_read_up_front(tenant, contact_key, queries, now)
            .is_some();
        if queries.is_empty() || known || counted {
            let counts = if queries.is_empty() {
                EventCounts::new()
            } else {
                self.event_counts(tenant, contact_key, queries, now).await?
            };
            return Ok((counts, self.active_memberships(tenant, contact_key).await?));
        }
        let sql = concat!(
            count_person_events!(),
            " UNION ALL SELECT NULL, NULL, m.* FROM (",
            active_of_person!(),
            ") m"
        );
        let rows = self
            .person_counts_query(sql, tenant, contact_key, queries, now)
            .await?;
        let mut active = Vec::new();
        let mut count_rows = Vec::with_capacity(queries.len());
        for row in &rows {
            match row.try_get::<Option<i64>, _>("n")? {
                Some(_) => count_rows.push(row),
                None => active.push(active_membership_from_row(row)?),
            }
        }
        let counts = self.counts_from_rows(tenant, contact_key, queries, now, &count_rows)?;
        self.memberships.put(tenant, contact_key, &active);
        Ok((counts, active))
    }

    async fn insert_next_membership(
        &mut self,
        m: &NewMembership,
    ) -> StoreResult<Option<MembershipHistory>> {
        // A person this transaction created: their rows are all in memory, written with the
        // batch's events.
        let history = match self.deferred_joins.join(m) {
            DeferredJoin::Joined(history) => Some(history),
            DeferredJoin::AlreadyMember => None,
            DeferredJoin::NotHere => self.insert_stored_membership(m).await?,
        };
        if let Some(history) = &history {
            self.memberships.joined(
                &m.tenant_id,
                &m.contact_key,
                ActiveMembership {
                    id: m.id.clone(),
                    bucket_id: m.bucket_id.clone(),
                    entry_count: history.next_epoch(),
                    entered_at: m.entered_at,
                },
            );
        }
        Ok(history)
    }

    async fn leave_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        reason: LeaveReason,
    ) -> StoreResult<bool> {
        let left = match self.deferred_joins.leave(tenant, membership_id, at, reason) {
            DeferredLeave::NotActive => return Ok(false),
            DeferredLeave::Left(contact_key) => Some(contact_key),
            DeferredLeave::NotHere => self.leave_stored(tenant, membership_id, at, reason).await?,
        };
        let Some(contact_key) = left else {
            return Ok(false);
        };
        self.memberships.left(tenant, &contact_key, membership_id);
        Ok(true)
    }

    async fn touch_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        if self
            .deferred_joins
            .touch(tenant, membership_id, at, expires_at)
        {
            return Ok(());
        }
        sqlx::query(
            "UPDATE bucket_memberships SET last_evaluated_at = $1, \
             expires_at = COALESCE($2, expires_at) \
             WHERE tenant_id = $3 AND id = $4 AND status = 'active'",
        )
        .bind(at.0)
        .bind(expires_at.map(|t| t.0))
        .bind(tenant.as_str())
        .bind(membership_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl PgTx<'_> {
    /// Read the active memberships of all `people` in one statement and remember them for
    /// the rest of the transaction, which must hold their contact locks: every writer of
    /// memberships holds the person's, so the answers stay true until the commit, and each
    /// person's evaluations need no read of their own.
    pub(super) async fn remember_memberships(
        &mut self,
        people: &[(TenantId, String)],
    ) -> StoreResult<()> {
        if people.is_empty() {
            return Ok(());
        }
        let (tenants, keys): (Vec<&str>, Vec<&str>) = people
            .iter()
            .map(|(tenant, key)| (tenant.as_str(), key.as_str()))
            .unzip();
        let rows = sqlx::query(
            "SELECT p.n, m.id, m.bucket_id, m.entry_count, m.entered_at \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS p(tenant_id, contact_key, n) \
             CROSS JOIN LATERAL (SELECT id, bucket_id, entry_count, entered_at FROM (\
                 SELECT id, bucket_id, entry_count, entered_at, status FROM bucket_memberships \
                 WHERE tenant_id = p.tenant_id AND contact_key = p.contact_key OFFSET 0) x \
             WHERE status = 'active') m",
        )
        .bind(&tenants)
        .bind(&keys)
        .fetch_all(self.conn())
        .await?;
        let mut active: Vec<Vec<ActiveMembership>> = vec![Vec::new(); people.len()];
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            if let Some(person) = usize::try_from(n - 1).ok().and_then(|i| active.get_mut(i)) {
                person.push(active_membership_from_row(row)?);
            }
        }
        for ((tenant, key), memberships) in people.iter().zip(&active) {
            self.memberships.put(tenant, key, memberships);
        }
        Ok(())
    }
}

/// Joins and leaves of the rows in the table (not [`super::deferred_joins`]).
impl PgTx<'_> {
    /// Number and insert a membership in one statement: the history it was numbered from,
    /// or `None` when the person already is a member.
    async fn insert_stored_membership(
        &mut self,
        m: &NewMembership,
    ) -> StoreResult<Option<MembershipHistory>> {
        // The epoch is numbered from the rows the statement sees (`next_epoch`: 1 + every
        // earlier row).
        let row = sqlx::query(
            "WITH history AS (\
                 SELECT COUNT(*) AS n, MAX(left_at) AS last_left FROM bucket_memberships \
                 WHERE tenant_id = $2 AND contact_key = $4 AND bucket_id = $3), \
             inserted AS (\
                 INSERT INTO bucket_memberships (id, tenant_id, bucket_id, contact_key, status, \
                 entry_count, source, entered_at, expires_at, max_dwell_at, \
                 last_evaluated_at, updated_at) \
                 SELECT $1, $2, $3, $4, 'active', history.n + 1, $5, $6, $7, $8, $6, $6 \
                 FROM history \
                 ON CONFLICT (tenant_id, bucket_id, contact_key) WHERE status = 'active' \
                 DO NOTHING RETURNING 1) \
             SELECT history.n, history.last_left, EXISTS (SELECT 1 FROM inserted) AS inserted \
             FROM history",
        )
        .bind(&m.id)
        .bind(m.tenant_id.as_str())
        .bind(&m.bucket_id)
        .bind(&m.contact_key)
        .bind(m.source.as_str())
        .bind(m.entered_at.0)
        .bind(m.expires_at.map(|t| t.0))
        .bind(m.max_dwell_at.map(|t| t.0))
        .fetch_one(self.conn())
        .await?;
        if !row.try_get::<bool, _>("inserted")? {
            // Already a member, which the cache did not know: it forgets the person.
            self.memberships.forget(&m.tenant_id, &m.contact_key);
            return Ok(None);
        }
        Ok(Some(MembershipHistory {
            rows: to_u32("membership count", row.try_get("n")?)?,
            last_left_at: row.try_get::<Option<i64>, _>("last_left")?.map(Timestamp),
        }))
    }

    /// Close a stored membership: the person's key, when it was active.
    async fn leave_stored(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        reason: LeaveReason,
    ) -> StoreResult<Option<String>> {
        let left: Option<String> = sqlx::query_scalar(
            "UPDATE bucket_memberships SET status = 'left', left_at = $1, leave_reason = $2, \
             last_evaluated_at = $1, updated_at = $1 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'active' RETURNING contact_key",
        )
        .bind(at.0)
        .bind(reason.as_str())
        .bind(tenant.as_str())
        .bind(membership_id)
        .fetch_optional(self.conn())
        .await?;
        Ok(left)
    }
}

#[async_trait]
impl ManualMemberships for PgStore {
    /// [`crate::store::ManualMemberships::change_membership`]: a manual join or leave under the person's
    /// contact lock, and its transition ingested like real-time ones.
    async fn change_membership(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        key: &str,
        change: MembershipChange,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ManualChangeOutcome> {
        let mut tx = self.pool.begin().await?;
        let mut pg = PgTx::new(&mut tx);
        let summary = flows::contacts::change_membership(
            &mut pg,
            tenant,
            key,
            bucket,
            change,
            now,
            routing.as_ref(),
        )
        .await?;
        pg.write_events().await?.all()?;
        tx.commit().await?;
        Ok(summary)
    }
}
