//! Implements [`crate::store::Reconciles`] and the reconcile primitives
//! ([`crate::buckets::reconcile_rules::ReconcileTx`], [`crate::store::flows::NextWorkReads`]).
//!
//! The PostgreSQL side of the reconcile job: [`ReconcileTx`] over [`PgTx`] (each pass is one
//! transaction, its transitions ingested in it), the lower bound on when a bucket next has
//! clock-driven work, and the per-tenant lease that keeps two hosts from reconciling one
//! tenant at once.
//!
//! Concurrency: before changing a person's membership a pass takes the person's contact lock
//! (the one ingest takes), so a pass and an ingest of the same person run one after the other.
//! It takes the locks of the people it moves together, in id order like an ingest batch
//! ([`ReconcileTx::lock_people`]), so the two never wait on each other in a cycle; members who
//! still match are marked evaluated without locking their contacts, skipping rows another
//! transaction holds ([`ReconcileTx::mark_evaluated`]). The membership compare-and-swaps and
//! the transitions' deterministic keys make a pass that runs twice (two hosts, a retry)
//! harmless. A transaction aborted to break a deadlock is run again.

use super::identity::live_by_key;
use super::tx::PgTx;
use super::{MAX_ATTEMPTS, PgStore, is_transient};
use crate::buckets::absence::{AbsenceCursor, AbsenceRow, window_ms};
use crate::buckets::reconcile_rules::{MemberSelection, Pass, ReconcileMember, ReconcileTx};
use crate::buckets::{BucketDef, DwellSchedule, EventQuery};
use crate::clock::Timestamp;
use crate::contacts::{IdentityKey, IdentityKind};
use crate::ids::TenantId;
use crate::store::Reconciles;
use crate::store::flows;
use crate::store::flows::{Earliest, MemberFilterSql, NextWorkReads, member_page};
use crate::store::rows::{
    absence_cursor_from_row, absence_row_from_row, reconcile_member_from_row,
};
use crate::store::{IngestRouting, Lease, ReconcileClaim, ReconcileReport, StoreResult};
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use std::sync::Arc;

/// The membership columns [`reconcile_member_from_row`] reads, `m` being the membership and `c` its
/// live contact.
///
/// Pages over it order by one indexed column alone (`last_evaluated_at`, `max_dwell_at`,
/// `expires_at`): a tiebreaker outside the index would sort every row sharing the first row's
/// instant — a bulk join stamps thousands alike — on every page.
///
/// Each member's contact is one lookup on the full key of `contacts_live_key` (`live_contact_of`).
const MEMBER_SELECT: &str = concat!(
    "SELECT m.id, m.bucket_id, m.entry_count, m.entered_at, \
     m.contact_key, c.properties::text AS properties, \
     COALESCE(m.dwell_anchor_at, m.entered_at) AS anchor, m.dwell_state \
     FROM bucket_memberships m ",
    live_contact_of!("m", "c.properties"),
    " WHERE m.tenant_id = $1 AND m.bucket_id = $2 AND m.status = 'active'"
);

/// The page filter's dialect: the stamp is the schedule's label `$5` of `dwell_state`.
const MEMBER_FILTER: MemberFilterSql = MemberFilterSql {
    cutoff: "$4",
    stamp: "(m.dwell_state::jsonb ->> $5)",
    stamp_number: "(m.dwell_state::jsonb ->> $5)::int8",
};

fn members_from_rows(rows: &[PgRow]) -> StoreResult<Vec<ReconcileMember>> {
    rows.iter().map(reconcile_member_from_row).collect()
}

