//! Building module sources into wasm components: what `waymark build` (and `waymark dev`'s
//! rebuild-on-save) calls.
//!
//! This module owns turning a *source* into `<out_dir>/<name>.wasm` files, and nothing else
//! (loading, validating and deploying modules live elsewhere). A source is a directory (or its
//! `Cargo.toml` / `package.json`):
//!
//! * **a cargo package or workspace** ([`cargo`]) — every `cdylib` package in it (or just the
//!   package whose manifest it is) is built with
//!   `cargo build --release --target wasm32-wasip2 --manifest-path <src>/Cargo.toml
//!   --target-dir <target_dir> -p <pkg>…`, and `<target_dir>/wasm32-wasip2/release/<lib>.wasm`
//!   is copied to `<out_dir>/<package-name>.wasm`. The `wasm32-wasip2` target is checked for
//!   (and added with rustup) first, and `CARGO_*`/`RUSTFLAGS`-style variables that an outer
//!   cargo may have set are removed so the nested build behaves like one run by hand.
//! * **a JS package** (componentize-js, [`js`]) — the repository's `wit/` is copied into
//!   `<pkg>/wit`, `npm install` runs when `node_modules` is missing or older than the package's
//!   manifests, `npm run build` produces the component declared as
//!   `"waymark": { "module": "dist/x.wasm" }` in `package.json` (default `dist/<name>.wasm`),
//!   and it is copied to `<out_dir>/<name>.wasm`. The JS build is skipped while its output is
//!   newer than every source file and the WIT: it takes 7-25 s and its output is not
//!   byte-reproducible.
//!
//! This file holds the public API, source classification, the child-process helpers both
//! kinds share, and installing artifacts into `out_dir`; it must not know how either kind of
//! source is built. Children's output (cargo, rustup, npm) is streamed to our stderr. Files
//! land in `out_dir` by rename, so a directory watcher never sees a half-written module, and an
//! unchanged module is not rewritten.

mod cargo;
mod js;

pub use cargo::clean_command;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The Rust target modules are compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// What to build and where to put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Cargo packages/workspaces and JS packages (directories, or their manifest files).
    pub sources: Vec<PathBuf>,
    /// Where `<name>.wasm` files go (created if missing).
    pub out_dir: PathBuf,
    /// Cargo's target directory for the wasm builds (keep it apart from the host's).
    pub target_dir: PathBuf,
}

