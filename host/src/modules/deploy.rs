//! Deploying modules: a new version, a rollback, a removal, or a `--modules` directory synced.
//!
//! Every change takes the same path ([`Deployer::commit`]): read the tenant's modules at a
//! revision, plan the changes and the active set they make, check that set (journey, bucket
//! and template ids unique across the tenant's modules), commit the changes only if the
//! revision has not moved (else plan again over the new one), then install the set and queue
//! the backfills of new or changed buckets. A version is validated before anything is
//! stored — a component of our world importing only what we provide, under the size cap,
//! whose `describe` answers within its deadline and declares a valid manifest — so a bad
//! deploy leaves the previous version serving and nothing half-stored.
//!
//! The tenant's active versions together may not outgrow its `moduleBytes` limit: a change
//! that would take their total over it is refused (checked on the revision it commits over,
//! so two deploys at once cannot both slip under it). A change that does not grow the total is
//! always allowed, so a tenant whose limit was lowered below what it has can still shrink.

use super::active_set::ActiveSet;
use super::changes::ChangeSummary;
use super::{LoadedModule, ModuleError, ModuleRegistry};
use crate::backfill_job;
use crate::buckets::BucketRegistry;
use crate::clock::Clock;
use crate::ids::{ApiKeyId, TenantId};
use crate::runtime::sha256_hex;
use crate::store::{
    Backfills, ModuleCatalog, ModuleChange, ModuleOrigin, ModuleRecord, ModuleSet,
    NewModuleVersion, RunReads, StoreError,
};
use crate::tenancy::limits::TenantLimits;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest module name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest component accepted by default (a componentize-js guest is about 12 MB).
pub const DEFAULT_MAX_MODULE_BYTES: usize = 32 << 20;
/// How many times a change is planned again when other changes keep committing first.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("invalid module name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("the component is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The tenant's active versions would outgrow its `moduleBytes` limit.
    #[error(
        "the tenant's deployed modules would total {after} bytes, over its limit of {limit} \
         bytes (moduleBytes); they total {current} bytes now: remove a module, or ask the \
         operator for a higher limit"
    )]
    ModuleBytes {
        after: u64,
        limit: u64,
        current: u64,
    },
    /// Not a component of our world, `describe` failed, or the manifest is invalid.
    #[error("{0}")]
    Invalid(ModuleError),
    /// Ids that another of the tenant's modules declares, or a component deployed under
    /// another name.
    #[error("{0}")]
    Conflict(String),
    #[error("no module named {0:?}")]
    NoSuchModule(String),
    #[error("module {name:?} has no version {version:?}")]
    NoSuchVersion { name: String, version: String },
    #[error("module {0:?} has no other version to roll back to")]
    NothingToRollBackTo(String),
    #[error("other changes to this tenant's modules kept committing first; try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ModuleError> for DeployError {
    fn from(error: ModuleError) -> Self {
        match error {
            ModuleError::Conflict(message) => DeployError::Conflict(message),
            other => DeployError::Invalid(other),
        }
    }
}

/// What a committed change did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub module: String,
    /// The module's active version now (`None` once removed).
    pub version: Option<String>,
    /// The tenant's module revision now.
    pub revision: i64,
    /// False when the change was already in effect (the same version deployed again).
    pub changed: bool,
    pub changes: ChangeSummary,
    pub timings: DeployTimings,
}

/// Where a deploy's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeployTimings {
    /// Compiling (or loading the compiled artifact), `describe` and the manifest checks.
    pub validate: Duration,
    /// Planning and committing the change to the database.
    pub commit: Duration,
    /// Swapping the tenant's active set in memory.
    pub swap: Duration,
}

/// What syncing a `--modules` directory did.
#[derive(Debug, Default)]
pub struct DirectorySync {
    /// Modules whose active version changed, and to which.
    pub deployed: Vec<(String, String)>,
    pub unchanged: Vec<String>,
    /// Modules the directory deployed whose file is gone.
    pub removed: Vec<String>,
    /// Files that could not be deployed (the module's previous version, if any, still serves).
    pub skipped: Vec<(PathBuf, DeployError)>,
}

