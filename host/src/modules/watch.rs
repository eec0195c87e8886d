//! Hot reload. [`watch_directory`] deploys a `--modules` directory to the default tenant
//! whenever a file in it changes; in `waymark dev`, [`watch_sources`] rebuilds the module
//! sources into that directory on save, so a save goes live without a restart.
//!
//! Both poll file metadata (size and modification time): a directory of components and a few
//! source trees are cheap to look at, and polling behaves the same on every platform and
//! filesystem. The build writes each component by rename, so the directory watch never sees
//! half a file.

use super::build::{BuildOptions, build_modules};
use super::deploy::Deployer;
use crate::ids::TenantId;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the modules directory is looked at.
pub const DIRECTORY_POLL: Duration = Duration::from_millis(100);
/// How often the sources are looked at; a burst of saves settles for as long.
pub const SOURCE_POLL: Duration = Duration::from_millis(250);
/// Directories of a source tree that are build output or copies, not sources.
const NOT_SOURCES: [&str; 5] = ["target", "node_modules", "dist", "wit", ".git"];

/// What a watch compares: each file's path, size and modification time, sorted.
type Snapshot = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn describe(path: PathBuf) -> Option<(PathBuf, u64, Option<SystemTime>)> {
    let metadata = std::fs::metadata(&path).ok()?;
    Some((path, metadata.len(), metadata.modified().ok()))
}

/// The `*.wasm` files of `dir`.
fn scan_directory(dir: &Path) -> Snapshot {
    let mut files: Snapshot = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .filter_map(describe)
        .collect();
    files.sort();
    files
}

/// Every file under the sources, build output and copies left out.
fn scan_sources(sources: &[PathBuf]) -> Snapshot {
    let mut files = Snapshot::new();
    let mut pending: Vec<PathBuf> = sources.to_vec();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let skipped = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| NOT_SOURCES.contains(&name));
            if !skipped || sources.contains(&path) {
                pending.extend(
                    std::fs::read_dir(&path)
                        .into_iter()
                        .flatten()
                        .filter_map(|entry| entry.ok().map(|e| e.path())),
                );
            }
        } else if let Some(file) = describe(path) {
            files.push(file);
        }
    }
    files.sort();
    files
}

/// Deploy `dir` to `tenant` each time a file in it changes, for as long as the host runs.
pub fn watch_directory(
    deployer: Arc<Deployer>,
    tenant: TenantId,
    dir: PathBuf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = scan_directory(&dir);
        loop {
            tokio::time::sleep(DIRECTORY_POLL).await;
            let now = scan_directory(&dir);
            if now == seen {
                continue;
            }
            seen = now;
            let started = Instant::now();
            match deployer.sync_directory(&tenant, &dir).await {
                Ok(synced) => {
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                    for (module, version) in &synced.deployed {
                        tracing::info!(
                            module = %module,
                            version = &version[..12],
                            elapsed_ms,
                            "hot reload: deployed"
                        );
                    }
                    for module in &synced.removed {
                        tracing::info!(module = %module, "hot reload: removed (its file is gone)");
                    }
                    for (path, error) in &synced.skipped {
                        tracing::error!(
                            "hot reload: {} skipped, the previous version keeps serving: {error}",
                            path.display()
                        );
                    }
                }
                Err(error) => {
                    tracing::error!(dir = %dir.display(), "hot reload failed: {error}")
                }
            }
        }
    })
}

/// Rebuild the sources into `options.out_dir` after each save, for as long as the process
/// runs. A failed build is reported and the last good components stay.
pub fn watch_sources(options: BuildOptions) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen = scan_sources(&options.sources);
        loop {
            std::thread::sleep(SOURCE_POLL);
            if scan_sources(&options.sources) == seen {
                continue;
            }
            // Let a burst of saves (an editor writing several files) settle first.
            std::thread::sleep(SOURCE_POLL);
            let started = Instant::now();
            eprintln!("waymark dev: a module source changed; rebuilding");
            match build_modules(&options) {
                Ok(built) => eprintln!(
                    "waymark dev: rebuilt {} module(s) in {:.1}s",
                    built.len(),
                    started.elapsed().as_secs_f64()
                ),
                Err(error) => eprintln!("waymark dev: the build failed: {error}"),
            }
            // What the build itself touched (a lock file) is not a change to rebuild for.
            seen = scan_sources(&options.sources);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_scan_sees_sources_and_leaves_build_output_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for file in [
            "src/lib.rs",
            "Cargo.toml",
            "target/x.wasm",
            "node_modules/a/b.js",
            "wit/w.wit",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let seen: Vec<PathBuf> = scan_sources(std::slice::from_ref(&root))
            .into_iter()
            .map(|(path, _, _)| path.strip_prefix(&root).unwrap().to_owned())
            .collect();
        assert_eq!(
            seen,
            vec![PathBuf::from("Cargo.toml"), PathBuf::from("src/lib.rs")]
        );

        // A change to a source shows; one to build output does not
        let before = scan_sources(std::slice::from_ref(&root));
        std::fs::write(root.join("target/x.wasm"), "longer").unwrap();
        assert_eq!(scan_sources(std::slice::from_ref(&root)), before);
        std::fs::write(root.join("src/lib.rs"), "longer").unwrap();
        assert_ne!(scan_sources(std::slice::from_ref(&root)), before);
    }
}
