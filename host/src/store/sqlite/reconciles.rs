//! Implements [`crate::store::Reconciles`] and the reconcile primitives
//! ([`crate::buckets::reconcile_rules::ReconcileTx`], [`crate::store::flows::NextWorkReads`]).
//!
//! The SQLite side of the reconcile job: [`ReconcileTx`] over the writer's open transaction
//! (each pass is one write transaction, its transitions ingested in it), the lower bound on
//! when a bucket next has clock-driven work, and the per-tenant lease.

use crate::store::rows::{
    absence_cursor_from_row, absence_row_from_row, reconcile_member_from_row,
};

use super::tx::{SqliteTx, run_sync};
use super::{SqliteStore, tenant_number};
use crate::buckets::absence::{AbsenceCursor, AbsenceRow, window_ms};
use crate::buckets::reconcile_rules::{MemberSelection, Pass, ReconcileMember, ReconcileTx};
use crate::buckets::{BucketDef, DwellSchedule, EventQuery};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::Reconciles;
use crate::store::flows;
use crate::store::flows::{Earliest, MemberFilterSql, NextWorkReads, member_page};
use crate::store::{IngestRouting, Lease, ReconcileClaim, ReconcileReport, StoreResult};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};
use std::sync::Arc;

/// The membership columns [`reconcile_member_from_row`] reads, `m` being the membership and `c` its
/// live contact.
///
/// Pages over it order by one indexed column alone (`last_evaluated_at`, `max_dwell_at`,
/// `expires_at`): a tiebreaker outside the index would sort every row sharing the first row's
/// instant — a bulk join stamps thousands alike — on every page.
const MEMBER_SELECT: &str = concat!(
    "SELECT m.id, m.bucket_id, m.entry_count, m.entered_at, \
     m.contact_key, c.properties, COALESCE(m.dwell_anchor_at, m.entered_at) AS anchor, m.dwell_state \
     FROM bucket_memberships m JOIN contacts c ON c.tenant_id = ?1 \
     AND c.key = m.contact_key AND c.deleted_at IS NULL \
     WHERE m.tenant = ",
    tenant_number!("?1"),
    " AND m.bucket_id = ?2 AND m.status = 'active'"
);

/// The page filter's dialect: the stamp is read at the JSON path `?5` ([`dwell_path`]).
const MEMBER_FILTER: MemberFilterSql = MemberFilterSql {
    cutoff: "?4",
    stamp: "json_extract(m.dwell_state, ?5)",
    stamp_number: "json_extract(m.dwell_state, ?5)",
};

/// The JSON path of a dwell label in `dwell_state`.
fn dwell_path(label: &str) -> String {
    format!("$.\"{label}\"")
}