/// One module produced by [`build_modules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltModule {
    /// The module name: the cargo package name, or the JS package name without its scope.
    pub name: String,
    /// `<out_dir>/<name>.wasm`.
    pub path: PathBuf,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("module source {0} does not exist")]
    SourceMissing(PathBuf),
    #[error(
        "module source {0} is neither a cargo package/workspace (no Cargo.toml) nor a JS package (no package.json)"
    )]
    UnknownSource(PathBuf),
    #[error(
        "the Rust target {WASM_TARGET} is not installed and adding it failed ({detail}); run `rustup target add {WASM_TARGET}` and try again"
    )]
    TargetMissing { detail: String },
    #[error("could not run `{program}` ({hint}): {source}")]
    Spawn {
        program: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}); its output is above")]
    CommandFailed { command: String, status: ExitStatus },
    #[error("reading cargo metadata of {manifest}: {message}")]
    Metadata { manifest: PathBuf, message: String },
    #[error(
        "{0} has no package with a `cdylib` library; a module crate needs `[lib] crate-type = [\"cdylib\"]`"
    )]
    NoModules(PathBuf),
    #[error("{path}: {message}")]
    PackageJson { path: PathBuf, message: String },
    #[error(
        "no WIT for the JS package {0}: found neither a repository (a parent directory with wit/waymark.wit), a linked guest SDK (file: dependency) shipping one, nor {0}/wit/waymark.wit"
    )]
    WitNotFound(PathBuf),
    #[error("the build of {source_dir} finished but did not produce {path}")]
    OutputMissing { source_dir: PathBuf, path: PathBuf },
    #[error("two sources build a module named `{name}`: {first} and {second}")]
    DuplicateModule {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Builds every source and copies the components into `opts.out_dir`, in source order.
pub fn build_modules(opts: &BuildOptions) -> Result<Vec<BuiltModule>, BuildError> {
    let out_dir = absolute(&opts.out_dir)?;
    let target_dir = absolute(&opts.target_dir)?;
    fs::create_dir_all(&out_dir).map_err(io_err("creating", &out_dir))?;

    let mut built = Vec::new();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    let mut target_checked = false;
    for source in &opts.sources {
        let source = absolute(source)?;
        let modules = match classify(&source)? {
            Source::Cargo(dir) => {
                if !target_checked {
                    cargo::ensure_wasm_target(&dir)?;
                    target_checked = true;
                }
                cargo::build(&dir, &target_dir, &out_dir)?
            }
            Source::Js(dir) => vec![js::build(&dir, &out_dir)?],
        };
        for module in modules {
            if let Some(first) = origin.insert(module.name.clone(), source.clone()) {
                return Err(BuildError::DuplicateModule {
                    name: module.name,
                    first,
                    second: source,
                });
            }
            built.push(module);
        }
    }
    Ok(built)
}

/// The repository root at or above `start`: the first directory containing `wit/waymark.wit`.
pub fn repo_root_from(start: &Path) -> Option<PathBuf> {
    let start = fs::canonicalize(start)
        .or_else(|_| std::path::absolute(start))
        .ok()?;
    start
        .ancestors()
        .find(|dir| dir.join("wit").join("waymark.wit").is_file())
        .map(Path::to_path_buf)
}

fn absolute(path: &Path) -> Result<PathBuf, BuildError> {
    std::path::absolute(path).map_err(io_err("resolving", path))
}

enum Source {
    Cargo(PathBuf),
    Js(PathBuf),
}

fn classify(source: &Path) -> Result<Source, BuildError> {
    if !source.exists() {
        return Err(BuildError::SourceMissing(source.to_path_buf()));
    }
    let dir = match source.file_name().and_then(|n| n.to_str()) {
        Some("Cargo.toml" | "package.json") if source.is_file() => source.parent().unwrap(),
        _ => source,
    };
    if dir.join("Cargo.toml").is_file() {
        Ok(Source::Cargo(dir.to_path_buf()))
    } else if dir.join("package.json").is_file() {
        Ok(Source::Js(dir.to_path_buf()))
    } else {
        Err(BuildError::UnknownSource(source.to_path_buf()))
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Our stderr, for a child's stdout: cargo and npm then both stream to stderr, and our stdout
/// stays for results.
fn stderr_for_child() -> Stdio {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() {
            return Stdio::from(fd);
        }
    }
    Stdio::inherit()
}

fn describe_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn spawn_hint(program: &str) -> &'static str {
    match program {
        "cargo" | "rustup" => "is the Rust toolchain installed and on PATH?",
        "npm" => "is Node.js with npm installed and on PATH?",
        _ => "is it installed and on PATH?",
    }
}

/// Runs `cmd`, streaming its output to our stderr.
fn run(mut cmd: Command) -> Result<(), BuildError> {
    tracing::debug!(command = %describe_command(&cmd), "running");
    cmd.stdout(stderr_for_child());
    execute(cmd).map(drop)
}

/// Runs `cmd` and returns its stdout (stderr streams through).
fn capture(mut cmd: Command) -> Result<String, BuildError> {
    cmd.stdout(Stdio::piped());
    execute(cmd).map(|stdout| String::from_utf8_lossy(&stdout).into_owned())
}

/// Runs `cmd` with no stdin and stderr streaming through, and returns whatever it wrote to a
/// piped stdout (nothing when stdout goes elsewhere); spawn failures and unsuccessful exits are
/// errors.
fn execute(mut cmd: Command) -> Result<Vec<u8>, BuildError> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| {
            let program = cmd.get_program().to_string_lossy().into_owned();
            BuildError::Spawn {
                hint: spawn_hint(&program),
                program,
                source,
            }
        })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(BuildError::CommandFailed {
            command: describe_command(&cmd),
            status: output.status,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// Fails with [`BuildError::OutputMissing`] unless the build of `source_dir` left a file at
/// `artifact`.
fn expect_artifact(source_dir: &Path, artifact: &Path) -> Result<(), BuildError> {
    if artifact.is_file() {
        Ok(())
    } else {
        Err(BuildError::OutputMissing {
            source_dir: source_dir.to_path_buf(),
            path: artifact.to_path_buf(),
        })
    }
}

/// Copies `artifact` to `<out_dir>/<name>.wasm` through a temporary file and a rename, unless
/// the destination already has the same bytes.
fn install(artifact: &Path, out_dir: &Path, name: &str) -> Result<BuiltModule, BuildError> {
    let dest = out_dir.join(format!("{name}.wasm"));
    let bytes = fs::read(artifact).map_err(io_err("reading", artifact))?;
    let unchanged = fs::metadata(&dest).is_ok_and(|m| m.len() == bytes.len() as u64)
        && fs::read(&dest).is_ok_and(|old| old == bytes);
    if !unchanged {
        let tmp = out_dir.join(format!(".{name}.wasm.tmp"));
        fs::write(&tmp, &bytes).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &dest).map_err(io_err("replacing", &dest))?;
    }
    tracing::info!(module = name, path = %dest.display(), bytes = bytes.len(), unchanged, "module ready");
    Ok(BuiltModule {
        name: name.to_owned(),
        path: dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_is_found_from_below() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("wit")).unwrap();
        fs::write(
            root.join("wit/waymark.wit"),
            b"package waymark:journey@0.1.0;",
        )
        .unwrap();
        fs::create_dir_all(root.join("tests/guests/js-hello")).unwrap();
        let found = repo_root_from(&root.join("tests/guests/js-hello")).unwrap();
        assert_eq!(found, fs::canonicalize(root).unwrap());
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(repo_root_from(elsewhere.path()), None);
    }

    #[test]
    fn install_writes_once_and_names_by_module() {
        use super::js::mtime;
        let dir = tempfile::tempdir().unwrap();
        let artifact = dir.path().join("welcome_series.wasm");
        fs::write(&artifact, b"\0asm\r\0\x01\0").unwrap();
        let out = dir.path().join("modules");
        fs::create_dir(&out).unwrap();
        let built = install(&artifact, &out, "welcome-series").unwrap();
        assert_eq!(built.path, out.join("welcome-series.wasm"));
        assert_eq!(fs::read(&built.path).unwrap(), b"\0asm\r\0\x01\0");
        let first = mtime(&built.path);
        install(&artifact, &out, "welcome-series").unwrap();
        assert_eq!(
            mtime(&built.path),
            first,
            "unchanged module is not rewritten"
        );
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn sources_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(matches!(
            classify(&root.join("missing")),
            Err(BuildError::SourceMissing(_))
        ));
        assert!(matches!(classify(root), Err(BuildError::UnknownSource(_))));
        fs::write(root.join("package.json"), b"{}").unwrap();
        assert!(matches!(classify(root), Ok(Source::Js(_))));
        assert!(matches!(classify(&root.join("package.json")), Ok(Source::Js(d)) if d == root));
        fs::write(root.join("Cargo.toml"), b"").unwrap();
        assert!(matches!(classify(root), Ok(Source::Cargo(_))));
    }
}
