//! The module catalog: each tenant's deployed module versions (with their components) and
//! which one of each module is active, at a revision every host follows.

use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::{ModuleChange, ModuleComponent, ModuleSet, ModuleVersionRecord, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::Notify;

#[async_trait]
pub trait ModuleCatalog: Send + Sync {
    /// The tenant's modules, removed ones included, by name, and their revision.
    async fn module_set(&self, tenant: &TenantId) -> StoreResult<ModuleSet>;
    /// Apply `changes` in one transaction if the tenant's modules are still at
    /// `expected_revision` (the set a deploy checked its conflicts against): the new revision,
    /// or `None` when another change committed first and nothing was applied.
    async fn change_modules(
        &self,
        tenant: &TenantId,
        expected_revision: i64,
        changes: &[ModuleChange],
        at: Timestamp,
    ) -> StoreResult<Option<i64>>;
    /// One of the tenant's versions: its module's name and, when `with_wasm`, its component
    /// (`None` for a version recorded before versions kept their bytes).
    async fn module_component(
        &self,
        tenant: &TenantId,
        hash: &str,
        with_wasm: bool,
    ) -> StoreResult<Option<ModuleComponent>>;
    /// The versions of one of the tenant's modules, last activated first, each with its live
    /// runs.
    async fn module_versions(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Vec<ModuleVersionRecord>>;
    /// Delete the versions of the tenant's module that are not active and have no live
    /// runs, keeping the `keep` most recently activated of them; the hashes deleted.
    async fn prune_module_versions(
        &self,
        tenant: &TenantId,
        name: &str,
        keep: usize,
    ) -> StoreResult<Vec<String>>;
    /// The live runs pinned to one of the tenant's versions, by id after `after`, at most
    /// `limit`: the runs a verified upgrade replays.
    async fn live_runs_on(
        &self,
        tenant: &TenantId,
        hash: &str,
        after: Option<&RunId>,
        limit: u32,
    ) -> StoreResult<Vec<RunId>>;
    /// Move a live run from version `from` to `to` if its journal still has exactly
    /// `journal_len` entries (the ones a replay against `to` checked) and no activation holds
    /// it; whether it moved.
    async fn repin_run(
        &self,
        tenant: &TenantId,
        run: &RunId,
        from: &str,
        to: &str,
        journal_len: u32,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Every tenant's module revision: a host reloads the tenants whose revision moved.
    async fn module_revisions(&self) -> StoreResult<Vec<(TenantId, i64)>>;
    /// Wake `wake` whenever any process commits a change of modules (PostgreSQL's
    /// LISTEN/NOTIFY); a no-op where one process owns the database. Returns once listening.
    async fn watch_module_changes(&self, wake: Arc<Notify>) -> StoreResult<()>;
}
