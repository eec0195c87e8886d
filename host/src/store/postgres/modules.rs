//! Implements [`crate::store::ModuleCatalog`] and the module-change primitives
//! ([`crate::store::flows::ModuleChangeTx`]).
//!
//! Every host on the database serves the same modules: a change commits with a
//! `NOTIFY waymark_modules` (delivered at commit), and each host LISTENs on a connection of
//! its own ([`ModuleCatalog::watch_module_changes`]) to reload the tenant within milliseconds.
//! A notification lost with a dropped connection is made up for by the hosts' periodic
//! comparison of revisions (`crate::modules::follow`).

use super::PgStore;
use super::tx::PgTx;
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::flows::{self, ModuleChangeTx};
use crate::store::rows::{module_from_row, module_version_columns, module_version_from_row};
use crate::store::{
    ModuleCatalog, ModuleChange, ModuleComponent, ModuleOrigin, ModuleSet, ModuleVersionRecord,
    NewModuleVersion, StoreResult,
};
use async_trait::async_trait;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The channel module changes are announced on; the payload is the tenant id.
pub(super) const CHANNEL: &str = "waymark_modules";

impl ModuleChangeTx for PgTx<'_> {
    async fn bump_module_revision(
        &mut self,
        tenant: &TenantId,
        expected: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE tenants SET modules_revision = modules_revision + 1 \
             WHERE id = $1 AND modules_revision = $2 RETURNING modules_revision",
        )
        .bind(tenant.as_str())
        .bind(expected)
        .fetch_optional(self.conn())
        .await?)
    }

    async fn put_module_version(
        &mut self,
        tenant: &TenantId,
        version: &NewModuleVersion,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO module_versions (tenant_id, hash, name, manifest, deployed_at, \
             wasm, size_bytes, deployed_by, activated_at) \
             VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $5) \
             ON CONFLICT (tenant_id, hash) DO UPDATE SET \
             wasm = COALESCE(module_versions.wasm, excluded.wasm), \
             size_bytes = excluded.size_bytes, activated_at = excluded.activated_at",
        )
        .bind(tenant.as_str())
        .bind(&version.hash)
        .bind(&version.name)
        .bind(version.manifest.to_string())
        .bind(at.0)
        .bind(&*version.wasm)
        .bind(version.wasm.len() as i64)
        .bind(version.deployed_by.as_ref().map(|key| key.as_str()))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn mark_module_version_activated(
        &mut self,
        tenant: &TenantId,
        name: &str,
        hash: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE module_versions SET activated_at = $4 \
             WHERE tenant_id = $1 AND name = $2 AND hash = $3",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(hash)
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn set_active_module_version(
        &mut self,
        tenant: &TenantId,
        name: &str,
        active_hash: Option<&str>,
        origin: Option<ModuleOrigin>,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO modules (tenant_id, name, active_hash, origin, updated_at) \
             VALUES ($1, $2, $3, COALESCE($4, 'api'), $5) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET active_hash = excluded.active_hash, \
             origin = COALESCE($4, modules.origin), updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(active_hash)
        .bind(origin.map(ModuleOrigin::as_str))
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn announce_module_change(&mut self, tenant: &TenantId) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(tenant.as_str())
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ModuleCatalog for PgStore {
    async fn module_set(&self, tenant: &TenantId) -> StoreResult<ModuleSet> {
        let revision: Option<i64> =
            sqlx::query_scalar("SELECT modules_revision FROM tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let rows = sqlx::query(
            "SELECT m.name, m.active_hash, m.origin, m.updated_at, \
             COALESCE(v.size_bytes, 0) AS active_bytes FROM modules m \
             LEFT JOIN module_versions v ON v.tenant_id = m.tenant_id AND v.hash = m.active_hash \
             WHERE m.tenant_id = $1 ORDER BY m.name",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ModuleSet {
            revision: revision.unwrap_or(0),
            modules: rows
                .iter()
                .map(module_from_row)
                .collect::<StoreResult<_>>()?,
        })
    }

    async fn change_modules(
        &self,
        tenant: &TenantId,
        expected_revision: i64,
        changes: &[ModuleChange],
        at: Timestamp,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let revision = flows::module_changes::change_modules(
            &mut PgTx::new(&mut tx),
            tenant,
            expected_revision,
            changes,
            at,
        )
        .await?;
        if revision.is_some() {
            tx.commit().await?;
        }
        Ok(revision)
    }

    async fn module_component(
        &self,
        tenant: &TenantId,
        hash: &str,
        with_wasm: bool,
    ) -> StoreResult<Option<ModuleComponent>> {
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT name, CASE WHEN $3 THEN wasm END FROM module_versions \
             WHERE tenant_id = $1 AND hash = $2",
        )
        .bind(tenant.as_str())
        .bind(hash)
        .bind(with_wasm)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(name, wasm)| ModuleComponent { name, wasm }))
    }

    async fn module_versions(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Vec<ModuleVersionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            module_version_columns!(),
            ", manifest::text AS manifest, (SELECT COUNT(*) FROM runs r \
             WHERE r.tenant_id = v.tenant_id AND r.module_hash = v.hash \
             AND r.status IN ('active', 'waiting')) AS live_runs \
             FROM module_versions v WHERE tenant_id = $1 AND name = $2 \
             ORDER BY activated_at DESC NULLS LAST, deployed_at DESC"
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(module_version_from_row).collect()
    }

    async fn prune_module_versions(
        &self,
        tenant: &TenantId,
        name: &str,
        keep: usize,
    ) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM module_versions WHERE tenant_id = $1 AND name = $2 AND hash IN ( \
             SELECT v.hash FROM module_versions v WHERE v.tenant_id = $1 AND v.name = $2 \
             AND v.hash IS DISTINCT FROM (SELECT active_hash FROM modules m \
                 WHERE m.tenant_id = $1 AND m.name = $2) \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = $1 \
                 AND r.module_hash = v.hash AND r.status IN ('active', 'waiting')) \
             ORDER BY v.activated_at DESC NULLS LAST, v.deployed_at DESC OFFSET $3) \
             RETURNING hash",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(keep as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn live_runs_on(
        &self,
        tenant: &TenantId,
        hash: &str,
        after: Option<&RunId>,
        limit: u32,
    ) -> StoreResult<Vec<RunId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE tenant_id = $1 AND module_hash = $2 \
             AND status IN ('active', 'waiting') AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(hash)
        .bind(after.map_or("", RunId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(RunId).collect())
    }

    async fn repin_run(
        &self,
        tenant: &TenantId,
        run: &RunId,
        from: &str,
        to: &str,
        journal_len: u32,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // The timer row locked first: a claim (which skips locked timers) cannot take the run
        // between this check and the move, and one that took it already is seen.
        let lease: Option<Option<String>> =
            sqlx::query_scalar("SELECT lease_owner FROM timers WHERE run_id = $1 FOR UPDATE")
                .bind(run.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if matches!(lease, Some(Some(_))) {
            return Ok(false);
        }
        let moved = sqlx::query(
            "UPDATE runs SET module_hash = $4, updated_at = $6 \
             WHERE id = $2 AND tenant_id = $1 AND module_hash = $3 \
             AND status IN ('active', 'waiting') \
             AND (SELECT COUNT(*) FROM journal WHERE run_id = $2) = $5",
        )
        .bind(tenant.as_str())
        .bind(run.as_str())
        .bind(from)
        .bind(to)
        .bind(i64::from(journal_len))
        .bind(now.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(moved > 0)
    }

    async fn module_revisions(&self) -> StoreResult<Vec<(TenantId, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, modules_revision FROM tenants ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, revision)| (TenantId(id), revision))
            .collect())
    }

    async fn watch_module_changes(&self, wake: Arc<Notify>) -> StoreResult<()> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection was lost (and is re-established on the next call):
                    // notifications may have been missed meanwhile.
                    Ok(None) => wake.notify_one(),
                    Err(error) => {
                        tracing::warn!(%error, "listening for module changes failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
}
