//! The PostgreSQL side of bucket membership: [`MembershipTx`] over the ingest transaction's
//! [`PgTx`], and manual membership changes.
//!
//! Concurrency: ingest holds the person's contact lock, so two transactions evaluating one
//! person run one after the other; the partial unique index on active rows (`ON CONFLICT DO
//! NOTHING`) and the compare-and-swap on leave are the final guards, and a transition's event
//! is inserted `ON CONFLICT DO NOTHING` on its deterministic key.

use super::PgStore;
use super::identity::{PgTx, live_by_key};
use super::ingest::ingest_transition;
use crate::buckets::membership::{
    self, ActiveMembership, MembershipHistory, MembershipTx, NewMembership, Source,
};
use crate::buckets::{BucketDef, EventCounts, EventQuery, LeaveReason};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::codec::to_u32;
use crate::store::codec::{SkipTally, StartedRuns};
use crate::store::{BucketTransition, IngestRouting, MembershipChange, StoreResult};
use sqlx::Row;
use std::sync::Arc;

impl MembershipTx for PgTx<'_> {
    async fn event_counts(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<EventCounts> {
        let names: Vec<&str> = queries.iter().map(|q| q.event.as_str()).collect();
        let since: Vec<i64> = queries
            .iter()
            .map(|q| q.window_start(now.0).unwrap_or(i64::MIN))
            .collect();
        let rows = sqlx::query(
            "SELECT q.n, (SELECT COUNT(*) FROM events e WHERE e.tenant_id = $1 \
                 AND e.contact_key = $2 AND e.name = q.name AND e.occurred_at >= q.since) AS c \
             FROM unnest($3::text[], $4::int8[]) WITH ORDINALITY AS q(name, since, n)",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(&names)
        .bind(&since)
        .fetch_all(self.conn())
        .await?;
        let mut counts = EventCounts::with_capacity(queries.len());
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let stored: i64 = row.try_get("c")?;
            if let Some(query) = usize::try_from(n - 1).ok().and_then(|i| queries.get(i)) {
                // The events this batch stored are written at its end: count them here.
                let since = query.window_start(now.0).unwrap_or(i64::MIN);
                let pending =
                    self.pending_events_matching(tenant, contact_key, &query.event, since);
                let total = u64::try_from(stored).unwrap_or(0) + pending;
                counts.insert(query.clone(), total);
            }
        }
        Ok(counts)
    }

    async fn active_memberships(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>> {
        let rows = sqlx::query(
            "SELECT id, bucket_id, entry_count, entered_at FROM bucket_memberships \
             WHERE tenant_id = $1 AND contact_key = $2 AND status = 'active'",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActiveMembership {
                    id: row.try_get("id")?,
                    bucket_id: row.try_get("bucket_id")?,
                    entry_count: to_u32("membership entry count", row.try_get("entry_count")?)?,
                    entered_at: Timestamp(row.try_get("entered_at")?),
                })
            })
            .collect()
    }

    async fn membership_history(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        contact_key: &str,
    ) -> StoreResult<MembershipHistory> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MAX(left_at) AS last_left FROM bucket_memberships \
             WHERE tenant_id = $1 AND contact_key = $2 AND bucket_id = $3",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(bucket_id)
        .fetch_one(self.conn())
        .await?;
        Ok(MembershipHistory {
            rows: to_u32("membership count", row.try_get("n")?)?,
            last_left_at: row.try_get::<Option<i64>, _>("last_left")?.map(Timestamp),
        })
    }

    async fn insert_membership(&mut self, m: &NewMembership) -> StoreResult<bool> {
        let inserted = sqlx::query(
            "INSERT INTO bucket_memberships (id, tenant_id, bucket_id, contact_key, status, \
             entry_count, source, entered_at, expires_at, max_dwell_at, last_evaluated_at, \
             updated_at) VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $7, $7) \
             ON CONFLICT (tenant_id, bucket_id, contact_key) WHERE status = 'active' \
             DO NOTHING",
        )
        .bind(&m.id)
        .bind(m.tenant_id.as_str())
        .bind(&m.bucket_id)
        .bind(&m.contact_key)
        .bind(i64::from(m.entry_count))
        .bind(m.source.as_str())
        .bind(m.entered_at.0)
        .bind(m.expires_at.map(|t| t.0))
        .bind(m.max_dwell_at.map(|t| t.0))
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    async fn leave_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        reason: LeaveReason,
    ) -> StoreResult<bool> {
        let left = sqlx::query(
            "UPDATE bucket_memberships SET status = 'left', left_at = $1, leave_reason = $2, \
             last_evaluated_at = $1, updated_at = $1 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'active'",
        )
        .bind(at.0)
        .bind(reason.as_str())
        .bind(tenant.as_str())
        .bind(membership_id)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(left > 0)
    }

    async fn touch_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> StoreResult<()> {
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

/// [`crate::store::Store::change_membership`]: a manual join or leave under the person's
/// contact lock, and its transition ingested like real-time ones.
pub(super) async fn change_membership(
    store: &PgStore,
    tenant: &TenantId,
    bucket: &BucketDef,
    key: &str,
    change: MembershipChange,
    now: Timestamp,
    routing: Arc<dyn IngestRouting>,
) -> StoreResult<Option<Option<BucketTransition>>> {
    let mut tx = store.pool.begin().await?;
    let Some(contact) = live_by_key(&mut tx, tenant, key, true).await? else {
        return Ok(None);
    };
    let mut pg = PgTx::new(&mut tx);
    let transition = match change {
        MembershipChange::Add => {
            membership::join(&mut pg, bucket, tenant, &contact.key, Source::Manual, now).await?
        }
        MembershipChange::Remove => {
            match membership::active_membership(&mut pg, tenant, &bucket.id, &contact.key).await? {
                Some(active) => {
                    membership::leave(
                        &mut pg,
                        bucket,
                        tenant,
                        &contact.key,
                        &active,
                        LeaveReason::Manual,
                        now,
                    )
                    .await?
                }
                None => None,
            }
        }
    };
    let summary = match transition {
        Some(transition) => {
            let mut runs = StartedRuns::default();
            let summary = ingest_transition(
                &mut pg,
                routing.as_ref(),
                &contact,
                &transition,
                now,
                &mut runs,
            )
            .await?;
            super::journeys::count_skips(pg.conn(), &SkipTally::of(tenant, &runs.skipped)).await?;
            Some(summary)
        }
        None => None,
    };
    pg.write_events().await?;
    tx.commit().await?;
    Ok(Some(summary))
}
