//! Building module sources into wasm components: what `waymark build` (and `waymark dev`'s
//! rebuild-on-save) calls.
//!
//! This file owns turning a *source* into `<out_dir>/<name>.wasm` files, and nothing else
//! (loading, validating and deploying modules live elsewhere). A source is a directory (or its
//! `Cargo.toml` / `package.json`):
//!
//! * **a cargo package or workspace** — every `cdylib` package in it (or just the package whose
//!   manifest it is) is built with
//!   `cargo build --release --target wasm32-wasip2 --manifest-path <src>/Cargo.toml
//!   --target-dir <target_dir> -p <pkg>…`, and `<target_dir>/wasm32-wasip2/release/<lib>.wasm`
//!   is copied to `<out_dir>/<package-name>.wasm`. The `wasm32-wasip2` target is checked for
//!   (and added with rustup) first, and `CARGO_*`/`RUSTFLAGS`-style variables that an outer
//!   cargo may have set are removed so the nested build behaves like one run by hand.
//! * **a JS package** (componentize-js) — the repository's `wit/` is copied into `<pkg>/wit`,
//!   `npm install` runs when `node_modules` is missing or older than the package's manifests,
//!   `npm run build` produces the component declared as `"waymark": { "module": "dist/x.wasm" }`
//!   in `package.json` (default `dist/<name>.wasm`), and it is copied to `<out_dir>/<name>.wasm`.
//!   The JS build is skipped while its output is newer than every source file and the WIT: it
//!   takes 7-25 s and its output is not byte-reproducible.
//!
//! Children's output (cargo, rustup, npm) is streamed to our stderr. Files land in `out_dir`
//! by rename, so a directory watcher never sees a half-written module, and an unchanged
//! module is not rewritten.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::SystemTime;

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
        "no WIT for the JS package {0}: found neither a repository (a parent directory with wit/waymark.wit) nor {0}/wit/waymark.wit"
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
                    ensure_wasm_target(&dir)?;
                    target_checked = true;
                }
                build_cargo(&dir, &target_dir, &out_dir)?
            }
            Source::Js(dir) => vec![build_js(&dir, &out_dir)?],
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
    let command = describe_command(&cmd);
    tracing::debug!(%command, "running");
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(stderr_for_child())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| BuildError::Spawn {
            hint: spawn_hint(&program),
            program,
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::CommandFailed { command, status })
    }
}

/// Runs `cmd` and returns its stdout (stderr streams through).
fn capture(mut cmd: Command) -> Result<String, BuildError> {
    let command = describe_command(&cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BuildError::Spawn {
            hint: spawn_hint(&program),
            program,
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(BuildError::CommandFailed {
            command,
            status: output.status,
        })
    }
}

/// Whether an environment variable set by an outer cargo (or for it) must not reach a nested
/// cargo building guests: it would redirect its target dir or target, add flags or wrappers
/// meant for the host build, or carry a build script's context. Registry, network, terminal
/// and home settings are kept.
fn leaks_into_nested_cargo(name: &str) -> bool {
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    const DROP: &[&str] = &[
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "NUM_JOBS",
        "MAKEFLAGS",
        "MFLAGS",
    ];
    if DROP.contains(&name) || name.starts_with("__CARGO") {
        return true;
    }
    name.starts_with("CARGO_") && !KEEP_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A `cargo`/`rustup` command in `dir` with a clean environment.
fn clean_command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    let leaked: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_str().is_some_and(leaks_into_nested_cargo))
        .collect();
    for name in leaked {
        cmd.env_remove(name);
    }
    cmd
}

// ---------------------------------------------------------------------------------------------
// Cargo sources

/// Whether `rustup target list --installed` output lists `target`.
fn target_listed(rustup_output: &str, target: &str) -> bool {
    rustup_output.lines().any(|line| line.trim() == target)
}

