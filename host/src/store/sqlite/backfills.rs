//! Implements [`crate::store::Backfills`] and the backfill page primitives
//! ([`crate::store::flows::BackfillTx`]).
//!
//! The SQLite side of bucket backfill: the per-bucket configs (registration, status,
//! restart), claims under a lease, and the paged scan whose every page is one write
//! transaction on the writer thread, the shared [`flows::backfill_page`] over [`SqliteTx`], whose
//! page primitives ([`BackfillTx`]) are here.

use super::identity::contact_columns;
use super::tx::{SqliteTx, run_sync};
use super::{SqliteStore, tenant_number};
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
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;

/// The config flows' reads and writes; the single writer keeps what they read true.
impl BucketConfigTx for SqliteTx<'_> {
    async fn bucket_config(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<Option<BackfillStatus>> {
        let mut statement = self.conn.prepare_cached(concat!(
            "SELECT ",
            backfill_status_columns!(),
            " FROM bucket_configs WHERE tenant_id = ?1 AND bucket_id = ?2"
        ))?;
        let mut rows = statement.query(params![tenant.as_str(), bucket_id])?;
        match rows.next()? {
            Some(row) => Ok(Some(backfill_status_from_row(row)?)),
            None => Ok(None),
        }
    }

    async fn enqueue_backfill(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        mode: BackfillMode,
        target_hash: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO bucket_configs (tenant_id, bucket_id, criteria_hash, \
                 backfill_state, backfill_mode, target_hash, updated_at) \
                 VALUES (?1, ?2, NULL, 'pending', ?3, ?4, ?5) \
                 ON CONFLICT (tenant_id, bucket_id) DO UPDATE SET backfill_state = 'pending', \
                 backfill_mode = excluded.backfill_mode, target_hash = excluded.target_hash, \
                 backfill_done = 0, backfill_total = NULL, backfill_joined = 0, \
                 backfill_left = 0, backfill_error = NULL, backfill_started_at = NULL, \
                 backfill_finished_at = NULL, backfill_cursor = NULL, lease_owner = NULL, \
                 lease_until = NULL, updated_at = excluded.updated_at",
            )?
            .execute(params![
                tenant.as_str(),
                bucket_id,
                mode.as_str(),
                target_hash,
                now.0
            ])?;
        Ok(())
    }

    async fn settle_backfill(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE bucket_configs SET backfill_state = 'completed', \
                 target_hash = criteria_hash, backfill_error = NULL, backfill_cursor = NULL, \
                 lease_owner = NULL, lease_until = NULL, updated_at = ?3 \
                 WHERE tenant_id = ?1 AND bucket_id = ?2",
            )?
            .execute(params![tenant.as_str(), bucket_id, now.0])?;
        Ok(())
    }
}

#[async_trait]
impl Backfills for SqliteStore {
    async fn register_buckets(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (tenant, buckets) = (tenant.clone(), buckets.to_vec());
        self.write(move |conn| {
            let mut tx = SqliteTx::new(conn);
            run_sync(flows::bucket_configs::register_buckets(
                &mut tx, &tenant, &buckets, now,
            ))
        })
        .await
    }

    async fn backfill_statuses(&self, tenant: &TenantId) -> StoreResult<Vec<BackfillStatus>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                backfill_status_columns!(),
                " FROM bucket_configs WHERE tenant_id = ?1 ORDER BY bucket_id"
            ))?;
            let mut rows = statement.query(params![tenant.as_str()])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(backfill_status_from_row(row)?);
            }
            Ok(found)
        })
        .await
    }

    async fn restart_backfill(
        &self,
        tenant: &TenantId,
        bucket: &BucketFingerprint,
        now: Timestamp,
    ) -> StoreResult<BackfillStatus> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.write(move |conn| {
            let mut tx = SqliteTx::new(conn);
            run_sync(flows::bucket_configs::restart_backfill(
                &mut tx, &tenant, &bucket, now,
            ))
        })
        .await
    }

    async fn claim_backfill(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<Option<ClaimedBackfill>> {
        let (tenant, buckets, lease) = (tenant.clone(), buckets.to_vec(), lease.clone());
        self
            .write_without_memberships(move |tx| {
                for bucket in &buckets {
                    let claimable: Option<String> = tx
                        .prepare_cached(
                            "SELECT backfill_mode FROM bucket_configs WHERE tenant_id = ?1 \
                             AND bucket_id = ?2 AND target_hash = ?3 \
                             AND (backfill_state = 'pending' OR (backfill_state = 'running' \
                             AND (lease_until IS NULL OR lease_until < ?4)))",
                        )?
                        .query_row(
                            params![
                                tenant.as_str(),
                                bucket.bucket_id,
                                bucket.fingerprint,
                                lease.now_real.0
                            ],
                            |row| row.get(0),
                        )
                        .optional()?;
                    let Some(mode) = claimable else { continue };
                    tx.prepare_cached(
                        "UPDATE bucket_configs SET backfill_state = 'running', lease_owner = ?3, \
                         lease_until = ?4, backfill_started_at = COALESCE(backfill_started_at, ?5), \
                         backfill_total = COALESCE(backfill_total, (SELECT COUNT(*) FROM contacts \
                         WHERE tenant_id = ?1 AND deleted_at IS NULL)), updated_at = ?5 \
                         WHERE tenant_id = ?1 AND bucket_id = ?2",
                    )?
                    .execute(params![
                        tenant.as_str(),
                        bucket.bucket_id,
                        lease.owner,
                        lease.until_real.0,
                        now.0
                    ])?;
                    return Ok(Some(ClaimedBackfill {
                        tenant_id: tenant.clone(),
                        bucket_id: bucket.bucket_id.clone(),
                        mode: BackfillMode::parse(&mode)
                            .ok_or_else(|| StoreError::corrupt("backfill mode", &mode))?,
                        target_hash: bucket.fingerprint.clone(),
                    }));
                }
                Ok(None)
            })
            .await
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
        let (claim, bucket, lease) = (claim.clone(), bucket.clone(), lease.clone());
        self.write(move |conn| {
            run_sync(flows::backfill_page::backfill_step(
                &mut SqliteTx::new(conn),
                &claim,
                &bucket,
                &lease,
                page_size,
                now,
                routing.as_ref(),
            ))
        })
        .await
    }

    async fn retire_buckets(
        &self,
        tenant: &TenantId,
        bucket_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (tenant, bucket_ids) = (tenant.clone(), bucket_ids.to_vec());
        self.write(move |tx| {
            let mut statement = tx.prepare_cached(
                "UPDATE bucket_configs SET criteria_hash = ?3, target_hash = ?3, \
                 backfill_state = 'completed', lease_owner = NULL, lease_until = NULL, \
                 updated_at = ?4 WHERE tenant_id = ?1 AND bucket_id = ?2",
            )?;
            for bucket_id in &bucket_ids {
                statement.execute(params![tenant.as_str(), bucket_id, RETIRED, now.0])?;
            }
            Ok(())
        })
        .await
    }

    async fn fail_backfill(
        &self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
        message: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (claim, owner, message) = (claim.clone(), lease_owner.to_owned(), message.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE bucket_configs SET backfill_state = 'failed', backfill_error = ?4, \
                     backfill_finished_at = ?5, lease_owner = NULL, lease_until = NULL, \
                     updated_at = ?5 WHERE tenant_id = ?1 AND bucket_id = ?2 AND lease_owner = ?3 \
                     AND backfill_state = 'running'",
            )?
            .execute(params![
                claim.tenant_id.as_str(),
                claim.bucket_id,
                owner,
                message,
                now.0
            ])?;
            Ok(())
        })
        .await
    }
}

