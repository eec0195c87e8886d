//! Implements [`crate::store::Backfills`] and the backfill page primitives
//! ([`crate::store::flows::BackfillTx`]).
//!
//! The PostgreSQL side of bucket backfill: the per-bucket configs (registration, status,
//! restart), claims under a lease, and the paged scan.
//!
//! Concurrency: registration and restart lock the bucket's config row (`FOR UPDATE`, after an
//! `INSERT … ON CONFLICT DO NOTHING` so a first registration by two hosts converges); a claim
//! is one `UPDATE … WHERE (…) = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)`, so concurrent
//! workers take different backfills; a page locks its config row first (checking the lease),
//! then its contact rows in id order (`FOR UPDATE`, the order ingest locks contacts in), so a
//! person's real-time evaluation and their backfill evaluation run one after the other.

use super::PgStore;
use super::rows::contact_columns;
use super::tx::PgTx;
use crate::buckets::BucketDef;
use crate::buckets::backfill_rules::BackfillMode;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::Backfills;
use crate::store::flows;
use crate::store::flows::{BackfillProgress, BackfillTx, BucketConfigTx};
use crate::store::rows::backfill_status_columns;
use crate::store::rows::{backfill_progress_from_row, backfill_status_from_row, contact_from_row};
use crate::store::{
    BackfillStatus, BackfillStep, BucketFingerprint, ClaimedBackfill, ContactRecord, IngestRouting,
    Lease, RETIRED, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::Row;
use std::sync::Arc;

/// The bucket's config, locked until the transaction ends when `lock`.
/// The config flows' reads and writes: a config row is read `FOR UPDATE` (see the module
/// doc).
impl BucketConfigTx for PgTx<'_> {
    async fn bucket_config(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<Option<BackfillStatus>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            backfill_status_columns!(),
            " FROM bucket_configs WHERE tenant_id = $1 AND bucket_id = $2 FOR UPDATE"
        ))
        .bind(tenant.as_str())
        .bind(bucket_id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(backfill_status_from_row).transpose()
    }

    async fn enqueue_backfill(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        mode: BackfillMode,
        target_hash: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO bucket_configs (tenant_id, bucket_id, criteria_hash, backfill_state, \
             backfill_mode, target_hash, updated_at) VALUES ($1, $2, NULL, 'pending', $3, $4, $5) \
             ON CONFLICT (tenant_id, bucket_id) DO UPDATE SET backfill_state = 'pending', \
             backfill_mode = excluded.backfill_mode, target_hash = excluded.target_hash, \
             backfill_done = 0, backfill_total = NULL, backfill_joined = 0, backfill_left = 0, \
             backfill_error = NULL, backfill_started_at = NULL, backfill_finished_at = NULL, \
             backfill_cursor = NULL, lease_owner = NULL, lease_until = NULL, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(mode.as_str())
        .bind(target_hash)
        .bind(now.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn settle_backfill(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE bucket_configs SET backfill_state = 'completed', \
             target_hash = criteria_hash, backfill_error = NULL, \
             backfill_cursor = NULL, lease_owner = NULL, lease_until = NULL, \
             updated_at = $3 WHERE tenant_id = $1 AND bucket_id = $2",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(now.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Backfills for PgStore {
    async fn register_buckets(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        flows::bucket_configs::register_buckets(&mut PgTx::new(&mut tx), tenant, buckets, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn backfill_statuses(&self, tenant: &TenantId) -> StoreResult<Vec<BackfillStatus>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            backfill_status_columns!(),
            " FROM bucket_configs WHERE tenant_id = $1 ORDER BY bucket_id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(backfill_status_from_row).collect()
    }

    async fn restart_backfill(
        &self,
        tenant: &TenantId,
        bucket: &BucketFingerprint,
        now: Timestamp,
    ) -> StoreResult<BackfillStatus> {
        let mut tx = self.pool.begin().await?;
        let status =
            flows::bucket_configs::restart_backfill(&mut PgTx::new(&mut tx), tenant, bucket, now)
                .await?;
        tx.commit().await?;
        Ok(status)
    }

    async fn claim_backfill(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<Option<ClaimedBackfill>> {
        if buckets.is_empty() {
            return Ok(None);
        }
        let ids: Vec<&str> = buckets.iter().map(|b| b.bucket_id.as_str()).collect();
        let hashes: Vec<&str> = buckets.iter().map(|b| b.fingerprint.as_str()).collect();
        let row = sqlx::query(
            "UPDATE bucket_configs b SET backfill_state = 'running', lease_owner = $4, \
             lease_until = $5, backfill_started_at = COALESCE(b.backfill_started_at, $6), \
             backfill_total = COALESCE(b.backfill_total, (SELECT COUNT(*) FROM contacts c \
             WHERE c.tenant_id = $1 AND c.deleted_at IS NULL)), updated_at = $6 \
             WHERE (b.tenant_id, b.bucket_id) = (SELECT o.tenant_id, o.bucket_id \
             FROM bucket_configs o JOIN unnest($2::text[], $3::text[]) AS q(bucket_id, hash) \
             ON q.bucket_id = o.bucket_id AND q.hash = o.target_hash \
             WHERE o.tenant_id = $1 AND (o.backfill_state = 'pending' OR \
             (o.backfill_state = 'running' AND (o.lease_until IS NULL OR o.lease_until < $7))) \
             ORDER BY o.updated_at, o.bucket_id LIMIT 1 FOR UPDATE OF o SKIP LOCKED) \
             RETURNING b.bucket_id, b.backfill_mode, b.target_hash",
        )
        .bind(tenant.as_str())
        .bind(&ids)
        .bind(&hashes)
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .bind(now.0)
        .bind(lease.now_real.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mode: String = row.try_get("backfill_mode")?;
        Ok(Some(ClaimedBackfill {
            tenant_id: tenant.clone(),
            bucket_id: row.try_get("bucket_id")?,
            mode: BackfillMode::parse(&mode)
                .ok_or_else(|| StoreError::corrupt("backfill mode", &mode))?,
            target_hash: row.try_get("target_hash")?,
        }))
    }

    async fn backfill_step(
        &self,
        claim: &ClaimedBackfill,
        bucket: &BucketDef,
        lease: &Lease,
        page_size: u32,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<BackfillStep> {
        let mut tx = self.pool.begin().await?;
        let mut pg = PgTx::new(&mut tx);
        let step = flows::backfill_page::backfill_step(
            &mut pg,
            claim,
            bucket,
            lease,
            page_size,
            now,
            routing.as_ref(),
        )
        .await?;
        if step == BackfillStep::Lost {
            return Ok(step); // dropping `tx` rolls it back
        }
        pg.write_events().await?.all()?;
        tx.commit().await?;
        Ok(step)
    }

    async fn retire_buckets(
        &self,
        tenant: &TenantId,
        bucket_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE bucket_configs SET criteria_hash = $3, target_hash = $3, \
             backfill_state = 'completed', lease_owner = NULL, lease_until = NULL, \
             updated_at = $4 WHERE tenant_id = $1 AND bucket_id = ANY($2)",
        )
        .bind(tenant.as_str())
        .bind(bucket_ids)
        .bind(RETIRED)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn fail_backfill(
        &self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
        message: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE bucket_configs SET backfill_state = 'failed', backfill_error = $4, \
             backfill_finished_at = $5, lease_owner = NULL, lease_until = NULL, updated_at = $5 \
             WHERE tenant_id = $1 AND bucket_id = $2 AND lease_owner = $3 \
             AND backfill_state = 'running'",
        )
        .bind(claim.tenant_id.as_str())
        .bind(&claim.bucket_id)
        .bind(lease_owner)
        .bind(message)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A page's reads and writes: the config row, then the page's contacts in id order, locked
/// until the commit (see the module doc).
impl BackfillTx for PgTx<'_> {
    async fn held_backfill(
        &mut self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
    ) -> StoreResult<Option<BackfillProgress>> {
        sqlx::query(
            "SELECT backfill_cursor, backfill_done, backfill_total, backfill_joined, backfill_left \
             FROM bucket_configs WHERE tenant_id = $1 AND bucket_id = $2 \
             AND backfill_state = 'running' AND lease_owner = $3 AND target_hash = $4 FOR UPDATE",
        )
        .bind(claim.tenant_id.as_str())
        .bind(&claim.bucket_id)
        .bind(lease_owner)
        .bind(&claim.target_hash)
        .fetch_optional(self.conn())
        .await?
        .as_ref()
        .map(backfill_progress_from_row)
        .transpose()
    }

    async fn contacts_after(
        &mut self,
        tenant: &TenantId,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<ContactRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts c WHERE c.tenant_id = $1 AND c.deleted_at IS NULL AND c.id > $2 \
             ORDER BY c.id LIMIT $3 FOR UPDATE"
        ))
        .bind(tenant.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(contact_from_row).collect()
    }

    async fn set_dwell_anchor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        contact_key: &str,
        event: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE bucket_memberships SET dwell_anchor_at = (SELECT \
             MAX(occurred_at) FROM events WHERE tenant_id = $1 \
             AND contact_key = $3 AND name = $4) WHERE tenant_id = $1 \
             AND bucket_id = $2 AND contact_key = $3 AND status = 'active'",
        )
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(contact_key)
        .bind(event)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn save_backfill_progress(
        &mut self,
        claim: &ClaimedBackfill,
        progress: &BackfillProgress,
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE bucket_configs SET backfill_cursor = $3, backfill_done = $4, \
             backfill_total = $5, backfill_joined = $6, backfill_left = $7, \
             lease_until = $8, updated_at = $9 WHERE tenant_id = $1 AND bucket_id = $2",
        )
        .bind(claim.tenant_id.as_str())
        .bind(&claim.bucket_id)
        .bind(&progress.cursor)
        .bind(progress.done)
        .bind(progress.total)
        .bind(progress.joined)
        .bind(progress.left)
        .bind(lease.until_real.0)
        .bind(now.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn complete_backfill(
        &mut self,
        claim: &ClaimedBackfill,
        progress: &BackfillProgress,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE bucket_configs SET criteria_hash = target_hash, \
             backfill_state = 'completed', backfill_done = $3, backfill_total = $4, \
             backfill_joined = $5, backfill_left = $6, backfill_cursor = NULL, \
             lease_owner = NULL, lease_until = NULL, backfill_finished_at = $7, \
             updated_at = $7 WHERE tenant_id = $1 AND bucket_id = $2",
        )
        .bind(claim.tenant_id.as_str())
        .bind(&claim.bucket_id)
        .bind(progress.done)
        .bind(progress.total)
        .bind(progress.joined)
        .bind(progress.left)
        .bind(now.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