impl ReconcileTx for PgTx<'_> {
    async fn lock_person(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        properties: &mut Map<String, Value>,
    ) -> StoreResult<bool> {
        match live_by_key(self.conn(), tenant, contact_key, true).await? {
            Some(contact) if contact.key == contact_key => {
                *properties = contact.properties;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The contacts the keys designate through their key column (or an alias of a former
    /// key), locked in id order like an ingest batch's.
    async fn lock_people(&mut self, tenant: &TenantId, contact_keys: &[&str]) -> StoreResult<()> {
        let keys: Vec<IdentityKey> = contact_keys
            .iter()
            .map(|key| IdentityKey {
                kind: IdentityKind::Key,
                value: (*key).to_owned(),
            })
            .collect();
        let values: Vec<(&TenantId, &IdentityKey)> = keys.iter().map(|key| (tenant, key)).collect();
        self.lock_designated(&values).await.map(|_| ())
    }

    async fn first_backfill_pending(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM bucket_configs WHERE tenant_id = $1 \
             AND bucket_id = $2 AND criteria_hash IS NULL)",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .fetch_one(self.conn())
        .await?)
    }

    async fn members(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        which: MemberSelection,
        limit: u32,
    ) -> StoreResult<Vec<ReconcileMember>> {
        let (filter, order) = member_page(which, &MEMBER_FILTER);
        let sql = format!("{MEMBER_SELECT} {filter} ORDER BY {order} LIMIT $3");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(bucket_id)
            .bind(i64::from(limit));
        if let Some(cutoff) = which.cutoff() {
            query = query.bind(cutoff);
        }
        if let MemberSelection::DueDwell { schedule, .. } = which {
            query = query.bind(schedule.label());
        }
        let rows = query.fetch_all(self.conn()).await?;
        members_from_rows(&rows)
    }

    async fn absence_cursor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
    ) -> StoreResult<Option<AbsenceCursor>> {
        sqlx::query(
            "SELECT after_at, after_id FROM bucket_absence_cursors WHERE tenant_id = $1 \
             AND bucket_id = $2 AND event_name = $3 AND within_ms = $4",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(&leg.event)
        .bind(window_ms(leg))
        .fetch_optional(self.conn())
        .await?
        .as_ref()
        .map(absence_cursor_from_row)
        .transpose()
    }

    async fn save_absence_cursor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
        cursor: &AbsenceCursor,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO bucket_absence_cursors \
             (tenant_id, bucket_id, event_name, within_ms, after_at, after_id) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, bucket_id, event_name, within_ms) \
             DO UPDATE SET after_at = excluded.after_at, after_id = excluded.after_id",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(&leg.event)
        .bind(window_ms(leg))
        .bind(cursor.after_at)
        .bind(&cursor.after_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn backfill_started_at(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<Option<Timestamp>> {
        let started: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT backfill_started_at FROM bucket_configs WHERE tenant_id = $1 \
             AND bucket_id = $2 AND backfill_state = 'completed'",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .fetch_optional(self.conn())
        .await?;
        Ok(started.flatten().map(Timestamp))
    }

    async fn absence_scan(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
        from: &AbsenceCursor,
        until: i64,
        max_rows: u32,
    ) -> StoreResult<Vec<AbsenceRow>> {
        // events_by_name (tenant, name COLLATE "C", occurred_at, id) seeks to the cursor and
        // reads in its order. A person's later event of the name (events_by_contact) or an active
        // membership makes the row no candidate.
        let rows = sqlx::query(concat!(
            "SELECT e.occurred_at, e.id, e.contact_key, \
                 NOT EXISTS (SELECT 1 FROM events l WHERE l.tenant_id = $1 \
                     AND l.contact_key = e.contact_key AND l.name = $2 \
                     AND l.occurred_at >= e.occurred_at \
                     AND (l.occurred_at > e.occurred_at OR l.id > e.id)) \
                 AND NOT EXISTS (SELECT 1 FROM bucket_memberships m WHERE m.tenant_id = $1 \
                     AND m.bucket_id = $3 AND m.contact_key = e.contact_key \
                     AND m.status = 'active') AS candidate, \
                 c.properties::text AS properties \
             FROM events e ",
            live_contact_of!("e", "c.properties"),
            " WHERE e.tenant_id = $1 AND e.name COLLATE \"C\" = $2 \
                 AND (e.occurred_at, e.id) > ($4, $5) \
                 AND e.occurred_at < $6 \
             ORDER BY e.occurred_at, e.id LIMIT $7"
        ))
        .bind(tenant.as_str())
        .bind(&leg.event)
        .bind(bucket_id)
        .bind(from.after_at)
        .bind(&from.after_id)
        .bind(until)
        .bind(i64::from(max_rows))
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(absence_row_from_row).collect()
    }

    async fn mark_evaluated(
        &mut self,
        tenant: &TenantId,
        membership_ids: &[&str],
        at: Timestamp,
        disarm_expiry: bool,
    ) -> StoreResult<()> {
        if membership_ids.is_empty() {
            return Ok(());
        }
        // Each id is one fenced primary-key lookup, locking its row unless another transaction
        // holds it (skipped: the pass never waits); the update then takes the locked rows by
        // their physical address. A join on `id` instead was planned, on stale statistics, as
        // a nested loop over every active member of the tenant.
        sqlx::query(
            "UPDATE bucket_memberships SET last_evaluated_at = $1, \
             expires_at = CASE WHEN $4 THEN NULL ELSE expires_at END \
             WHERE ctid = ANY(ARRAY(\
                 SELECT f.ctid FROM unnest($3::text[]) AS ids(id) \
                 CROSS JOIN LATERAL (SELECT ctid, tenant_id, status FROM bucket_memberships \
                     WHERE id = ids.id OFFSET 0 FOR UPDATE SKIP LOCKED) f \
                 WHERE f.tenant_id = $2 AND f.status = 'active'))",
        )
        .bind(at.0)
        .bind(tenant.as_str())
        .bind(membership_ids)
        .bind(disarm_expiry)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn stamp_dwell(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        label: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let stamped = sqlx::query(
            "UPDATE bucket_memberships SET dwell_state = \
             jsonb_set(dwell_state::jsonb, ARRAY[$1::text], to_jsonb($2::int8))::text, \
             last_evaluated_at = $2, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'active'",
        )
        .bind(label)
        .bind(at.0)
        .bind(tenant.as_str())
        .bind(membership_id)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(stamped > 0)
    }
}

impl NextWorkReads for PgTx<'_> {
    async fn earliest(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        which: Earliest<'_>,
    ) -> StoreResult<Option<i64>> {
        let query = match which {
            Earliest::EventSince { event, since } => sqlx::query_scalar(
                "SELECT MIN(occurred_at) FROM events WHERE tenant_id = $1 \
                 AND name COLLATE \"C\" = $2 AND occurred_at >= $3",
            )
            .bind(tenant.as_str())
            .bind(event)
            .bind(since),
            Earliest::MaxDwell => sqlx::query_scalar(
                "SELECT MIN(max_dwell_at) FROM bucket_memberships WHERE tenant_id = $1 \
                 AND bucket_id = $2 AND status = 'active' AND max_dwell_at IS NOT NULL",
            )
            .bind(tenant.as_str())
            .bind(bucket_id),
            Earliest::ExpiryAfter { after } => sqlx::query_scalar(
                "SELECT MIN(expires_at) FROM bucket_memberships WHERE tenant_id = $1 \
                 AND bucket_id = $2 AND status = 'active' AND expires_at > $3",
            )
            .bind(tenant.as_str())
            .bind(bucket_id)
            .bind(after),
            Earliest::DwellBase(schedule) => {
                let sql = match schedule {
                    DwellSchedule::After(_) => {
                        "SELECT MIN(COALESCE(dwell_anchor_at, entered_at)) \
                         FROM bucket_memberships WHERE tenant_id = $1 AND bucket_id = $2 \
                         AND status = 'active' AND (dwell_state::jsonb ->> $3) IS NULL"
                    }
                    DwellSchedule::Every(_) => {
                        "SELECT MIN(COALESCE((dwell_state::jsonb ->> $3)::int8, \
                         dwell_anchor_at, entered_at)) FROM bucket_memberships \
                         WHERE tenant_id = $1 AND bucket_id = $2 AND status = 'active'"
                    }
                };
                sqlx::query_scalar(sql)
                    .bind(tenant.as_str())
                    .bind(bucket_id)
                    .bind(schedule.label())
            }
        };
        Ok(query.fetch_one(self.conn()).await?)
    }
}

#[async_trait]
impl Reconciles for PgStore {
    /// [`crate::store::Reconciles::reconcile_pass`].
    async fn reconcile_pass(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        pass: Pass,
        now: Timestamp,
        limit: u32,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ReconcileReport> {
        let mut attempt = 1;
        loop {
            match pass_once(self, tenant, bucket, pass, now, limit, routing.as_ref()).await {
                Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => attempt += 1,
                result => return result,
            }
        }
    }

    async fn reconcile_next_work(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        after: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let mut conn = self.pool.acquire().await?;
        flows::reconcile_pass::next_work(&mut PgTx::new(&mut conn), tenant, bucket, after).await
    }

    /// [`crate::store::Reconciles::claim_reconcile`].
    async fn claim_reconcile(
        &self,
        tenant: &TenantId,
        lease: &Lease,
    ) -> StoreResult<ReconcileClaim> {
        let claimed: Option<Option<i64>> = sqlx::query_scalar(
            "INSERT INTO reconcile_state (tenant_id, lease_owner, lease_until) \
             VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO UPDATE \
             SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until \
             WHERE reconcile_state.lease_owner IS NULL \
             OR reconcile_state.lease_owner = $2 OR reconcile_state.lease_until < $4 \
             RETURNING last_tick_at",
        )
        .bind(tenant.as_str())
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .bind(lease.now_real.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(ReconcileClaim::from_stored(claimed))
    }

    /// [`crate::store::Reconciles::finish_reconcile`].
    async fn finish_reconcile(
        &self,
        tenant: &TenantId,
        owner: &str,
        tick: Option<Timestamp>,
        release: bool,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE reconcile_state SET \
             last_tick_at = GREATEST(last_tick_at, $3), \
             lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END, \
             lease_until = CASE WHEN $4 THEN NULL ELSE lease_until END \
             WHERE tenant_id = $1 AND lease_owner = $2",
        )
        .bind(tenant.as_str())
        .bind(owner)
        .bind(tick.map(|t| t.0))
        .bind(release)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }
}

async fn pass_once(
    store: &PgStore,
    tenant: &TenantId,
    bucket: &BucketDef,
    pass: Pass,
    now: Timestamp,
    limit: u32,
    routing: &dyn IngestRouting,
) -> StoreResult<ReconcileReport> {
    let mut tx = store.pool.begin().await?;
    let mut pg = PgTx::new(&mut tx);
    let report =
        flows::reconcile_pass::reconcile_pass(&mut pg, tenant, bucket, pass, now, limit, routing)
            .await?;
    pg.write_events().await?.all()?;
    tx.commit().await?;
    Ok(report)
}
