//! The registry: the module versions this process has loaded, and each tenant's active set.
//!
//! Loading a version compiles it through the runtime's artifact cache, calls `describe` and
//! validates the manifest; versions are kept by hash for the runs pinned to them. A tenant's
//! active set is swapped whole ([`ModuleRegistry::install`]); readers take a snapshot without
//! locking. It must not run journeys.

use super::active_set::ActiveSet;
use super::files::ModuleFiles;
use super::manifest::{JourneyDef, ModuleManifest};
use super::{LoadedModule, ModuleError};
use crate::buckets::BucketRegistry;
use crate::delivery::templates::TemplateSet;
use crate::ids::TenantId;
use crate::journeys::router::RunCandidate;
use crate::runtime::{Runtime, RuntimeError, sha256_hex};
use crate::store::{IngestRouting, ModuleCatalog};
use crate::tenancy::limits::TenantLimits;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

pub struct ModuleRegistry {
    runtime: Arc<Runtime>,
    files: ModuleFiles,
    /// Where versions not kept locally come from; `None` for a registry without a database.
    catalog: Option<Arc<dyn ModuleCatalog>>,
    /// The tenants' limits `describe` runs under; the host's defaults without them.
    limits: Option<Arc<TenantLimits>>,
    /// By tenant, then hash: within a tenant a version belongs to one module name. Nested so
    /// an activation's lookup borrows its keys instead of building a tuple of copies.
    versions: RwLock<HashMap<TenantId, HashMap<String, Arc<LoadedModule>>>>,
    active: ArcSwap<HashMap<TenantId, Arc<ActiveSet>>>,
    /// Serialises installs (readers never wait on it).
    installing: Mutex<()>,
}

impl ModuleRegistry {
    pub fn new(runtime: Arc<Runtime>, files: ModuleFiles) -> Self {
        Self {
            runtime,
            files,
            catalog: None,
            limits: None,
            versions: RwLock::new(HashMap::new()),
            active: ArcSwap::from_pointee(HashMap::new()),
            installing: Mutex::new(()),
        }
    }

    /// Fetch versions not kept locally from `catalog`.
    pub fn with_catalog(mut self, catalog: Arc<dyn ModuleCatalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Run each tenant's `describe` under its own limits.
    pub fn with_limits(mut self, limits: Arc<TenantLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Load one of the tenant's module versions from its wasm bytes (idempotent per tenant
    /// and hash): compile, describe and validate it. `origin` names it in errors (a path).
    pub async fn load(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: &[u8],
        origin: &str,
    ) -> Result<Arc<LoadedModule>, ModuleError> {
        let hash = sha256_hex(wasm);
        if let Some(loaded) = self.version_if_loaded(tenant, &hash) {
            return same_name(loaded, name);
        }
        let runtime_err = |source| ModuleError::Runtime {
            path: origin.to_owned(),
            source,
        };
        let manifest_err = |message| ModuleError::Manifest {
            path: origin.to_owned(),
            message,
        };
        let runtime = self.runtime.clone();
        let wasm_owned = wasm.to_vec();
        // Compiling can take seconds (a JS guest): keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || runtime.compile(&wasm_owned))
            .await
            .map_err(|e| {
                runtime_err(RuntimeError::Compile(format!(
                    "compilation task failed: {e}"
                )))
            })?
            .map_err(runtime_err)?;
        let limits = match &self.limits {
            Some(limits) => limits.activation(tenant),
            None => self.runtime.limits(),
        };
        let described = self
            .runtime
            .describe(&compiled, limits)
            .await
            .map_err(runtime_err)?;
        let manifest = ModuleManifest::from_wit(described).map_err(manifest_err)?;
        let templates = TemplateSet::new(
            manifest
                .templates
                .iter()
                .map(|t| (t.key.clone(), t.source())),
        )
        .map_err(manifest_err)?;
        manifest
            .check_templates_exist(&templates)
            .map_err(manifest_err)?;
        self.files.keep(&hash, wasm)?;
        let loaded = Arc::new(LoadedModule {
            name: name.to_owned(),
            hash: hash.clone(),
            manifest,
            templates: Arc::new(templates),
            compiled,
            size_bytes: wasm.len() as u64,
        });
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.clone())
            .or_default()
            .insert(hash, loaded.clone());
        Ok(loaded)
    }

    fn version_if_loaded(&self, tenant: &TenantId, hash: &str) -> Option<Arc<LoadedModule>> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .and_then(|versions| versions.get(hash))
            .cloned()
    }