impl ReconcileTx for SqliteTx<'_> {
    /// The one writer thread already serialises everything, and the contact was read in this
    /// transaction.
    async fn lock_person(
        &mut self,
        _: &TenantId,
        _: &str,
        _: &mut serde_json::Map<String, serde_json::Value>,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    async fn first_backfill_pending(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM bucket_configs WHERE tenant_id = ?1 \
                 AND bucket_id = ?2 AND criteria_hash IS NULL)",
            )?
            .query_row(params![tenant.as_str(), bucket_id], |row| row.get(0))?)
    }

    async fn members(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        which: MemberSelection,
        limit: u32,
    ) -> StoreResult<Vec<ReconcileMember>> {
        let (filter, order) = member_page(which, &MEMBER_FILTER);
        let mut values: Vec<Value> = vec![
            tenant.as_str().to_owned().into(),
            bucket_id.to_owned().into(),
            limit.into(),
        ];
        values.extend(which.cutoff().map(Value::from));
        if let MemberSelection::DueDwell { schedule, .. } = which {
            values.push(dwell_path(&schedule.label()).into());
        }
        let sql = format!("{MEMBER_SELECT} {filter} ORDER BY {order} LIMIT ?3");
        let mut statement = self.conn.prepare_cached(&sql)?;
        let mut rows = statement.query(params_from_iter(values))?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            found.push(reconcile_member_from_row(row)?);
        }
        Ok(found)
    }

    async fn absence_cursor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
    ) -> StoreResult<Option<AbsenceCursor>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT after_at, after_id FROM bucket_absence_cursors WHERE tenant_id = ?1 \
             AND bucket_id = ?2 AND event_name = ?3 AND within_ms = ?4",
        )?;
        let mut rows = statement.query(params![
            tenant.as_str(),
            bucket_id,
            leg.event,
            window_ms(leg)
        ])?;
        rows.next()?.map(absence_cursor_from_row).transpose()
    }

    async fn save_absence_cursor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
        cursor: &AbsenceCursor,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO bucket_absence_cursors \
                 (tenant_id, bucket_id, event_name, within_ms, after_at, after_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (tenant_id, bucket_id, event_name, within_ms) \
                 DO UPDATE SET after_at = excluded.after_at, after_id = excluded.after_id",
            )?
            .execute(params![
                tenant.as_str(),
                bucket_id,
                leg.event,
                window_ms(leg),
                cursor.after_at,
                cursor.after_id
            ])?;
        Ok(())
    }

    async fn backfill_started_at(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<Option<Timestamp>> {
        let started: Option<Option<i64>> = self
            .conn
            .prepare_cached(
                "SELECT backfill_started_at FROM bucket_configs WHERE tenant_id = ?1 \
                 AND bucket_id = ?2 AND backfill_state = 'completed'",
            )?
            .query_row(params![tenant.as_str(), bucket_id], |row| row.get(0))
            .optional()?;
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
        // events_by_name (tenant, name, occurred_at, id) seeks to the cursor and reads in its
        // order. A person's later event of the name (events_by_contact) or an active
        // membership makes the row no candidate.
        let mut statement = self.conn.prepare_cached(concat!(
            "SELECT e.occurred_at, e.id, e.contact_key, \
                 NOT EXISTS (SELECT 1 FROM events l WHERE l.tenant = e.tenant \
                     AND l.contact_key = e.contact_key AND l.name = ?2 \
                     AND l.occurred_at >= e.occurred_at \
                     AND (l.occurred_at > e.occurred_at OR l.id > e.id)) \
                 AND NOT EXISTS (SELECT 1 FROM bucket_memberships m WHERE m.tenant = e.tenant \
                     AND m.bucket_id = ?3 AND m.contact_key = e.contact_key \
                     AND m.status = 'active') AS candidate, \
                 c.properties \
             FROM events e JOIN contacts c ON c.tenant_id = ?1 \
                 AND c.key = e.contact_key AND c.deleted_at IS NULL \
             WHERE e.tenant = ",
            tenant_number!("?1"),
            " AND e.name = ?2 AND (e.occurred_at, e.id) > (?4, ?5) \
                 AND e.occurred_at < ?6 \
             ORDER BY e.occurred_at, e.id LIMIT ?7"
        ))?;
        let mut rows = statement.query(params![
            tenant.as_str(),
            leg.event,
            bucket_id,
            from.after_at,
            from.after_id,
            until,
            max_rows
        ])?;
        let mut read = Vec::new();
        while let Some(row) = rows.next()? {
            read.push(absence_row_from_row(row)?);
        }
        Ok(read)
    }

    async fn mark_evaluated(
        &mut self,
        tenant: &TenantId,
        membership_ids: &[&str],
        at: Timestamp,
        disarm_expiry: bool,
    ) -> StoreResult<()> {
        let mut statement = self.conn.prepare_cached(concat!(
            "UPDATE bucket_memberships SET last_evaluated_at = ?1, \
             expires_at = CASE WHEN ?4 THEN NULL ELSE expires_at END WHERE tenant = ",
            tenant_number!("?2"),
            " AND id = ?3 AND status = 'active'"
        ))?;
        for id in membership_ids {
            statement.execute(params![at.0, tenant.as_str(), id, disarm_expiry])?;
        }
        Ok(())
    }

    async fn stamp_dwell(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        label: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let stamped = self
            .conn
            .prepare_cached(concat!(
                "UPDATE bucket_memberships SET dwell_state = json_set(dwell_state, ?1, ?2), \
                 last_evaluated_at = ?2, updated_at = ?2 WHERE tenant = ",
                tenant_number!("?3"),
                " AND id = ?4 AND status = 'active'"
            ))?
            .execute(params![
                dwell_path(label),
                at.0,
                tenant.as_str(),
                membership_id
            ])?;
        Ok(stamped > 0)
    }
}

impl SqliteTx<'_> {
    /// The one value `sql` selects (a `MIN`, NULL over no rows).
    fn first(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params, |row| row.get::<_, Option<i64>>(0))
            .optional()?
            .flatten())
    }
}