/// Makes sure the toolchain that will build `dir` has the wasm target (rustup is told not to
/// auto-install targets on some machines, so a `rust-toolchain.toml` alone is not enough).
fn ensure_wasm_target(dir: &Path) -> Result<(), BuildError> {
    let mut list = clean_command("rustup", dir);
    list.args(["target", "list", "--installed"]);
    let installed = match capture(list) {
        Ok(out) => out,
        Err(BuildError::Spawn { .. }) => {
            tracing::warn!(
                "rustup not found; assuming the {WASM_TARGET} target is installed for cargo"
            );
            return Ok(());
        }
        Err(e) => {
            tracing::warn!("could not list installed Rust targets ({e}); trying the build anyway");
            return Ok(());
        }
    };
    if target_listed(&installed, WASM_TARGET) {
        return Ok(());
    }
    tracing::info!(
        "the {WASM_TARGET} Rust target is missing; running `rustup target add {WASM_TARGET}`"
    );
    let mut add = clean_command("rustup", dir);
    add.args(["target", "add", WASM_TARGET]);
    run(add).map_err(|e| BuildError::TargetMissing {
        detail: e.to_string(),
    })
}

/// A workspace package that builds into a module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CdylibPackage {
    /// Package name: the module name.
    name: String,
    /// Library target name: the artifact's file stem (with `-` as `_`).
    lib_name: String,
}

