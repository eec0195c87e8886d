//! Modules: loading journey components, validating their manifests, and the registry of what is
//! active per tenant.
//!
//! A module version is content-addressed by the sha256 of its wasm. Loading copies the wasm
//! into the data dir's module store (so runs pinned to a version outlive the file they came
//! from), compiles it through the runtime's artifact cache, calls `describe` and validates the
//! manifest. The registry maps a tenant's trigger events to the journeys of its newest versions
//! and keeps every loaded version by hash for pinned runs. It must not run journeys.

pub mod build;
pub mod manifest;

use crate::buckets::BucketRegistry;
use crate::delivery::templates::TemplateSet;
use crate::ids::TenantId;
use crate::journeys::router::RunCandidate;
use crate::runtime::{CompiledModule, Runtime, RuntimeError, sha256_hex};
use crate::store::IngestRouting;
use arc_swap::ArcSwap;
use manifest::{JourneyDef, ModuleManifest};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{path}: {source}")]
    Runtime { path: String, source: RuntimeError },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("i/o error on {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("module version {0} is not available in the module store")]
    MissingVersion(String),
}

/// One loaded module version.
pub struct LoadedModule {
    pub name: String,
    pub hash: String,
    pub manifest: ModuleManifest,
    pub templates: Arc<TemplateSet>,
    pub compiled: CompiledModule,
}

impl LoadedModule {
    pub fn journey(&self, id: &str) -> Option<&JourneyDef> {
        self.manifest.journeys.iter().find(|j| j.id == id)
    }
}

/// A tenant's active journeys (in module order), indexed by trigger event and by exit event,
/// and its buckets.
#[derive(Default)]
struct ActiveSet {
    journeys: Vec<(Arc<LoadedModule>, JourneyDef)>,
    by_trigger: HashMap<String, Vec<usize>>,
    by_exit_event: HashMap<String, Vec<usize>>,
    buckets: Arc<BucketRegistry>,
}

impl ActiveSet {
    /// The journeys `index` (one of the maps above) lists under `event`.
    fn indexed<'a>(
        &'a self,
        index: &'a HashMap<String, Vec<usize>>,
        event: &str,
    ) -> impl Iterator<Item = &'a (Arc<LoadedModule>, JourneyDef)> + use<'a> {
        index
            .get(event)
            .into_iter()
            .flatten()
            .map(|&i| &self.journeys[i])
    }
}

/// Where module wasm and compiled artifacts live on disk.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    fn keep(&self, hash: &str, wasm: &[u8]) -> Result<(), ModuleError> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| ModuleError::Io(self.dir.clone(), e))?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, wasm).map_err(|e| ModuleError::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ModuleError::Io(path.clone(), e))
    }

    fn read(&self, hash: &str) -> Result<Vec<u8>, ModuleError> {
        let path = self.path(hash);
        let wasm =
            std::fs::read(&path).map_err(|_| ModuleError::MissingVersion(hash.to_owned()))?;
        if sha256_hex(&wasm) != hash {
            return Err(ModuleError::MissingVersion(format!(
                "{hash} (the stored file is corrupt)"
            )));
        }
        Ok(wasm)
    }
}

pub struct ModuleRegistry {
    runtime: Arc<Runtime>,
    store: ModuleStore,
    versions: RwLock<HashMap<String, Arc<LoadedModule>>>,
    active: ArcSwap<HashMap<TenantId, Arc<ActiveSet>>>,
}

