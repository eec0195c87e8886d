//! Implements [`crate::store::ModuleCatalog`] and the module-change primitives
//! ([`crate::store::flows::ModuleChangeTx`]).
//!
//! One process owns a SQLite database, so there is no one to tell of a change:
//! [`ModuleChangeTx::announce_module_change`] and `watch_module_changes` do nothing.

use super::SqliteStore;
use super::rows::collect;
use super::tx::{SqliteTx, run_sync};
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::flows::{self, ModuleChangeTx};
use crate::store::rows::{module_from_row, module_version_columns, module_version_from_row};
use crate::store::{
    ModuleCatalog, ModuleChange, ModuleComponent, ModuleOrigin, ModuleSet, ModuleVersionRecord,
    NewModuleVersion, StoreResult,
};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use tokio::sync::Notify;

/// A module's versions with their live runs, last activated first.
const VERSIONS: &str = concat!(
    "SELECT ",
    module_version_columns!(),
    ", manifest, (SELECT COUNT(*) FROM runs r WHERE r.tenant_id = v.tenant_id \
     AND r.module_hash = v.hash AND r.status IN ('active', 'waiting')) AS live_runs \
     FROM module_versions v WHERE tenant_id = ?1 AND name = ?2 \
     ORDER BY activated_at DESC NULLS LAST, deployed_at DESC"
);