/// The `cdylib` packages of a `cargo metadata --no-deps` document. When `manifest` is one
/// package's own manifest, only that package is selected (as `cargo build` would build it);
/// for a virtual manifest (or a root package that is not a module) every member is.
fn cdylib_packages(
    metadata: &serde_json::Value,
    manifest: &Path,
) -> Result<Vec<CdylibPackage>, String> {
    let packages = metadata
        .get("packages")
        .and_then(|p| p.as_array())
        .ok_or("no `packages` array")?;
    let members: Option<Vec<&str>> = metadata
        .get("workspace_members")
        .and_then(|m| m.as_array())
        .map(|m| m.iter().filter_map(|id| id.as_str()).collect());

    let mut all = Vec::new();
    let mut own = None;
    for package in packages {
        let id = package.get("id").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(members) = &members
            && !members.contains(&id)
        {
            continue;
        }
        let name = package
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or("a package without a name")?;
        let lib = package
            .get("targets")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .find(|t| {
                t.get("crate_types")
                    .or_else(|| t.get("kind"))
                    .and_then(|k| k.as_array())
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            });
        let is_own = package
            .get("manifest_path")
            .and_then(|v| v.as_str())
            .is_some_and(|p| same_file(Path::new(p), manifest));
        let Some(lib) = lib else {
            if is_own {
                own = Some(None);
            }
            continue;
        };
        let lib_name = lib
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or(name)
            .replace('-', "_");
        let found = CdylibPackage {
            name: name.to_owned(),
            lib_name,
        };
        if is_own {
            own = Some(Some(found.clone()));
        }
        all.push(found);
    }
    Ok(match own {
        Some(Some(own)) => vec![own],
        _ => all,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

fn build_cargo(
    dir: &Path,
    target_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<BuiltModule>, BuildError> {
    let manifest = dir.join("Cargo.toml");
    let mut meta = clean_command("cargo", dir);
    meta.args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--manifest-path",
    ])
    .arg(&manifest);
    let metadata: serde_json::Value =
        serde_json::from_str(&capture(meta)?).map_err(|e| BuildError::Metadata {
            manifest: manifest.clone(),
            message: e.to_string(),
        })?;
    let packages =
        cdylib_packages(&metadata, &manifest).map_err(|message| BuildError::Metadata {
            manifest: manifest.clone(),
            message,
        })?;
    if packages.is_empty() {
        return Err(BuildError::NoModules(dir.to_path_buf()));
    }

    tracing::info!(
        source = %dir.display(),
        modules = %packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        "building Rust modules"
    );
    let mut build = clean_command("cargo", dir);
    build
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    for package in &packages {
        build.args(["-p", &package.name]);
    }
    run(build)?;

    let artifacts = target_dir.join(WASM_TARGET).join("release");
    packages
        .iter()
        .map(|package| {
            let artifact = artifacts.join(format!("{}.wasm", package.lib_name));
            if !artifact.is_file() {
                return Err(BuildError::OutputMissing {
                    source_dir: dir.to_path_buf(),
                    path: artifact,
                });
            }
            install(&artifact, out_dir, &package.name)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// JS sources

/// What `build_js` needs from `package.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JsPackage {
    /// The module name: the package name without an npm scope.
    name: String,
    /// The built component, relative to the package directory.
    module: PathBuf,
}

fn parse_package_json(text: &str) -> Result<JsPackage, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let full_name = json
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or("no `name`")?;
    let name = full_name.rsplit('/').next().unwrap_or(full_name).to_owned();
    let module = match json.get("waymark").and_then(|w| w.get("module")) {
        None => PathBuf::from(format!("dist/{name}.wasm")),
        Some(serde_json::Value::String(m)) if !m.is_empty() => PathBuf::from(m),
        Some(_) => return Err("`waymark.module` must be a path string".into()),
    };
    if json
        .get("scripts")
        .and_then(|s| s.get("build"))
        .and_then(|b| b.as_str())
        .is_none()
    {
        return Err("no `scripts.build` (the command that runs componentize-js)".into());
    }
    Ok(JsPackage { name, module })
}

/// Whether an output last modified at `output` is newer than every input time.
fn is_up_to_date(output: Option<SystemTime>, inputs: &[Option<SystemTime>]) -> bool {
    match output {
        None => false,
        Some(out) => inputs.iter().flatten().all(|input| *input < out),
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of any file under `dir`, skipping directories named in
/// `skip_names` (at any depth) and the paths in `skip_paths`.
fn newest_mtime(
    dir: &Path,
    skip_names: &[&str],
    skip_paths: &[PathBuf],
) -> io::Result<Option<SystemTime>> {
    let mut newest: Option<SystemTime> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                let skipped_name = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| skip_names.contains(&n));
                if !skipped_name && !skip_paths.contains(&path) {
                    stack.push(path);
                }
            } else {
                let modified = entry.metadata()?.modified()?;
                newest = Some(newest.map_or(modified, |n| n.max(modified)));
            }
        }
    }
    Ok(newest)
}

/// Whether `npm install` must run: no `node_modules`, or a manifest newer than the last install.
fn needs_npm_install(dir: &Path) -> bool {
    let node_modules = dir.join("node_modules");
    if !node_modules.is_dir() {
        return true;
    }
    let installed = mtime(&node_modules.join(INSTALL_STAMP))
        .or_else(|| mtime(&node_modules.join(".package-lock.json")))
        .or_else(|| mtime(&node_modules));
    !is_up_to_date(
        installed,
        &[
            mtime(&dir.join("package-lock.json")),
            mtime(&dir.join("package.json")),
        ],
    )
}

/// Written into `node_modules` after a successful `npm install` (npm may rewrite the lock file
/// after its own bookkeeping, which would otherwise look like a newer lock every time).
const INSTALL_STAMP: &str = ".waymark-installed";

fn build_js(dir: &Path, out_dir: &Path) -> Result<BuiltModule, BuildError> {
    let package_json = dir.join("package.json");
    let text = fs::read_to_string(&package_json).map_err(io_err("reading", &package_json))?;
    let package = parse_package_json(&text).map_err(|message| BuildError::PackageJson {
        path: package_json.clone(),
        message,
    })?;
    let output = dir.join(&package.module);
    let local_wit = dir.join("wit");
    let repo_wit = repo_root_from(dir)
        .map(|root| root.join("wit"))
        .filter(|wit| *wit != local_wit);
    if repo_wit.is_none() && !local_wit.join("waymark.wit").is_file() {
        return Err(BuildError::WitNotFound(dir.to_path_buf()));
    }

    // Inputs: the package's own files (not node_modules, build output or the copied WIT) and
    // the WIT it is built from.
    let mut skip_paths = vec![local_wit.clone()];
    if let Some(parent) = output.parent().filter(|p| *p != dir) {
        skip_paths.push(parent.to_path_buf());
    }
    let sources = newest_mtime(dir, &["node_modules", ".git"], &skip_paths)
        .map_err(io_err("scanning", dir))?;
    let wit_dir = repo_wit.clone().unwrap_or_else(|| local_wit.clone());
    let wit = newest_mtime(&wit_dir, &[], &[]).map_err(io_err("scanning", &wit_dir))?;

    if is_up_to_date(mtime(&output), &[sources, wit]) {
        tracing::info!(source = %dir.display(), module = %package.name, "JS module is up to date");
    } else {
        tracing::info!(source = %dir.display(), module = %package.name, "building JS module (componentize-js)");
        if let Some(repo_wit) = &repo_wit {
            copy_dir_fresh(repo_wit, &local_wit)?;
        }
        if needs_npm_install(dir) {
            let mut install = Command::new("npm");
            install
                .current_dir(dir)
                .args(["install", "--no-audit", "--no-fund"]);
            run(install)?;
            let stamp = dir.join("node_modules").join(INSTALL_STAMP);
            fs::write(&stamp, b"npm install completed; see waymark build\n")
                .map_err(io_err("writing", &stamp))?;
        }
        let mut build = Command::new("npm");
        build.current_dir(dir).args(["run", "build"]);
        run(build)?;
        if !output.is_file() {
            return Err(BuildError::OutputMissing {
                source_dir: dir.to_path_buf(),
                path: output,
            });
        }
    }
    install(&output, out_dir, &package.name)
}

/// Replaces `to` with a copy of the directory tree `from`.
fn copy_dir_fresh(from: &Path, to: &Path) -> Result<(), BuildError> {
    if to.exists() {
        fs::remove_dir_all(to).map_err(io_err("removing", to))?;
    }
    fs::create_dir_all(to).map_err(io_err("creating", to))?;
    for entry in fs::read_dir(from).map_err(io_err("reading", from))? {
        let entry = entry.map_err(io_err("reading", from))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir_fresh(&path, &dest)?;
        } else {
            fs::copy(&path, &dest).map_err(io_err("copying", &path))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output

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
    use std::time::Duration;

    const METADATA: &str = r#"{
      "packages": [
        {
          "name": "welcome-series",
          "id": "path+file:///ws/welcome-series#0.1.0",
          "manifest_path": "/ws/welcome-series/Cargo.toml",
          "targets": [
            {"kind": ["cdylib"], "crate_types": ["cdylib"], "name": "welcome_series",
             "src_path": "/ws/welcome-series/src/lib.rs"}
          ]
        },
        {
          "name": "shared-helpers",
          "id": "path+file:///ws/shared-helpers#0.1.0",
          "manifest_path": "/ws/shared-helpers/Cargo.toml",
          "targets": [
            {"kind": ["lib"], "crate_types": ["lib"], "name": "shared_helpers",
             "src_path": "/ws/shared-helpers/src/lib.rs"}
          ]
        },
        {
          "name": "win-back",
          "id": "path+file:///ws/win-back#0.1.0",
          "manifest_path": "/ws/win-back/Cargo.toml",
          "targets": [
            {"kind": ["cdylib", "rlib"], "crate_types": ["cdylib", "rlib"], "name": "win-back-lib",
             "src_path": "/ws/win-back/src/lib.rs"},
            {"kind": ["test"], "crate_types": ["bin"], "name": "it", "src_path": "/ws/win-back/tests/it.rs"}
          ]
        },
        {
          "name": "not-a-member",
          "id": "path+file:///elsewhere/not-a-member#0.1.0",
          "manifest_path": "/elsewhere/not-a-member/Cargo.toml",
          "targets": [{"kind": ["cdylib"], "crate_types": ["cdylib"], "name": "not_a_member"}]
        }
      ],
      "workspace_members": [
        "path+file:///ws/welcome-series#0.1.0",
        "path+file:///ws/shared-helpers#0.1.0",
        "path+file:///ws/win-back#0.1.0"
      ],
      "workspace_root": "/ws"
    }"#;

    fn pkg(name: &str, lib: &str) -> CdylibPackage {
        CdylibPackage {
            name: name.into(),
            lib_name: lib.into(),
        }
    }

    #[test]
    fn workspace_manifest_selects_every_cdylib_member() {
        let meta: serde_json::Value = serde_json::from_str(METADATA).unwrap();
        let found = cdylib_packages(&meta, Path::new("/ws/Cargo.toml")).unwrap();
        assert_eq!(
            found,
            vec![
                pkg("welcome-series", "welcome_series"),
                pkg("win-back", "win_back_lib")
            ]
        );
    }

    #[test]
    fn package_manifest_selects_only_that_package() {
        let meta: serde_json::Value = serde_json::from_str(METADATA).unwrap();
        let found = cdylib_packages(&meta, Path::new("/ws/win-back/Cargo.toml")).unwrap();
        assert_eq!(found, vec![pkg("win-back", "win_back_lib")]);
    }

    #[test]
    fn a_root_package_that_is_not_a_module_falls_back_to_the_members() {
        let meta: serde_json::Value = serde_json::from_str(METADATA).unwrap();
        let found = cdylib_packages(&meta, Path::new("/ws/shared-helpers/Cargo.toml")).unwrap();
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn metadata_without_packages_is_refused() {
        let meta = serde_json::json!({"version": 1});
        assert_eq!(
            cdylib_packages(&meta, Path::new("/x/Cargo.toml")).unwrap_err(),
            "no `packages` array"
        );
    }

    #[test]
    fn rustup_target_list_is_parsed() {
        let out = "wasm32-wasip2\nx86_64-unknown-linux-gnu\n";
        assert!(target_listed(out, "wasm32-wasip2"));
        assert!(!target_listed("wasm32-wasip1\n", "wasm32-wasip2"));
        assert!(!target_listed("", "wasm32-wasip2"));
    }

    #[test]
    fn outer_cargo_variables_are_dropped_but_settings_kept() {
        for leak in [
            "CARGO",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_TARGET_WASM32_WASIP2_LINKER",
            "CARGO_MAKEFLAGS",
            "RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC",
            "OUT_DIR",
            "__CARGO_FIX_PLZ",
        ] {
            assert!(leaks_into_nested_cargo(leak), "{leak} should be removed");
        }
        for keep in [
            "CARGO_HOME",
            "CARGO_NET_OFFLINE",
            "CARGO_HTTP_TIMEOUT",
            "CARGO_REGISTRIES_CRATES_IO_PROTOCOL",
            "CARGO_TERM_COLOR",
            "PATH",
            "HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
        ] {
            assert!(!leaks_into_nested_cargo(keep), "{keep} should be kept");
        }
    }

    #[test]
    fn package_json_gives_name_and_module_path() {
        let p = parse_package_json(
            r#"{"name":"@acme/js-hello","scripts":{"build":"x"},"waymark":{"module":"out/m.wasm"}}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            JsPackage {
                name: "js-hello".into(),
                module: "out/m.wasm".into()
            }
        );
        let p = parse_package_json(r#"{"name":"trial","scripts":{"build":"x"}}"#).unwrap();
        assert_eq!(p.module, PathBuf::from("dist/trial.wasm"));
        assert_eq!(
            parse_package_json(r#"{"scripts":{"build":"x"}}"#).unwrap_err(),
            "no `name`"
        );
        assert!(
            parse_package_json(r#"{"name":"x"}"#)
                .unwrap_err()
                .contains("scripts.build")
        );
        assert!(
            parse_package_json(r#"{"name":"x","scripts":{"build":"x"},"waymark":{"module":3}}"#)
                .is_err()
        );
    }

    #[test]
    fn staleness_compares_output_with_every_input() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_secs(1);
        let t2 = t1 + Duration::from_secs(1);
        assert!(!is_up_to_date(None, &[Some(t0)]));
        assert!(is_up_to_date(Some(t2), &[Some(t0), Some(t1), None]));
        assert!(!is_up_to_date(Some(t1), &[Some(t0), Some(t2)]));
        assert!(
            !is_up_to_date(Some(t1), &[Some(t1)]),
            "equal times count as stale"
        );
        assert!(is_up_to_date(Some(t0), &[]));
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn newest_mtime_skips_dependency_and_output_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let new = old + Duration::from_secs(60);
        for (path, t) in [
            ("src/index.js", old),
            ("package.json", old),
            ("node_modules/x/index.js", new),
            ("dist/m.wasm", new),
            ("wit/waymark.wit", new),
        ] {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"x").unwrap();
            set_mtime(&path, t);
        }
        let skip = [root.join("dist"), root.join("wit")];
        assert_eq!(
            newest_mtime(root, &["node_modules"], &skip).unwrap(),
            Some(old)
        );
        assert_eq!(newest_mtime(root, &[], &[]).unwrap(), Some(new));
    }

    #[test]
    fn npm_install_runs_when_node_modules_is_missing_or_older_than_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        fs::write(root.join("package.json"), b"{}").unwrap();
        fs::write(root.join("package-lock.json"), b"{}").unwrap();
        set_mtime(&root.join("package.json"), t0);
        set_mtime(&root.join("package-lock.json"), t0);
        assert!(needs_npm_install(root));

        fs::create_dir(root.join("node_modules")).unwrap();
        let stamp = root.join("node_modules").join(INSTALL_STAMP);
        fs::write(&stamp, b"").unwrap();
        set_mtime(&stamp, t0 + Duration::from_secs(5));
        assert!(!needs_npm_install(root));

        set_mtime(
            &root.join("package-lock.json"),
            t0 + Duration::from_secs(10),
        );
        assert!(needs_npm_install(root));
    }

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
