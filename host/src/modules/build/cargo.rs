//! Cargo sources: checking for (and adding) the wasm target, reading `cargo metadata` to find
//! the `cdylib` packages, running the nested `cargo build`, and keeping an outer cargo's
//! environment out of it.
//!
//! It hands each built artifact to [`super::install`]; it must not write into `out_dir` itself
//! nor know about JS sources.

use super::{BuildError, BuiltModule, WASM_TARGET, capture, expect_artifact, install, run};
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;

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

/// A `cargo`/`rustup` command in `dir` whose environment carries nothing of an outer cargo
/// (target dir, target triple, flags), so a nested build behaves as if run by hand.
pub fn clean_command(program: &str, dir: &Path) -> Command {
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

/// Whether `rustup target list --installed` output lists `target`.
fn target_listed(rustup_output: &str, target: &str) -> bool {
    rustup_output.lines().any(|line| line.trim() == target)
}

/// Makes sure the toolchain that will build `dir` has the wasm target (rustup is told not to
/// auto-install targets on some machines, so a `rust-toolchain.toml` alone is not enough).
pub(super) fn ensure_wasm_target(dir: &Path) -> Result<(), BuildError> {
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

/// Builds the module packages of the cargo package or workspace in `dir` and installs them.
pub(super) fn build(
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
    let packages = serde_json::from_str::<serde_json::Value>(&capture(meta)?)
        .map_err(|e| e.to_string())
        .and_then(|metadata| cdylib_packages(&metadata, &manifest))
        .map_err(|message| BuildError::Metadata {
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
            expect_artifact(dir, &artifact)?;
            install(&artifact, out_dir, &package.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