impl ModuleRegistry {
    pub fn new(runtime: Arc<Runtime>, store: ModuleStore) -> Self {
        Self {
            runtime,
            store,
            versions: RwLock::new(HashMap::new()),
            active: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Load one module version from its wasm bytes (idempotent per hash).
    pub async fn load(
        &self,
        name: &str,
        wasm: &[u8],
        origin: &str,
    ) -> Result<Arc<LoadedModule>, ModuleError> {
        let hash = sha256_hex(wasm);
        if let Some(loaded) = self.version_if_loaded(&hash) {
            return Ok(loaded);
        }
        self.store.keep(&hash, wasm)?;
        let runtime_err = |source| ModuleError::Runtime {
            path: origin.to_owned(),
            source,
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
        let described = self
            .runtime
            .describe(&compiled)
            .await
            .map_err(runtime_err)?;
        let manifest =
            ModuleManifest::from_wit(described).map_err(|message| ModuleError::Manifest {
                path: origin.to_owned(),
                message,
            })?;
        let templates = TemplateSet::new(
            manifest
                .templates
                .iter()
                .map(|t| (t.key.clone(), t.source())),
        )
        .map_err(|message| ModuleError::Manifest {
            path: origin.to_owned(),
            message,
        })?;
        manifest
            .check_templates_exist(&templates)
            .map_err(|message| ModuleError::Manifest {
                path: origin.to_owned(),
                message,
            })?;
        let loaded = Arc::new(LoadedModule {
            name: name.to_owned(),
            hash: hash.clone(),
            manifest,
            templates: Arc::new(templates),
            compiled,
        });
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, loaded.clone());
        Ok(loaded)
    }

    fn version_if_loaded(&self, hash: &str) -> Option<Arc<LoadedModule>> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    /// The version a run is pinned to: in memory, or reloaded from the module store.
    pub async fn version(&self, hash: &str, name: &str) -> Result<Arc<LoadedModule>, ModuleError> {
        if let Some(loaded) = self.version_if_loaded(hash) {
            return Ok(loaded);
        }
        let wasm = self.store.read(hash)?;
        self.load(name, &wasm, &format!("module store {hash}"))
            .await
    }

    /// Make `modules` the tenant's active set, atomically. Journey ids must be unique across them.
    pub fn activate(
        &self,
        tenant: &TenantId,
        modules: &[Arc<LoadedModule>],
    ) -> Result<(), ModuleError> {
        let mut owners: HashMap<&str, &str> = HashMap::new();
        let mut set = ActiveSet::default();
        for module in modules {
            for journey in &module.manifest.journeys {
                if let Some(other) = owners.insert(journey.id.as_str(), module.name.as_str()) {
                    return Err(ModuleError::Conflict(format!(
                        "journey id {:?} is declared by both {other:?} and {:?}",
                        journey.id, module.name
                    )));
                }
                let at = set.journeys.len();
                set.by_trigger
                    .entry(journey.trigger.clone())
                    .or_default()
                    .push(at);
                let mut exit_events: Vec<&str> =
                    journey.exit_on.iter().map(|r| r.event.as_str()).collect();
                exit_events.sort_unstable();
                exit_events.dedup();
                for event in exit_events {
                    set.by_exit_event
                        .entry(event.to_owned())
                        .or_default()
                        .push(at);
                }
                set.journeys.push((module.clone(), journey.clone()));
            }
        }
        set.buckets = Arc::new(
            BucketRegistry::build(
                modules
                    .iter()
                    .map(|m| (m.name.as_str(), m.manifest.buckets.as_slice())),
            )
            .map_err(|duplicate| ModuleError::Conflict(duplicate.to_string()))?,
        );
        let mut next = HashMap::clone(&self.active.load());
        next.insert(tenant.clone(), Arc::new(set));
        self.active.store(Arc::new(next));
        Ok(())
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
        self.active
            .load()
            .get(tenant)
            .map(|set| set.indexed(&set.by_trigger, event).cloned().collect())
            .unwrap_or_default()
    }

    /// The ids of the journeys an event ends live runs of: one of their `exitOn` rules names
    /// it and its condition holds on the event's properties. Disabled journeys included.
    pub fn exited_by(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        self.active
            .load()
            .get(tenant)
            .map(|set| {
                set.indexed(&set.by_exit_event, event_name)
                    .filter(|(_, j)| {
                        j.exit_on
                            .iter()
                            .any(|rule| rule.matches(event_name, event_properties))
                    })
                    .map(|(_, j)| j.id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The tenant's active journeys (declared ones and bucket reactions), in module order.
    pub fn journeys(&self, tenant: &TenantId) -> Vec<(Arc<LoadedModule>, JourneyDef)> {
        self.active
            .load()
            .get(tenant)
            .map(|set| set.journeys.clone())
            .unwrap_or_default()
    }

    /// One of the tenant's active journeys.
    pub fn journey(&self, tenant: &TenantId, id: &str) -> Option<(Arc<LoadedModule>, JourneyDef)> {
        self.active
            .load()
            .get(tenant)
            .and_then(|set| set.journeys.iter().find(|(_, j)| j.id == id).cloned())
    }

    /// The tenants that have an active module set.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.active.load().keys().cloned().collect()
    }

    /// The tenant's buckets (empty when it has none).
    pub fn bucket_registry(&self, tenant: &TenantId) -> Arc<BucketRegistry> {
        self.active
            .load()
            .get(tenant)
            .map(|set| set.buckets.clone())
            .unwrap_or_default()
    }

    /// Load every `*.wasm` in `dir` (sorted by name) and make them the tenant's active set.
    pub async fn load_dir(
        &self,
        tenant: &TenantId,
        dir: &Path,
    ) -> Result<Vec<Arc<LoadedModule>>, ModuleError> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ModuleError::Io(dir.to_owned(), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        let mut loaded = Vec::with_capacity(paths.len());
        for path in paths {
            let wasm = std::fs::read(&path).map_err(|e| ModuleError::Io(path.clone(), e))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let module = self.load(&name, &wasm, &path.display().to_string()).await?;
            tracing::info!(
                module = %name,
                version = &module.hash[..12],
                journeys = module.manifest.journeys.len(),
                "loaded module"
            );
            loaded.push(module);
        }
        self.activate(tenant, &loaded)?;
        Ok(loaded)
    }
}

/// Ingest routes with the modules active when it asks: journeys through the router, buckets
/// from the tenant's registry.
impl IngestRouting for ModuleRegistry {
    fn journeys(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<RunCandidate> {
        let bound = self.bound_to(tenant, event_name);
        crate::journeys::router::candidates_for(
            bound
                .iter()
                .map(|(module, journey)| (module.hash.as_str(), journey)),
            event_properties,
        )
    }

    fn exits(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        self.exited_by(tenant, event_name, event_properties)
    }

    fn buckets(&self, tenant: &TenantId) -> Option<Arc<BucketRegistry>> {
        Some(self.bucket_registry(tenant)).filter(|registry| !registry.is_empty())
    }
}
