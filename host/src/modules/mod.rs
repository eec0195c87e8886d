//! Modules: each tenant's journey components — deployed, validated, versioned and made
//! active — and the registry that routes events to the active ones.
//!
//! A module version is content-addressed by the sha256 of its wasm. The catalog in the
//! database ([`crate::store::ModuleCatalog`]) is the truth every host follows: each tenant's
//! versions with their components, and which version of each module is active.
//!
//! - [`registry`]: the versions this process has loaded (compiled, described, validated) and
//!   each tenant's active set, swapped atomically; what ingest routes by.
//! - [`active_set`]: a tenant's active journeys and buckets, with the conflict checks a set
//!   must pass.
//! - [`deploy`]: deploying, rolling back and removing modules, and syncing a `--modules`
//!   directory: validate, check against the tenant's other modules, commit over the revision
//!   checked, install.
//! - [`verify`]: verified upgrades: live runs replayed against a candidate, the clean ones
//!   moved to it.
//! - [`changes`]: what a deploy changed (journeys, buckets, reactions, templates).
//! - [`cli`]: `waymark deploy`, a client of the deploy API.
//! - [`follow`]: loading every tenant's active set at boot and following changes other hosts
//!   commit.
//! - [`watch`]: hot reload: a `--modules` directory deployed on change, sources rebuilt on
//!   save in `waymark dev`.
//! - [`files`]: the local copy of module components, so a restart does not fetch them again.
//! - [`manifest`], [`build`]: what `describe` declares; building sources into components.
//! - [`scaffold`]: `waymark new`, a module project with the SDK it builds against.
//!
//! Nothing here runs journeys (that is [`crate::journeys`]) or speaks SQL.

pub mod active_set;
pub mod build;
pub mod changes;
pub mod cli;
pub mod deploy;
pub mod files;
pub mod follow;
pub mod manifest;
pub mod registry;
pub mod scaffold;
pub mod verify;
pub mod watch;

pub use files::ModuleFiles;
pub use registry::ModuleRegistry;

use crate::delivery::templates::TemplateSet;
use crate::runtime::{CompiledModule, RuntimeError};
use manifest::{JourneyDef, ModuleManifest};
use std::path::PathBuf;
use std::sync::Arc;

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
    #[error("reading module version {hash} from the database failed: {message}")]
    Catalog { hash: String, message: String },
}

/// One loaded module version.
pub struct LoadedModule {
    pub name: String,
    pub hash: String,
    pub manifest: ModuleManifest,
    pub templates: Arc<TemplateSet>,
    pub compiled: CompiledModule,
    /// The component's size: what it counts against its tenant's total module size.
    pub size_bytes: u64,
}

impl LoadedModule {
    pub fn journey(&self, id: &str) -> Option<&JourneyDef> {
        self.manifest.journeys.iter().find(|j| j.id == id)
    }
}