/// A directory's file that validated: its path, the version and its component.
type ValidFile = (PathBuf, Arc<LoadedModule>, Arc<[u8]>);

/// A planned change: what to commit and the active modules it leaves.
struct Plan {
    changes: Vec<ModuleChange>,
    next: Vec<Arc<LoadedModule>>,
}

pub struct Deployer {
    pub catalog: Arc<dyn ModuleCatalog>,
    /// The live runs a verified upgrade replays.
    pub runs: Arc<dyn RunReads>,
    pub backfills: Arc<dyn Backfills>,
    pub registry: Arc<ModuleRegistry>,
    pub clock: Clock,
    /// Woken when a deploy queued a backfill.
    pub backfill_wake: Arc<Notify>,
    pub max_module_bytes: usize,
    /// Each tenant's total module size, and the limits its versions are described under.
    pub limits: Arc<TenantLimits>,
}

impl Deployer {
    /// Validate `wasm` as version of module `name` and make it the module's active version.
    pub async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: Vec<u8>,
        deployed_by: Option<ApiKeyId>,
    ) -> Result<Deployed, DeployError> {
        // Before the component is compiled: a deploy over the limit costs one read. (The
        // commit checks again, over the revision it commits on.)
        let set = self.catalog.module_set(tenant).await?;
        let current: u64 = set.modules.iter().map(|m| m.active_bytes).sum();
        let replaced_bytes = set
            .modules
            .iter()
            .find(|m| m.name == name)
            .map_or(0, |m| m.active_bytes);
        self.check_module_bytes(
            tenant,
            current,
            current - replaced_bytes + wasm.len() as u64,
        )?;
        let started = Instant::now();
        let loaded = self.validate(tenant, name, &wasm).await?;
        let validate = started.elapsed();
        let wasm: Arc<[u8]> = wasm.into();
        let mut deployed = self
            .commit(tenant, name, |set, active| {
                let unchanged = active_hash(set, name) == Some(loaded.hash.as_str());
                let changes = if unchanged {
                    vec![]
                } else {
                    vec![ModuleChange::Deploy {
                        version: new_version(&loaded, wasm.clone(), deployed_by.clone())?,
                        origin: ModuleOrigin::Api,
                    }]
                };
                Ok(Plan {
                    changes,
                    next: replaced(active, name, Some(loaded.clone())),
                })
            })
            .await?;
        deployed.timings.validate = validate;
        Ok(deployed)
    }

    /// Make an earlier version of the module active again: `version` (a hash, or a prefix of
    /// one that names one version), or the version active before the current one.
    pub async fn rollback(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<&str>,
    ) -> Result<Deployed, DeployError> {
        let versions = self.catalog.module_versions(tenant, name).await?;
        if versions.is_empty() {
            return Err(DeployError::NoSuchModule(name.to_owned()));
        }
        let set = self.catalog.module_set(tenant).await?;
        let current = active_hash(&set, name);
        let target = match version {
            Some(wanted) => {
                let matching: Vec<_> = versions
                    .iter()
                    .filter(|v| v.hash.starts_with(wanted) && !wanted.is_empty())
                    .collect();
                match matching.as_slice() {
                    [one] => one.hash.clone(),
                    _ => {
                        return Err(DeployError::NoSuchVersion {
                            name: name.to_owned(),
                            version: wanted.to_owned(),
                        });
                    }
                }
            }
            // Last activated first: the first that is not the current one.
            None => versions
                .iter()
                .find(|v| Some(v.hash.as_str()) != current)
                .map(|v| v.hash.clone())
                .ok_or_else(|| DeployError::NothingToRollBackTo(name.to_owned()))?,
        };
        let loaded = self.registry.version(tenant, &target).await?;
        self.commit(tenant, name, |set, active| {
            let changes = if active_hash(set, name) == Some(target.as_str()) {
                vec![]
            } else {
                vec![ModuleChange::Activate {
                    name: name.to_owned(),
                    hash: target.clone(),
                    origin: ModuleOrigin::Api,
                }]
            };
            Ok(Plan {
                changes,
                next: replaced(active, name, Some(loaded.clone())),
            })
        })
        .await
    }

    /// Stop new runs of the module; its live runs finish on their versions.
    pub async fn remove(&self, tenant: &TenantId, name: &str) -> Result<Deployed, DeployError> {
        self.commit(tenant, name, |set, active| {
            if active_hash(set, name).is_none() {
                return Err(DeployError::NoSuchModule(name.to_owned()));
            }
            Ok(Plan {
                changes: vec![ModuleChange::Remove {
                    name: name.to_owned(),
                }],
                next: replaced(active, name, None),
            })
        })
        .await
    }

    /// Make the tenant's directory-deployed modules the `*.wasm` files of `dir`, by file
    /// stem: changed files deployed, modules whose file is gone removed, in one commit. A
    /// file that fails validation or conflicts is skipped with its error and its module's
    /// previous version keeps serving; the rest are deployed.
    pub async fn sync_directory(
        &self,
        tenant: &TenantId,
        dir: &Path,
    ) -> Result<DirectorySync, DeployError> {
        let mut invalid: Vec<(PathBuf, DeployError)> = Vec::new();
        let mut files: BTreeMap<String, ValidFile> = BTreeMap::new();
        let mut present: Vec<String> = Vec::new();
        for path in wasm_files(dir)? {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            present.push(name.clone());
            let validated = match std::fs::read(&path) {
                Ok(wasm) => self
                    .validate_at(tenant, &name, &wasm, &path)
                    .await
                    .map(|loaded| (loaded, Arc::<[u8]>::from(wasm))),
                Err(error) => Err(DeployError::Invalid(ModuleError::Io(path.clone(), error))),
            };
            match validated {
                Ok((loaded, wasm)) => {
                    files.insert(name, (path, loaded, wasm));
                }
                Err(error) => invalid.push((path, error)),
            }
        }
        // What the last plan (the one committed) does; a plan made again starts over.
        let mut planned = DirectorySync::default();
        self.commit(tenant, "", |set, active| {
            planned = DirectorySync::default();
            let mut next = active.to_vec();
            let mut changes = Vec::new();
            for record in &set.modules {
                let gone = !present.contains(&record.name);
                if record.origin == ModuleOrigin::Directory && record.active_hash.is_some() && gone
                {
                    changes.push(ModuleChange::Remove {
                        name: record.name.clone(),
                    });
                    next = replaced(&next, &record.name, None);
                    planned.removed.push(record.name.clone());
                }
            }
            for (name, (path, loaded, wasm)) in &files {
                if active_hash(set, name) == Some(loaded.hash.as_str()) {
                    planned.unchanged.push(name.clone());
                    continue;
                }
                let candidate = replaced(&next, name, Some(loaded.clone()));
                if let Err(error) = ActiveSet::build(0, candidate.clone()) {
                    planned.skipped.push((path.clone(), error.into()));
                    continue;
                }
                let mut with_file = changes.clone();
                with_file.push(ModuleChange::Deploy {
                    version: new_version(loaded, wasm.clone(), None)?,
                    origin: ModuleOrigin::Directory,
                });
                let (current, after) = module_bytes(set, &with_file, &candidate);
                if let Err(error) = self.check_module_bytes(tenant, current, after) {
                    planned.skipped.push((path.clone(), error));
                    continue;
                }
                changes = with_file;
                planned.deployed.push((name.clone(), loaded.hash.clone()));
                next = candidate;
            }
            Ok(Plan { changes, next })
        })
        .await?;
        invalid.append(&mut planned.skipped);
        planned.skipped = invalid;
        Ok(planned)
    }

    /// Validate `wasm` as a version of `name`: name, size, component, `describe`, manifest.
    pub(super) async fn validate(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: &[u8],
    ) -> Result<Arc<LoadedModule>, DeployError> {
        self.validate_at(tenant, name, wasm, Path::new(&format!("module {name}")))
            .await
    }

    /// [`Deployer::validate`], naming `origin` in errors. A component the tenant already
    /// has as a version of another module is a conflict.
    async fn validate_at(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: &[u8],
        origin: &Path,
    ) -> Result<Arc<LoadedModule>, DeployError> {
        check_name(name)?;
        if wasm.len() > self.max_module_bytes {
            return Err(DeployError::TooLarge {
                size: wasm.len(),
                max: self.max_module_bytes,
            });
        }
        let hash = sha256_hex(wasm);
        if let Some(stored) = self.catalog.module_component(tenant, &hash, false).await?
            && stored.name != name
        {
            return Err(DeployError::Conflict(format!(
                "this component is already a version of module {:?}; deploy it under that name",
                stored.name
            )));
        }
        Ok(self
            .registry
            .load(tenant, name, wasm, &origin.display().to_string())
            .await?)
    }

    /// Plan over the tenant's modules, check the set the plan makes, commit over the
    /// revision planned on (planning again when another change got there first), install.
    async fn commit(
        &self,
        tenant: &TenantId,
        module: &str,
        mut plan: impl FnMut(&ModuleSet, &[Arc<LoadedModule>]) -> Result<Plan, DeployError>,
    ) -> Result<Deployed, DeployError> {
        let started = Instant::now();
        for _ in 0..MAX_ATTEMPTS {
            let set = self.catalog.module_set(tenant).await?;
            let active = self.active_modules(tenant, &set).await;
            let before = active.iter().find(|m| m.name == module).cloned();
            let Plan { changes, next } = plan(&set, &active)?;
            let (current_bytes, after_bytes) = module_bytes(&set, &changes, &next);
            self.check_module_bytes(tenant, current_bytes, after_bytes)?;
            let after = next.iter().find(|m| m.name == module).cloned();
            let summary = ChangeSummary::between(before.as_deref(), after.as_deref());
            let version = after.as_ref().map(|m| m.hash.clone());
            let mut active_set = ActiveSet::build(set.revision, next)?;
            if changes.is_empty() {
                return Ok(Deployed {
                    module: module.to_owned(),
                    version,
                    revision: set.revision,
                    changed: false,
                    changes: ChangeSummary::default(),
                    timings: DeployTimings {
                        commit: started.elapsed(),
                        ..DeployTimings::default()
                    },
                });
            }
            let now = self.clock.now();
            let Some(revision) = self
                .catalog
                .change_modules(tenant, set.revision, &changes, now)
                .await?
            else {
                continue;
            };
            active_set.revision = revision;
            let buckets = active_set.buckets.clone();
            let retired = retired_buckets(&active, &buckets);
            let commit = started.elapsed();
            let swapping = Instant::now();
            self.registry.install(tenant, active_set);
            let swap = swapping.elapsed();
            // Before any worker evaluates them: a new bucket's config says its first backfill
            // is not done yet; changed criteria queue a re-evaluation. A bucket that left
            // stops moving, and is re-evaluated if it comes back.
            backfill_job::register(self.backfills.as_ref(), tenant, &buckets, now).await?;
            if !retired.is_empty() {
                self.backfills.retire_buckets(tenant, &retired, now).await?;
            }
            self.backfill_wake.notify_one();
            tracing::info!(
                tenant = %tenant,
                module = if module.is_empty() { "(directory)" } else { module },
                version = version.as_deref().map_or("-", |v| &v[..12.min(v.len())]),
                changes = changes.len(),
                revision,
                commit_ms = commit.as_secs_f64() * 1e3,
                swap_us = swap.as_secs_f64() * 1e6,
                "modules changed"
            );
            return Ok(Deployed {
                module: module.to_owned(),
                version,
                revision,
                changed: true,
                changes: summary,
                timings: DeployTimings {
                    validate: Duration::ZERO,
                    commit,
                    swap,
                },
            });
        }
        Err(DeployError::Contended)
    }

    /// Refuse a change that grows the tenant's modules from `current` bytes to `after`, past
    /// its `moduleBytes` limit.
    fn check_module_bytes(
        &self,
        tenant: &TenantId,
        current: u64,
        after: u64,
    ) -> Result<(), DeployError> {
        let limit = self.limits.effective(tenant).module_bytes;
        if after > limit && after > current {
            return Err(DeployError::ModuleBytes {
                after,
                limit,
                current,
            });
        }
        Ok(())
    }

    /// The tenant's active versions at `set`, loaded; a version that no longer loads is left
    /// out (and logged) so it cannot block every other deploy.
    async fn active_modules(&self, tenant: &TenantId, set: &ModuleSet) -> Vec<Arc<LoadedModule>> {
        super::follow::load_active(&self.registry, tenant, set).await
    }
}