    /// One of the tenant's versions (a run's pinned one, an active one at boot): in memory,
    /// else loaded from the local copy or the catalog, under the name the catalog has for it.
    pub async fn version(
        &self,
        tenant: &TenantId,
        hash: &str,
    ) -> Result<Arc<LoadedModule>, ModuleError> {
        if let Some(loaded) = self.version_if_loaded(tenant, hash) {
            return Ok(loaded);
        }
        let local = self.files.read(hash);
        let (name, wasm) = match &self.catalog {
            Some(catalog) => {
                let stored = catalog
                    .module_component(tenant, hash, local.is_none())
                    .await
                    .map_err(|e| ModuleError::Catalog {
                        hash: hash.to_owned(),
                        message: e.to_string(),
                    })?
                    .ok_or_else(|| ModuleError::MissingVersion(hash.to_owned()))?;
                (stored.name, local.or(stored.wasm))
            }
            None => (hash.to_owned(), local),
        };
        let wasm = wasm.ok_or_else(|| ModuleError::MissingVersion(hash.to_owned()))?;
        if sha256_hex(&wasm) != hash {
            return Err(ModuleError::MissingVersion(format!(
                "{hash} (the stored component is corrupt)"
            )));
        }
        self.load(
            tenant,
            &name,
            &wasm,
            &format!("module {name} version {hash}"),
        )
        .await
    }

    /// Make `set` the tenant's active set unless the installed one is of a later revision
    /// (a slower reload must not undo a newer deploy); whether it was installed.
    pub fn install(&self, tenant: &TenantId, set: ActiveSet) -> bool {
        let _serialised = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.active.load();
        if current
            .get(tenant)
            .is_some_and(|installed| installed.revision > set.revision)
        {
            return false;
        }
        let set = Arc::new(set);
        let mut next = HashMap::clone(&current);
        let previous = next.insert(tenant.clone(), set.clone());
        self.active.store(Arc::new(next));
        self.forget_unused(tenant, &set, previous.as_deref());
        true
    }

    /// Drop the tenant's loaded versions that neither the new set nor the one it replaced
    /// holds: hot reload makes a version per save, and memory must not grow with them. A run
    /// still pinned to a dropped version loads it again from the local copy when it wakes.
    fn forget_unused(&self, tenant: &TenantId, set: &ActiveSet, previous: Option<&ActiveSet>) {
        let kept = |hash: &str| {
            set.modules.iter().any(|m| m.hash == hash)
                || previous.is_some_and(|p| p.modules.iter().any(|m| m.hash == hash))
        };
        if let Some(versions) = self
            .versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(tenant)
        {
            versions.retain(|hash, _| kept(hash));
        }
    }

