//! Following the catalog: every tenant's active set loaded at boot, reloaded when another
//! process commits a change, and dropped once the tenant is deleted (PostgreSQL's
//! LISTEN/NOTIFY wakes the follower at once; comparing revisions every [`POLL`] makes up for a
//! notification lost with its connection).
//!
//! A version that fails to load (its component missing, or no longer valid for this host) is
//! left out of its tenant's set with an error naming the tenant, module and version; the rest
//! of the tenant's modules, and every other tenant's, are served.

use super::active_set::ActiveSet;
use super::{LoadedModule, ModuleRegistry};
use crate::backfill_job;
use crate::clock::Clock;
use crate::ids::TenantId;
use crate::store::{Backfills, ModuleCatalog, ModuleSet, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often revisions are compared without a notification.
pub const POLL: Duration = Duration::from_secs(1);

/// The active versions of `set`, loaded; one that fails is logged and left out.
pub async fn load_active(
    registry: &ModuleRegistry,
    tenant: &TenantId,
    set: &ModuleSet,
) -> Vec<Arc<LoadedModule>> {
    let mut loaded = Vec::with_capacity(set.modules.len());
    for record in &set.modules {
        let Some(hash) = &record.active_hash else {
            continue;
        };
        match registry.version(tenant, hash).await {
            Ok(module) => loaded.push(module),
            Err(error) => tracing::error!(
                tenant = %tenant,
                module = %record.name,
                version = %hash,
                "module skipped: {error}"
            ),
        }
    }
    loaded
}

/// Loads tenants' active sets from the catalog into the registry.
pub struct Follower {
    pub catalog: Arc<dyn ModuleCatalog>,
    pub backfills: Arc<dyn Backfills>,
    pub registry: Arc<ModuleRegistry>,
    pub clock: Clock,
    /// Woken when a reload queued a backfill.
    pub backfill_wake: Arc<Notify>,
}

impl Follower {
    /// Load every tenant whose modules are newer than what the registry has installed, and
    /// drop the tenants that were deleted.
    pub async fn catch_up(&self) -> StoreResult<()> {
        // Listed before the catalog is read: a tenant installed by then existed in the
        // database, so missing from the catalog now means deleted.
        let installed_tenants = self.registry.tenants();
        let revisions = self.catalog.module_revisions().await?;
        for gone in installed_tenants
            .iter()
            .filter(|tenant| !revisions.iter().any(|(t, _)| t == *tenant))
        {
            self.registry.forget_tenant(gone);
            tracing::info!(tenant = %gone, "tenant deleted: its modules unloaded");
        }
        for (tenant, revision) in revisions {
            let installed = self
                .registry
                .active_set(&tenant)
                .map_or(0, |set| set.revision);
            if revision > installed {
                self.load_tenant(&tenant).await?;
            }
        }
        Ok(())
    }

    /// Install the tenant's active set as the catalog has it now. Modules that conflict
    /// (which a deploy never commits, but a host of another version might judge otherwise)
    /// are left out one by one, in name order, each with an error.
    pub async fn load_tenant(&self, tenant: &TenantId) -> StoreResult<()> {
        let set = self.catalog.module_set(tenant).await?;
        let mut accepted: Vec<Arc<LoadedModule>> = Vec::new();
        let mut active = ActiveSet::default();
        active.revision = set.revision;
        for module in load_active(&self.registry, tenant, &set).await {
            let mut candidate = accepted.clone();
            candidate.push(module.clone());
            match ActiveSet::build(set.revision, candidate) {
                Ok(built) => {
                    accepted.push(module);
                    active = built;
                }
                Err(error) => tracing::error!(
                    tenant = %tenant,
                    module = %module.name,
                    version = %module.hash,
                    "module skipped: {error}"
                ),
            }
        }
        let buckets = active.buckets.clone();
        let modules = active.modules.len();
        if self.registry.install(tenant, active) {
            tracing::info!(tenant = %tenant, revision = set.revision, modules, "modules loaded");
            backfill_job::register(self.backfills.as_ref(), tenant, &buckets, self.clock.now())
                .await?;
            self.backfill_wake.notify_one();
        }
        Ok(())
    }

    /// Follow changes committed by any process, for as long as the host runs.
    pub async fn spawn(self) -> StoreResult<tokio::task::JoinHandle<()>> {
        let wake = Arc::new(Notify::new());
        self.catalog.watch_module_changes(wake.clone()).await?;
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                if let Err(error) = self.catch_up().await {
                    tracing::warn!(%error, "following module changes failed; retrying");
                }
            }
        }))
    }
}