/// The total size of the tenant's active versions at `set`, and once `changes` apply: the
/// modules they touch count as `next` has them (gone when removed), the others as they are.
fn module_bytes(
    set: &ModuleSet,
    changes: &[ModuleChange],
    next: &[Arc<LoadedModule>],
) -> (u64, u64) {
    let touched: HashSet<&str> = changes
        .iter()
        .map(|change| match change {
            ModuleChange::Deploy { version, .. } => version.name.as_str(),
            ModuleChange::Activate { name, .. } | ModuleChange::Remove { name } => name.as_str(),
        })
        .collect();
    let current = set.modules.iter().map(|m| m.active_bytes).sum();
    let kept: u64 = set
        .modules
        .iter()
        .filter(|m| !touched.contains(m.name.as_str()))
        .map(|m| m.active_bytes)
        .sum();
    let changed: u64 = next
        .iter()
        .filter(|m| touched.contains(m.name.as_str()))
        .map(|m| m.size_bytes)
        .sum();
    (current, kept + changed)
}

/// The ids of the buckets of `before` that `after` lacks.
fn retired_buckets(before: &[Arc<LoadedModule>], after: &BucketRegistry) -> Vec<String> {
    before
        .iter()
        .flat_map(|module| &module.manifest.buckets)
        .filter(|bucket| after.get(&bucket.id).is_none())
        .map(|bucket| bucket.id.clone())
        .collect()
}