    /// Drop a deleted tenant: its active set and every version loaded for it.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let _serialised = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.active.load();
        if current.contains_key(tenant) {
            let mut next = HashMap::clone(&current);
            next.remove(tenant);
            self.active.store(Arc::new(next));
        }
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }

    /// Make `modules` the tenant's active set, whatever is installed: for a registry without
    /// a catalog (tests driving the runtime directly).
    pub fn activate(
        &self,
        tenant: &TenantId,
        modules: &[Arc<LoadedModule>],
    ) -> Result<(), ModuleError> {
        let revision = self.active_set(tenant).map_or(0, |set| set.revision) + 1;
        self.install(tenant, ActiveSet::build(revision, modules.to_vec())?);
        Ok(())
    }

    /// The tenant's modules as they are now, routing as one whole set however many deploys
    /// swap it afterwards.
    pub fn routing_snapshot(&self, tenant: &TenantId) -> Arc<dyn IngestRouting> {
        Arc::new(TenantRouting {
            tenant: tenant.clone(),
            set: self.active_set(tenant),
        })
    }

    /// The tenant's active set as it is now (one consistent snapshot).
    pub fn active_set(&self, tenant: &TenantId) -> Option<Arc<ActiveSet>> {
        self.active.load().get(tenant).cloned()
    }

    /// The enabled journeys an event name starts for a tenant, with their module.
    pub fn triggered_by(
        &self,
        tenant: &TenantId,
        event: &str,
    ) -> Vec<(Arc<LoadedModule>, JourneyDef)> {
        let mut bound = self.bound_to(tenant, event);
        bound.retain(|(_, j)| j.enabled);
        bound
    }

    /// Every journey whose trigger is `event`, disabled ones included (their skips count).
    pub fn bound_to(&self, tenant: &TenantId, event: &str) -> Vec<(Arc<LoadedModule>, JourneyDef)> {
        self.active_set(tenant)
            .map(|set| set.triggered_by(event).cloned().collect())
            .unwrap_or_default()
    }

    /// The tenant's active journeys (declared ones and bucket reactions), in module order.
    pub fn journeys(&self, tenant: &TenantId) -> Vec<(Arc<LoadedModule>, JourneyDef)> {
        self.active_set(tenant)
            .map(|set| set.journeys.clone())
            .unwrap_or_default()
    }

    /// One of the tenant's active journeys.
    pub fn journey(&self, tenant: &TenantId, id: &str) -> Option<(Arc<LoadedModule>, JourneyDef)> {
        self.active_set(tenant)
            .and_then(|set| set.journeys.iter().find(|(_, j)| j.id == id).cloned())
    }

    /// The tenants that have an active module set.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.active.load().keys().cloned().collect()
    }

    /// The tenant's buckets (empty when it has none).
    pub fn bucket_registry(&self, tenant: &TenantId) -> Arc<BucketRegistry> {
        self.active_set(tenant)
            .map(|set| set.buckets.clone())
            .unwrap_or_default()
    }
}

/// Within a tenant a version belongs to one module: the same component under another name
/// is refused, naming the module it belongs to.
pub(super) fn same_name(
    loaded: Arc<LoadedModule>,
    name: &str,
) -> Result<Arc<LoadedModule>, ModuleError> {
    if loaded.name == name {
        Ok(loaded)
    } else {
        Err(ModuleError::Conflict(format!(
            "this component is already a version of module {:?}; deploy it under that name",
            loaded.name
        )))
    }
}

/// The tenant's modules as one snapshot: what an ingest routes one request's events by.
struct TenantRouting {
    tenant: TenantId,
    set: Option<Arc<ActiveSet>>,
}

impl TenantRouting {
    /// The snapshot's set, for its own tenant only.
    fn set_of(&self, tenant: &TenantId) -> Option<&ActiveSet> {
        self.set.as_deref().filter(|_| *tenant == self.tenant)
    }
}

impl IngestRouting for TenantRouting {
    fn journeys(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<RunCandidate> {
        self.set_of(tenant)
            .map(|set| set.candidates(event_name, event_properties))
            .unwrap_or_default()
    }

    fn exits(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        self.set_of(tenant)
            .map(|set| set.exits(event_name, event_properties))
            .unwrap_or_default()
    }

    fn buckets(&self, tenant: &TenantId) -> Option<Arc<BucketRegistry>> {
        self.set_of(tenant)
            .map(|set| set.buckets.clone())
            .filter(|registry| !registry.is_empty())
    }
}

/// Routing by the modules active when asked, each call on its own snapshot: for batches
/// whose items carry none (every ingest request, job pass and contact change routes by one
/// [`ModuleRegistry::routing_snapshot`] instead).
impl IngestRouting for ModuleRegistry {
    fn journeys(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<RunCandidate> {
        self.routing_snapshot(tenant)
            .journeys(tenant, event_name, event_properties)
    }

    fn exits(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        self.routing_snapshot(tenant)
            .exits(tenant, event_name, event_properties)
    }

    fn buckets(&self, tenant: &TenantId) -> Option<Arc<BucketRegistry>> {
        self.routing_snapshot(tenant).buckets(tenant)
    }
}
