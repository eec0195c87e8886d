//! The on-disk cache of precompiled components, keyed by the wasm's sha256 and the engine's
//! fingerprint, so a restart loads a module in about a millisecond instead of recompiling it
//! (a componentize-js guest takes seconds to compile).

use super::RuntimeError;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    fingerprint: String,
}

impl ArtifactCache {
    pub fn new(dir: PathBuf, fingerprint: String) -> Self {
        Self { dir, fingerprint }
    }

    fn path_for(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.fingerprint))
    }

    /// The compiled component for `wasm` (whose sha256 is `hash`): from the cache when present
    /// and loadable, else compiled now and written to the cache atomically.
    pub fn component(
        &self,
        engine: &Engine,
        hash: &str,
        wasm: &[u8],
    ) -> Result<Component, RuntimeError> {
        let path = self.path_for(hash);
        if path.exists() {
            // SAFETY: the cache directory is written only by this function, with artifacts
            // produced by `Engine::precompile_component` of an engine with the same
            // fingerprint; wasmtime additionally checks compatibility while deserializing.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(err) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {err:#}")
                }
            }
        }
        let started = std::time::Instant::now();
        let compiled = engine
            .precompile_component(wasm)
            .map_err(|e| RuntimeError::Compile(format!("{e:#}")))?;
        tracing::info!(
            hash = &hash[..12],
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled module"
        );
        write_atomically(&self.dir, &path, &compiled)?;
        // SAFETY: as above; these bytes were just produced by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| RuntimeError::Compile(format!("{e:#}")))
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Io(dir.to_owned(), e))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| RuntimeError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| RuntimeError::Io(path.to_owned(), e))
}
