//! Implements [`crate::store::ManualMemberships`] and the bucket membership primitives
//! ([`crate::buckets::membership::MembershipTx`]).
//!
//! The SQLite side of bucket membership: [`SqliteTx`] gives [`crate::buckets::membership`] its
//! primitives inside the writer's open transaction (through the writer's memory of active
//! memberships when the transaction keeps it: ingest and contact writes), and manual buckets
//! (`ManualMemberships`) are changed here.

use super::SqliteStore;
use super::rows::to_u32;
use super::tenant_number;
use super::tx::{SqliteTx, run_sync};
use crate::buckets::BucketDef;
use crate::buckets::membership::{
    ActiveMembership, MembershipHistory, MembershipTx, NewMembership,
};
use crate::buckets::{EventCounts, EventQuery, LeaveReason};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::ManualMemberships;
use crate::store::StoreResult;
use crate::store::flows;
use crate::store::{IngestRouting, ManualChangeOutcome, MembershipChange};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;

/// How many events named `?3` the person `?2` of the tenant whose id is `?1` has from
/// `?4` on: a prefix of `events_by_contact`, the window on its last column. Bucket criteria
/// and the journeys' history imports count alike.
pub(super) const COUNT_PERSON_EVENTS: &str = concat!(
    "SELECT COUNT(*) FROM events WHERE tenant = ",
    tenant_number!("?1"),
    " AND contact_key = ?2 AND name = ?3 AND occurred_at >= ?4"
);

impl SqliteTx<'_> {
    /// The person's earlier memberships of the bucket (none to read for a person the cache
    /// knows has none).
    fn history(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        contact_key: &str,
    ) -> StoreResult<MembershipHistory> {
        if self
            .memberships()
            .is_some_and(|cache| cache.has_no_history(tenant, contact_key))
        {
            return Ok(MembershipHistory::default());
        }
        let (rows, last_left_at): (i64, Option<i64>) = self
            .conn
            .prepare_cached(concat!(
                "SELECT COUNT(*), MAX(left_at) FROM bucket_memberships WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?2 AND bucket_id = ?3"
            ))?
            .query_row(params![tenant.as_str(), contact_key, bucket_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        Ok(MembershipHistory {
            rows: to_u32("membership count", rows)?,
            last_left_at: last_left_at.map(Timestamp),
        })
    }
}

impl MembershipTx for SqliteTx<'_> {
    async fn event_counts(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<EventCounts> {
        let mut statement = self.conn.prepare_cached(COUNT_PERSON_EVENTS)?;
        let mut counts = EventCounts::with_capacity(queries.len());
        for query in queries {
            let since = query.window_start(now.0).unwrap_or(i64::MIN);
            let count: i64 = statement.query_row(
                params![tenant.as_str(), contact_key, query.event, since],
                |row| row.get(0),
            )?;
            counts.insert(query.clone(), u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }

    async fn active_memberships(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>> {
        if let Some(known) = self
            .memberships()
            .and_then(|cache| cache.get(tenant, contact_key))
        {
            return Ok(known.to_vec());
        }
        let mut statement = self.conn.prepare_cached(concat!(
            "SELECT id, bucket_id, entry_count, entered_at FROM bucket_memberships \
             WHERE tenant = ",
            tenant_number!("?1"),
            " AND contact_key = ?2 AND status = 'active'"
        ))?;
        let mut rows = statement.query(params![tenant.as_str(), contact_key])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            found.push(ActiveMembership {
                id: row.get(0)?,
                bucket_id: row.get(1)?,
                entry_count: to_u32("membership entry count", row.get(2)?)?,
                entered_at: Timestamp(row.get(3)?),
            });
        }
        drop(rows);
        drop(statement);
        if let Some(cache) = self.memberships() {
            cache.put(tenant, contact_key, &found);
        }
        Ok(found)
    }

    async fn insert_next_membership(
        &mut self,
        m: &NewMembership,
    ) -> StoreResult<Option<MembershipHistory>> {
        let history = self.history(&m.tenant_id, &m.bucket_id, &m.contact_key)?;
        let entry_count = history.next_epoch();
        let inserted = self
            .conn
            .prepare_cached(concat!(
                "INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, status, \
                 entry_count, source, entered_at, expires_at, max_dwell_at, last_evaluated_at, \
                 updated_at) VALUES (?1, ",
                tenant_number!("?2"),
                ", ?3, ?4, 'active', ?5, ?6, ?7, ?8, ?9, ?7, ?7) \
                 ON CONFLICT (tenant, contact_key, bucket_id, \
                 (CASE WHEN status = 'active' THEN '' ELSE id END)) DO NOTHING"
            ))?
            .execute(params![
                m.id,
                m.tenant_id.as_str(),
                m.bucket_id,
                m.contact_key,
                entry_count,
                m.source.as_str(),
                m.entered_at.0,
                m.expires_at.map(|t| t.0),
                m.max_dwell_at.map(|t| t.0),
            ])?;
        if let Some(cache) = self.memberships() {
            if inserted == 0 {
                // Already a member, which the cache did not know: it forgets the person.
                cache.forget(&m.tenant_id, &m.contact_key);
            } else {
                cache.joined(
                    &m.tenant_id,
                    &m.contact_key,
                    ActiveMembership {
                        id: m.id.clone(),
                        bucket_id: m.bucket_id.clone(),
                        entry_count,
                        entered_at: m.entered_at,
                    },
                );
            }
        }
        Ok((inserted > 0).then_some(history))
    }

    async fn leave_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        reason: LeaveReason,
    ) -> StoreResult<bool> {
        // The person's key comes back for the writer's memory of their memberships.
        let left: Option<String> = self
            .conn
            .prepare_cached(concat!(
                "UPDATE bucket_memberships SET status = 'left', left_at = ?1, \
                 leave_reason = ?2, last_evaluated_at = ?1, updated_at = ?1 WHERE tenant = ",
                tenant_number!("?3"),
                " AND id = ?4 AND status = 'active' RETURNING contact_key"
            ))?
            .query_row(
                params![at.0, reason.as_str(), tenant.as_str(), membership_id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(person) = left else {
            return Ok(false);
        };
        if let Some(cache) = self.memberships() {
            cache.left(tenant, &person, membership_id);
        }
        Ok(true)
    }

    async fn touch_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(concat!(
                "UPDATE bucket_memberships SET last_evaluated_at = ?1, \
                 expires_at = COALESCE(?2, expires_at) WHERE tenant = ",
                tenant_number!("?3"),
                " AND id = ?4 AND status = 'active'"
            ))?
            .execute(params![
                at.0,
                expires_at.map(|t| t.0),
                tenant.as_str(),
                membership_id
            ])?;
        Ok(())
    }
}

#[async_trait]
impl ManualMemberships for SqliteStore {
    /// [`crate::store::ManualMemberships::change_membership`]: a manual join or leave, and its transition
    /// ingested like real-time ones.
    async fn change_membership(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        key: &str,
        change: MembershipChange,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ManualChangeOutcome> {
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.to_owned());
        self.write(move |conn| {
            run_sync(flows::contacts::change_membership(
                &mut SqliteTx::new(conn),
                &tenant,
                &key,
                &bucket,
                change,
                now,
                routing.as_ref(),
            ))
        })
        .await
    }
}