impl ModuleChangeTx for SqliteTx<'_> {
    async fn bump_module_revision(
        &mut self,
        tenant: &TenantId,
        expected: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE tenants SET modules_revision = modules_revision + 1 \
                 WHERE id = ?1 AND modules_revision = ?2 RETURNING modules_revision",
            )?
            .query_row(params![tenant.as_str(), expected], |row| row.get(0))
            .optional()?)
    }

    async fn put_module_version(
        &mut self,
        tenant: &TenantId,
        version: &NewModuleVersion,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO module_versions (tenant_id, hash, name, manifest, deployed_at, \
                 wasm, size_bytes, deployed_by, activated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?5) \
                 ON CONFLICT (tenant_id, hash) DO UPDATE SET \
                 wasm = COALESCE(module_versions.wasm, excluded.wasm), \
                 size_bytes = excluded.size_bytes, activated_at = excluded.activated_at",
            )?
            .execute(params![
                tenant.as_str(),
                version.hash,
                version.name,
                version.manifest.to_string(),
                at.0,
                &*version.wasm,
                version.wasm.len() as i64,
                version.deployed_by.as_ref().map(|key| key.as_str()),
            ])?;
        Ok(())
    }

    async fn mark_module_version_activated(
        &mut self,
        tenant: &TenantId,
        name: &str,
        hash: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE module_versions SET activated_at = ?4 \
                 WHERE tenant_id = ?1 AND name = ?2 AND hash = ?3",
            )?
            .execute(params![tenant.as_str(), name, hash, at.0])?;
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
        self.conn
            .prepare_cached(
                "INSERT INTO modules (tenant_id, name, active_hash, origin, updated_at) \
                 VALUES (?1, ?2, ?3, COALESCE(?4, 'api'), ?5) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET active_hash = excluded.active_hash, \
                 origin = COALESCE(?4, modules.origin), updated_at = excluded.updated_at",
            )?
            .execute(params![
                tenant.as_str(),
                name,
                active_hash,
                origin.map(ModuleOrigin::as_str),
                at.0
            ])?;
        Ok(())
    }

    async fn announce_module_change(&mut self, _: &TenantId) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl ModuleCatalog for SqliteStore {
    async fn module_set(&self, tenant: &TenantId) -> StoreResult<ModuleSet> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let revision: Option<i64> = tx
                .prepare_cached("SELECT modules_revision FROM tenants WHERE id = ?1")?
                .query_row([tenant.as_str()], |row| row.get(0))
                .optional()?;
            let mut statement = tx.prepare_cached(
                "SELECT m.name, m.active_hash, m.origin, m.updated_at, \
                 COALESCE(v.size_bytes, 0) AS active_bytes FROM modules m \
                 LEFT JOIN module_versions v ON v.tenant_id = m.tenant_id AND v.hash = m.active_hash \
                 WHERE m.tenant_id = ?1 ORDER BY m.name",
            )?;
            let modules = collect(statement.query([tenant.as_str()])?, |row| {
                module_from_row(row)
            })?;
            Ok(ModuleSet {
                revision: revision.unwrap_or(0),
                modules,
            })
        })
        .await
    }

    async fn change_modules(
        &self,
        tenant: &TenantId,
        expected_revision: i64,
        changes: &[ModuleChange],
        at: Timestamp,
    ) -> StoreResult<Option<i64>> {
        let (tenant, changes) = (tenant.clone(), changes.to_vec());
        self.write_without_memberships(move |tx| {
            run_sync(flows::module_changes::change_modules(
                &mut SqliteTx::new(tx),
                &tenant,
                expected_revision,
                &changes,
                at,
            ))
        })
        .await
    }

    async fn module_component(
        &self,
        tenant: &TenantId,
        hash: &str,
        with_wasm: bool,
    ) -> StoreResult<Option<ModuleComponent>> {
        let (tenant, hash) = (tenant.clone(), hash.to_owned());
        self.read(move |tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT name, CASE WHEN ?3 THEN wasm END FROM module_versions \
                     WHERE tenant_id = ?1 AND hash = ?2",
                )?
                .query_row(params![tenant.as_str(), hash, with_wasm], |row| {
                    Ok(ModuleComponent {
                        name: row.get(0)?,
                        wasm: row.get(1)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn module_versions(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Vec<ModuleVersionRecord>> {
        let (tenant, name) = (tenant.clone(), name.to_owned());
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(VERSIONS)?;
            collect(statement.query(params![tenant.as_str(), name])?, |row| {
                module_version_from_row(row)
            })
        })
        .await
    }

    async fn prune_module_versions(
        &self,
        tenant: &TenantId,
        name: &str,
        keep: usize,
    ) -> StoreResult<Vec<String>> {
        let (tenant, name) = (tenant.clone(), name.to_owned());
        self.write_without_memberships(move |tx| {
            let mut statement = tx.prepare_cached(
                "DELETE FROM module_versions WHERE tenant_id = ?1 AND name = ?2 AND hash IN ( \
                 SELECT v.hash FROM module_versions v WHERE v.tenant_id = ?1 AND v.name = ?2 \
                 AND v.hash IS NOT (SELECT active_hash FROM modules m \
                     WHERE m.tenant_id = ?1 AND m.name = ?2) \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = ?1 \
                     AND r.module_hash = v.hash AND r.status IN ('active', 'waiting')) \
                 ORDER BY v.activated_at DESC NULLS LAST, v.deployed_at DESC \
                 LIMIT -1 OFFSET ?3) RETURNING hash",
            )?;
            collect(
                statement.query(params![tenant.as_str(), name, keep as i64])?,
                |row| Ok(row.get(0)?),
            )
        })
        .await
    }

    async fn live_runs_on(
        &self,
        tenant: &TenantId,
        hash: &str,
        after: Option<&RunId>,
        limit: u32,
    ) -> StoreResult<Vec<RunId>> {
        let (tenant, hash) = (tenant.clone(), hash.to_owned());
        let after = after.map_or_else(String::new, |run| run.as_str().to_owned());
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT id FROM runs WHERE tenant_id = ?1 AND module_hash = ?2 \
                 AND status IN ('active', 'waiting') AND id > ?3 ORDER BY id LIMIT ?4",
            )?;
            collect(
                statement.query(params![tenant.as_str(), hash, after, limit])?,
                |row| Ok(RunId(row.get(0)?)),
            )
        })
        .await
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
        let (tenant, run) = (tenant.clone(), run.clone());
        let (from, to) = (from.to_owned(), to.to_owned());
        self.write_without_memberships(move |tx| {
            let moved = tx
                .prepare_cached(
                    "UPDATE runs SET module_hash = ?4, updated_at = ?6 \
                     WHERE id = ?2 AND tenant_id = ?1 AND module_hash = ?3 \
                     AND status IN ('active', 'waiting') \
                     AND (SELECT COUNT(*) FROM journal WHERE run_id = ?2) = ?5 \
                     AND NOT EXISTS (SELECT 1 FROM timers t WHERE t.run_id = ?2 \
                         AND t.lease_owner IS NOT NULL)",
                )?
                .execute(params![
                    tenant.as_str(),
                    run.as_str(),
                    from,
                    to,
                    journal_len,
                    now.0
                ])?;
            Ok(moved > 0)
        })
        .await
    }

    async fn module_revisions(&self) -> StoreResult<Vec<(TenantId, i64)>> {
        self.read(|tx| {
            let mut statement =
                tx.prepare_cached("SELECT id, modules_revision FROM tenants ORDER BY id")?;
            collect(statement.query([])?, |row| {
                Ok((TenantId(row.get(0)?), row.get(1)?))
            })
        })
        .await
    }

    async fn watch_module_changes(&self, _: Arc<Notify>) -> StoreResult<()> {
        Ok(())
    }
}