impl NextWorkReads for SqliteTx<'_> {
    async fn earliest(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        which: Earliest<'_>,
    ) -> StoreResult<Option<i64>> {
        let tenant = tenant.as_str();
        match which {
            Earliest::EventSince { event, since } => self.first(
                concat!(
                    "SELECT MIN(occurred_at) FROM events WHERE tenant = ",
                    tenant_number!("?1"),
                    " AND name = ?2 AND occurred_at >= ?3"
                ),
                params![tenant, event, since],
            ),
            Earliest::MaxDwell => self.first(
                concat!(
                    "SELECT MIN(max_dwell_at) FROM bucket_memberships WHERE tenant = ",
                    tenant_number!("?1"),
                    " AND bucket_id = ?2 AND status = 'active' AND max_dwell_at IS NOT NULL"
                ),
                params![tenant, bucket_id],
            ),
            Earliest::ExpiryAfter { after } => self.first(
                concat!(
                    "SELECT MIN(expires_at) FROM bucket_memberships WHERE tenant = ",
                    tenant_number!("?1"),
                    " AND bucket_id = ?2 AND status = 'active' AND expires_at > ?3"
                ),
                params![tenant, bucket_id, after],
            ),
            Earliest::DwellBase(schedule) => {
                let sql = match schedule {
                    DwellSchedule::After(_) => concat!(
                        "SELECT MIN(COALESCE(dwell_anchor_at, entered_at)) \
                         FROM bucket_memberships WHERE tenant = ",
                        tenant_number!("?1"),
                        " AND bucket_id = ?2 AND status = 'active' \
                         AND json_extract(dwell_state, ?3) IS NULL"
                    ),
                    DwellSchedule::Every(_) => concat!(
                        "SELECT MIN(COALESCE(json_extract(dwell_state, ?3), dwell_anchor_at, \
                         entered_at)) FROM bucket_memberships WHERE tenant = ",
                        tenant_number!("?1"),
                        " AND bucket_id = ?2 AND status = 'active'"
                    ),
                };
                let path = dwell_path(&schedule.label());
                self.first(sql, params![tenant, bucket_id, path])
            }
        }
    }
}

#[async_trait]
impl Reconciles for SqliteStore {
    async fn reconcile_pass(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        pass: Pass,
        now: Timestamp,
        limit: u32,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ReconcileReport> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.write(move |conn| {
            run_sync(flows::reconcile_pass::reconcile_pass(
                &mut SqliteTx::new(conn),
                &tenant,
                &bucket,
                pass,
                now,
                limit,
                routing.as_ref(),
            ))
        })
        .await
    }

    async fn reconcile_next_work(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        after: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.read(move |conn| {
            run_sync(flows::reconcile_pass::next_work(
                &mut SqliteTx::new(conn),
                &tenant,
                &bucket,
                after,
            ))
        })
        .await
    }

    /// [`crate::store::Reconciles::claim_reconcile`].
    async fn claim_reconcile(
        &self,
        tenant: &TenantId,
        lease: &Lease,
    ) -> StoreResult<ReconcileClaim> {
        let (tenant, lease) = (tenant.clone(), lease.clone());
        self
            .write_without_memberships(move |tx| {
                let claimed: Option<Option<i64>> = tx
                    .prepare_cached(
                        "INSERT INTO reconcile_state (tenant_id, lease_owner, lease_until) \
                         VALUES (?1, ?2, ?3) ON CONFLICT (tenant_id) DO UPDATE \
                         SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until \
                         WHERE reconcile_state.lease_owner IS NULL \
                         OR reconcile_state.lease_owner = ?2 OR reconcile_state.lease_until < ?4 \
                         RETURNING last_tick_at",
                    )?
                    .query_row(
                        params![
                            tenant.as_str(),
                            lease.owner,
                            lease.until_real.0,
                            lease.now_real.0
                        ],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(ReconcileClaim::from_stored(claimed))
            })
            .await
    }

    /// [`crate::store::Reconciles::finish_reconcile`].
    async fn finish_reconcile(
        &self,
        tenant: &TenantId,
        owner: &str,
        tick: Option<Timestamp>,
        release: bool,
    ) -> StoreResult<bool> {
        let (tenant, owner) = (tenant.clone(), owner.to_owned());
        self
            .write_without_memberships(move |tx| {
                let updated = tx
                    .prepare_cached(
                        "UPDATE reconcile_state SET \
                         last_tick_at = MAX(COALESCE(last_tick_at, ?3), COALESCE(?3, last_tick_at)), \
                         lease_owner = CASE WHEN ?4 THEN NULL ELSE lease_owner END, \
                         lease_until = CASE WHEN ?4 THEN NULL ELSE lease_until END \
                         WHERE tenant_id = ?1 AND lease_owner = ?2",
                    )?
                    .execute(params![tenant.as_str(), owner, tick.map(|t| t.0), release])?;
                Ok(updated > 0)
            })
            .await
    }
}