/// The active hash of module `name` in `set`.
fn active_hash<'a>(set: &'a ModuleSet, name: &str) -> Option<&'a str> {
    set.modules
        .iter()
        .find(|m| m.name == name)
        .and_then(|m: &ModuleRecord| m.active_hash.as_deref())
}

/// `active` with module `name` replaced by `with` (or dropped).
fn replaced(
    active: &[Arc<LoadedModule>],
    name: &str,
    with: Option<Arc<LoadedModule>>,
) -> Vec<Arc<LoadedModule>> {
    active
        .iter()
        .filter(|m| m.name != name)
        .cloned()
        .chain(with)
        .collect()
}

fn new_version(
    loaded: &LoadedModule,
    wasm: Arc<[u8]>,
    deployed_by: Option<ApiKeyId>,
) -> Result<NewModuleVersion, DeployError> {
    Ok(NewModuleVersion {
        name: loaded.name.clone(),
        hash: loaded.hash.clone(),
        manifest: serde_json::to_value(&loaded.manifest)
            .map_err(|e| StoreError::Invalid(format!("serialising the manifest failed: {e}")))?,
        wasm,
        deployed_by,
    })
}

/// Module names: letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), DeployError> {
    let invalid = |reason: &str| DeployError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(&format!("must be 1 to {MAX_NAME_LEN} bytes")));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("must start with a letter or digit"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid("may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// The `*.wasm` files of `dir`, sorted.
fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, DeployError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DeployError::Invalid(ModuleError::Io(dir.to_owned(), e)))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_path_and_url_safe() {
        for good in ["welcome-series", "js_hello", "v2.1", "A1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-lead",
            ".hidden",
            "has space",
            "slash/y",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
