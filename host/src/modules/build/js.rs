//! JS sources (componentize-js): reading `package.json`, deciding whether the build is stale,
//! copying the repository's WIT into the package, `npm install` (with its completion stamp)
//! and `npm run build`.
//!
//! It hands the built component to [`super::install`]; it must not write into `out_dir` itself
//! nor know about cargo sources.

use super::{BuildError, BuiltModule, expect_artifact, install, io_err, repo_root_from, run};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// What [`build`] needs from `package.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JsPackage {
    /// The module name: the package name without an npm scope.
    name: String,
    /// The built component, relative to the package directory.
    module: PathBuf,
    /// Local packages it depends on (`file:` dependencies, such as the TypeScript SDK),
    /// relative to the package directory: their changes make the build stale too.
    linked: Vec<PathBuf>,
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
    let linked = ["dependencies", "devDependencies"]
        .iter()
        .filter_map(|section| json.get(section).and_then(|d| d.as_object()))
        .flat_map(|deps| deps.values())
        .filter_map(|spec| spec.as_str()?.strip_prefix("file:"))
        .map(PathBuf::from)
        .collect();
    Ok(JsPackage {
        name,
        module,
        linked,
    })
}

/// Whether an output last modified at `output` is newer than every input time.
fn is_up_to_date(output: Option<SystemTime>, inputs: &[Option<SystemTime>]) -> bool {
    match output {
        None => false,
        Some(out) => inputs.iter().flatten().all(|input| *input < out),
    }
}

