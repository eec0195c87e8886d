//! The local copy of module components, by hash: a restart, or a run pinned to an old
//! version, loads it from disk instead of fetching it from the database again. The database
//! stays the truth; a missing or corrupt file is fetched again.

use super::ModuleError;
use crate::runtime::sha256_hex;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ModuleFiles {
    dir: PathBuf,
}

impl ModuleFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    /// Keep `wasm` (whose sha256 is `hash`), written atomically; a no-op when kept already.
    pub fn keep(&self, hash: &str, wasm: &[u8]) -> Result<(), ModuleError> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| ModuleError::Io(self.dir.clone(), e))?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, wasm).map_err(|e| ModuleError::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ModuleError::Io(path.clone(), e))
    }

    /// The kept component, when there is one and it is intact.
    pub fn read(&self, hash: &str) -> Option<Vec<u8>> {
        let wasm = std::fs::read(self.path(hash)).ok()?;
        (sha256_hex(&wasm) == hash).then_some(wasm)
    }
}
