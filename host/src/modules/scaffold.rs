//! `waymark new NAME`: a module project in any directory that builds without the Waymark
//! repository. The Rust guest SDK and the WIT this binary was built with are written into it
//! (`waymark-sdk/`, referenced by a path dependency), so the module is pinned to the SDK of
//! the host that scaffolded it, builds offline once its crates.io dependencies are fetched,
//! and can be committed whole. Its `Cargo.lock` starts as the SDK's, so it resolves the same
//! dependency versions the SDK was tested with.

use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/guest_sdk.rs"));

/// Where in a scaffolded module the SDK and WIT are written.
pub const SDK_DIR: &str = "waymark-sdk";

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0} exists already; pick another name or remove it")]
    Exists(PathBuf),
    #[error(
        "invalid module name {0:?}: use lowercase letters, digits and '-', starting with a letter"
    )]
    InvalidName(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Scaffold module `name` in `parent/name`; the directory made.
pub fn new_module(parent: &Path, name: &str) -> Result<PathBuf, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= super::deploy::MAX_NAME_LEN;
    if !valid {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    write(&dir.join("Cargo.toml"), &cargo_toml(name))?;
    write(&dir.join("src/lib.rs"), &lib_rs(name))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    write_sdk(&dir.join(SDK_DIR))?;
    let lock = SDK_FILES
        .iter()
        .find(|(path, _)| *path == "guest-sdk/rust/Cargo.lock")
        .map_or("", |(_, text)| text);
    write(&dir.join("Cargo.lock"), lock)?;
    Ok(dir)
}

/// Write the guest SDK and the WIT under `dir`, in the repository's layout (the SDK finds
/// the WIT at `../../wit`).
pub fn write_sdk(dir: &Path) -> Result<(), ScaffoldError> {
    for (path, text) in SDK_FILES {
        write(&dir.join(path), text)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    let io_err = |source| ScaffoldError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    std::fs::write(path, text).map_err(io_err)
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A module is one component: `waymark build` compiles this crate for wasm32-wasip2.
[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK of the Waymark host that scaffolded this module (`waymark new`).
waymark-guest = {{ path = "{SDK_DIR}/guest-sdk/rust" }}

# The module is its own workspace; the SDK is a dependency, not a member.
[workspace]
exclude = ["{SDK_DIR}"]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! {name}: a Waymark module.
//!
//! Build it with `waymark build` (here), deploy it with `waymark deploy . --key $KEY`, and
//! run its manifest check with `cargo test`. Every `ctx` call is a durable, journaled step:
//! after the sleep the host replays the handler from the top and carries on from there.

use waymark_guest::prelude::*;

/// `user.signed_up` → welcome email → one day → a follow-up, unless they already upgraded.
fn welcome(ctx: &Ctx) -> JourneyResult {{
    ctx.send_email(email("{name}-welcome"))?;
    ctx.sleep(days(1), "one day after signing up");
    if ctx.person().property_str("plan") != Some("pro") {{
        ctx.send_email(email("{name}-follow-up"))?;
    }}
    Ok(())
}}

waymark_guest::module! {{
    journeys: [
        journey("{name}-welcome")
            .name("Welcome")
            .on("user.signed_up")
            .once()
            => welcome,
    ],
    templates: [
        template("{name}-welcome")
            .subject("Welcome, {{{{ name | default('there') }}}}!")
            .body("Hi {{{{ name | default('there') }}}}, thanks for signing up."),
        template("{name}-follow-up")
            .subject("How is it going?")
            .body("Hi {{{{ name | default('there') }}}}, a day in: anything we can help with?"),
    ],
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_and_wit_are_embedded_in_the_repository_layout() {
        let paths: Vec<&str> = SDK_FILES.iter().map(|(path, _)| *path).collect();
        for needed in [
            "wit/waymark.wit",
            "guest-sdk/rust/Cargo.toml",
            "guest-sdk/rust/src/lib.rs",
        ] {
            assert!(paths.contains(&needed), "{needed} in {paths:?}");
        }
    }

    #[test]
    fn a_scaffold_refuses_bad_names_and_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Hello", "1st", "has space", "under_score"] {
            assert!(matches!(
                new_module(dir.path(), bad),
                Err(ScaffoldError::InvalidName(_))
            ));
        }
        let made = new_module(dir.path(), "hello").unwrap();
        assert!(made.join("waymark-sdk/wit/waymark.wit").is_file());
        assert!(matches!(
            new_module(dir.path(), "hello"),
            Err(ScaffoldError::Exists(_))
        ));
    }
}