/// The modification time of `path`, if it exists and the platform reports one.
pub(super) fn mtime(path: &Path) -> Option<SystemTime> {
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

/// Written into `node_modules` after a successful `npm install` (npm may rewrite the lock file
/// after its own bookkeeping, which would otherwise look like a newer lock every time).
const INSTALL_STAMP: &str = ".waymark-installed";

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

/// `npm <args>` run in `dir`.
fn npm(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(dir).args(args);
    cmd
}

/// Builds the JS package in `dir` (unless its output is up to date) and installs it.
pub(super) fn build(dir: &Path, out_dir: &Path) -> Result<BuiltModule, BuildError> {
    let package_json = dir.join("package.json");
    let text = fs::read_to_string(&package_json).map_err(io_err("reading", &package_json))?;
    let package = parse_package_json(&text).map_err(|message| BuildError::PackageJson {
        path: package_json.clone(),
        message,
    })?;
    let output = dir.join(&package.module);
    let local_wit = dir.join("wit");
    let repo_wit = repository_wit(dir);
    // A package linking a guest SDK (`waymark new --lang ts`) builds against the WIT that
    // SDK ships with (`<sdk>/../../wit`), which its build script finds itself.
    let sdk_wit = package
        .linked
        .iter()
        .map(|linked| dir.join(linked).join("../../wit"))
        .find(|wit| wit.join("waymark.wit").is_file());
    let wit_dir = match (&repo_wit, &sdk_wit) {
        (Some(repo), _) => repo.clone(),
        (None, Some(sdk)) => sdk.clone(),
        (None, None) if local_wit.join("waymark.wit").is_file() => local_wit.clone(),
        (None, None) => return Err(BuildError::WitNotFound(dir.to_path_buf())),
    };

    // Inputs: the package's own files (not node_modules, build output or the copied WIT) and
    // the WIT it is built from.
    let mut skip_paths = vec![local_wit.clone()];
    if let Some(parent) = output.parent().filter(|p| *p != dir) {
        skip_paths.push(parent.to_path_buf());
    }
    // `target` is where `waymark build` and `deploy` put their output when run in the package.
    let mut sources = newest_mtime(dir, &["node_modules", ".git", "target"], &skip_paths)
        .map_err(io_err("scanning", dir))?;
    for linked_dir in outside_linked_dirs(dir, &package.linked) {
        let newest = newest_mtime(&linked_dir, &["node_modules", ".git", "test"], &[])
            .map_err(io_err("scanning", &linked_dir))?;
        sources = sources.max(newest);
    }
    let wit = newest_mtime(&wit_dir, &[], &[]).map_err(io_err("scanning", &wit_dir))?;

    if is_up_to_date(mtime(&output), &[sources, wit]) {
        tracing::info!(source = %dir.display(), module = %package.name, "JS module is up to date");
    } else {
        tracing::info!(source = %dir.display(), module = %package.name, "building JS module (componentize-js)");
        // A plain JS package builds against `./wit`: refresh it from the repository's.
        if let (Some(repo_wit), None) = (&repo_wit, &sdk_wit) {
            copy_dir_fresh(repo_wit, &local_wit)?;
        }
        if needs_npm_install(dir) {
            run(npm(dir, &["install", "--no-audit", "--no-fund"]))?;
            let stamp = dir.join("node_modules").join(INSTALL_STAMP);
            fs::write(&stamp, b"npm install completed; see waymark build\n")
                .map_err(io_err("writing", &stamp))?;
        }
        run(npm(dir, &["run", "build"]))?;
        expect_artifact(dir, &output)?;
    }
    install(&output, out_dir, &package.name)
}

/// The linked packages (`file:` dependencies) that exist and lie outside `dir` (those inside
/// it are scanned with the package's own files), as resolved paths: `../../guest-sdk/ts` joined
/// to `dir` still *starts with* `dir` until its `..` are resolved.
fn outside_linked_dirs(dir: &Path, linked: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(package) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    linked
        .iter()
        .filter_map(|l| fs::canonicalize(package.join(l)).ok())
        .filter(|l| l.is_dir() && !l.starts_with(&package))
        .collect()
}

/// The WIT directory of the repository a JS package lives in, if it lives in one. Searched
/// from the package's parent: the package's own `wit` is the copy an earlier build made, and
/// finding it first would hide every later change to the repository's WIT.
fn repository_wit(package_dir: &Path) -> Option<PathBuf> {
    let absolute = fs::canonicalize(package_dir)
        .or_else(|_| std::path::absolute(package_dir))
        .ok()?;
    repo_root_from(absolute.parent()?).map(|root| root.join("wit"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn linked_packages_outside_the_package_are_resolved_and_inside_ones_left_to_its_scan() {
        let root = tempfile::tempdir().unwrap();
        let package = root.path().join("examples/pkg");
        for dir in ["examples/pkg/vendored", "guest-sdk/ts"] {
            fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let linked = [
            PathBuf::from("../../guest-sdk/ts"),
            PathBuf::from("vendored"),
            PathBuf::from("../missing"),
        ];
        assert_eq!(
            outside_linked_dirs(&package, &linked),
            [fs::canonicalize(root.path().join("guest-sdk/ts")).unwrap()]
        );
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
                module: "out/m.wasm".into(),
                linked: vec![],
            }
        );
        let p = parse_package_json(
            r#"{"name":"ts","scripts":{"build":"x"},"devDependencies":{"@waymark/guest":"file:../sdk","typescript":"5.9.3"}}"#,
        )
        .unwrap();
        assert_eq!(p.linked, [PathBuf::from("../sdk")]);
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
    fn a_package_with_a_copied_wit_still_builds_from_the_repository_wit() {
        let repo = tempfile::tempdir().unwrap();
        fs::create_dir_all(repo.path().join("wit")).unwrap();
        fs::write(
            repo.path().join("wit/waymark.wit"),
            "package waymark:journey;",
        )
        .unwrap();
        let package = repo.path().join("guests/js-hello");
        fs::create_dir_all(package.join("wit")).unwrap();
        fs::write(package.join("wit/waymark.wit"), "an earlier copy").unwrap();

        let wit = repository_wit(&package).unwrap();

        assert_eq!(wit, fs::canonicalize(repo.path()).unwrap().join("wit"));
        let standalone = tempfile::tempdir().unwrap();
        assert_eq!(repository_wit(standalone.path()), None);
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
}