/// A page's reads and writes. The single writer keeps what they read true until the commit.
impl BackfillTx for SqliteTx<'_> {
    async fn held_backfill(
        &mut self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
    ) -> StoreResult<Option<BackfillProgress>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT backfill_cursor, backfill_done, backfill_total, backfill_joined, \
             backfill_left FROM bucket_configs WHERE tenant_id = ?1 AND bucket_id = ?2 \
             AND backfill_state = 'running' AND lease_owner = ?3 AND target_hash = ?4",
        )?;
        let mut rows = statement.query(params![
            claim.tenant_id.as_str(),
            claim.bucket_id,
            lease_owner,
            claim.target_hash
        ])?;
        rows.next()?.map(backfill_progress_from_row).transpose()
    }

    async fn contacts_after(
        &mut self,
        tenant: &TenantId,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<ContactRecord>> {
        let mut statement = self.conn.prepare_cached(concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts WHERE tenant_id = ?1 AND deleted_at IS NULL AND id > ?2 \
             ORDER BY id LIMIT ?3"
        ))?;
        let mut rows = statement.query(params![tenant.as_str(), after, limit])?;
        let mut page = Vec::new();
        while let Some(row) = rows.next()? {
            page.push(contact_from_row(row)?);
        }
        Ok(page)
    }

    /// At the person's latest `event` (domain-spec §2.11.4).
    async fn set_dwell_anchor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        contact_key: &str,
        event: &str,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(concat!(
                "UPDATE bucket_memberships SET dwell_anchor_at = (SELECT MAX(occurred_at) \
                 FROM events WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?3 AND name = ?4) \
                 WHERE tenant = ",
                tenant_number!("?1"),
                " AND bucket_id = ?2 AND contact_key = ?3 AND status = 'active'"
            ))?
            .execute(params![tenant.as_str(), bucket_id, contact_key, event])?;
        Ok(())
    }

    async fn save_backfill_progress(
        &mut self,
        claim: &ClaimedBackfill,
        progress: &BackfillProgress,
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE bucket_configs SET backfill_cursor = ?3, backfill_done = ?4, \
                 backfill_total = ?5, backfill_joined = ?6, backfill_left = ?7, \
                 lease_until = ?8, updated_at = ?9 WHERE tenant_id = ?1 AND bucket_id = ?2",
            )?
            .execute(params![
                claim.tenant_id.as_str(),
                claim.bucket_id,
                progress.cursor,
                progress.done,
                progress.total,
                progress.joined,
                progress.left,
                lease.until_real.0,
                now.0
            ])?;
        Ok(())
    }

    async fn complete_backfill(
        &mut self,
        claim: &ClaimedBackfill,
        progress: &BackfillProgress,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE bucket_configs SET criteria_hash = target_hash, \
                 backfill_state = 'completed', backfill_done = ?3, backfill_total = ?4, \
                 backfill_joined = ?5, backfill_left = ?6, backfill_cursor = NULL, \
                 lease_owner = NULL, lease_until = NULL, backfill_finished_at = ?7, \
                 updated_at = ?7 WHERE tenant_id = ?1 AND bucket_id = ?2",
            )?
            .execute(params![
                claim.tenant_id.as_str(),
                claim.bucket_id,
                progress.done,
                progress.total,
                progress.joined,
                progress.left,
                now.0
            ])?;
        Ok(())
    }
}
