//! `waymark new NAME [--lang rust|ts]`: a module project in any directory that builds without
//! the Waymark repository. The guest SDK (Rust or TypeScript) and the WIT this binary was
//! built with are written into it (`waymark-sdk/`, referenced by a path dependency), so the
//! module is pinned to the SDK of the host that scaffolded it and can be committed whole.
//! A Rust module's `Cargo.lock` starts as the SDK's, so it resolves the same dependency
//! versions the SDK was tested with; a TypeScript module pins its tools' exact versions in
//! `package.json` (the versions the SDK is tested with, see the toolchain notes).

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

/// The language a module is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Rust,
    TypeScript,
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rust" | "rs" => Ok(Lang::Rust),
            "ts" | "typescript" => Ok(Lang::TypeScript),
            other => Err(format!(
                "unknown language {other:?}: use `rust` or `ts` (TypeScript)"
            )),
        }
    }
}

/// Scaffold module `name` in `parent/name`; the directory made.
pub fn new_module(parent: &Path, name: &str, lang: Lang) -> Result<PathBuf, ScaffoldError> {
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
    match lang {
        Lang::Rust => new_rust_module(&dir, name)?,
        Lang::TypeScript => new_ts_module(&dir, name)?,
    }
    Ok(dir)
}

fn new_rust_module(dir: &Path, name: &str) -> Result<(), ScaffoldError> {
    write(&dir.join("Cargo.toml"), &cargo_toml(name))?;
    write(&dir.join("src/lib.rs"), &lib_rs(name))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    write_sdk(&dir.join(SDK_DIR), Lang::Rust)?;
    let lock = SDK_FILES
        .iter()
        .find(|(path, _)| *path == "guest-sdk/rust/Cargo.lock")
        .map_or("", |(_, text)| text);
    write(&dir.join("Cargo.lock"), lock)
}

fn new_ts_module(dir: &Path, name: &str) -> Result<(), ScaffoldError> {
    write(&dir.join("package.json"), &package_json(name))?;
    let tsconfig = SDK_FILES
        .iter()
        .find(|(path, _)| *path == "guest-sdk/ts/tsconfig.json")
        .map_or("", |(_, text)| text);
    write(&dir.join("tsconfig.json"), tsconfig)?;
    write(&dir.join("src/index.ts"), &index_ts(name))?;
    write(&dir.join(format!("test/{name}.test.ts")), &test_ts(name))?;
    write(&dir.join(".gitignore"), "node_modules/\ndist/\n")?;
    write_sdk(&dir.join(SDK_DIR), Lang::TypeScript)
}

/// Write one language's guest SDK and the WIT under `dir`, in the repository's layout (the
/// SDKs find the WIT at `../../wit`).
pub fn write_sdk(dir: &Path, lang: Lang) -> Result<(), ScaffoldError> {
    let prefix = match lang {
        Lang::Rust => "guest-sdk/rust/",
        Lang::TypeScript => "guest-sdk/ts/",
    };
    for (path, text) in SDK_FILES {
        if path.starts_with(prefix) || path.starts_with("wit/") {
            write(&dir.join(path), text)?;
        }
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

fn package_json(name: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "waymark": {{
    "module": "dist/{name}.wasm"
  }},
  "scripts": {{
    "build": "waymark-guest build",
    "test": "tsc --noEmit -p . && node --import tsx --test test/*.test.ts"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/preview2-shim": "0.25.0",
    "@types/node": "20.19.43",
    "@waymark/guest": "file:{SDK_DIR}/guest-sdk/ts",
    "esbuild": "0.28.2",
    "tsx": "4.23.15",
    "typescript": "5.9.3"
  }}
}}
"#
    )
}

fn index_ts(name: &str) -> String {
    format!(
        r#"/**
 * {name}: a Waymark module in TypeScript.
 *
 * Build it with `waymark build` (here), deploy it with `waymark deploy . --key $KEY`, and
 * test it with `npm test`. Every `ctx` call is a durable, journaled step: after the sleep the
 * host runs the handler again from the top and carries on from there.
 */
import {{ type Ctx, days, defineModule, journey, template }} from '@waymark/guest';

/** `user.signed_up` → welcome email → one day → a follow-up, unless they are on the pro plan. */
export async function welcome(ctx: Ctx): Promise<void> {{
  await ctx.sendEmail('{name}-welcome');
  await ctx.sleep(days(1), 'one day after signing up');
  if (ctx.person.string('plan') !== 'pro') {{
    await ctx.sendEmail('{name}-follow-up');
  }}
}}

export default defineModule({{
  journeys: [
    journey({{ id: '{name}-welcome', name: 'Welcome', trigger: 'user.signed_up', entryLimit: 'once', run: welcome }}),
  ],
  templates: [
    template({{
      key: '{name}-welcome',
      subject: "Welcome, {{{{ name | default('there') }}}}!",
      body: "Hi {{{{ name | default('there') }}}}, thanks for signing up.",
    }}),
    template({{
      key: '{name}-follow-up',
      subject: 'How is it going?',
      body: "Hi {{{{ name | default('there') }}}}, a day in: anything we can help with?",
    }}),
  ],
}});
"#
    )
}

fn test_ts(name: &str) -> String {
    format!(
        r#"// Run with `npm test`: the handlers run in node against the test kit's fake host, with
// virtual time and the same replay semantics as the real host.
import {{ test }} from 'node:test';
import assert from 'node:assert/strict';
import {{ testModule }} from '@waymark/guest/testing';
import module from '../src/index.ts';

const signup = {{ name: 'user.signed_up', properties: {{}} }};

test('a free user gets the welcome email, then a follow-up a day later', async () => {{
  const run = await testModule(module).run('{name}-welcome', {{
    person: {{ key: 'ada', email: 'ada@example.com', properties: {{ plan: 'free' }} }},
    trigger: signup,
  }});
  assert.equal(run.status, 'completed');
  assert.deepEqual(run.emails.map((e) => e.template), ['{name}-welcome', '{name}-follow-up']);
}});

test('a pro user gets only the welcome email', async () => {{
  const run = await testModule(module).run('{name}-welcome', {{
    person: {{ key: 'bo', email: 'bo@example.com', properties: {{ plan: 'pro' }} }},
    trigger: signup,
  }});
  assert.equal(run.status, 'completed');
  assert.deepEqual(run.emails.map((e) => e.template), ['{name}-welcome']);
}});
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
            "guest-sdk/ts/package.json",
            "guest-sdk/ts/src/index.ts",
            "guest-sdk/ts/src/testing/index.ts",
            "guest-sdk/ts/bin/waymark-guest.mjs",
        ] {
            assert!(paths.contains(&needed), "{needed} in {paths:?}");
        }
    }

    #[test]
    fn a_scaffold_refuses_bad_names_and_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Hello", "1st", "has space", "under_score"] {
            assert!(matches!(
                new_module(dir.path(), bad, Lang::Rust),
                Err(ScaffoldError::InvalidName(_))
            ));
        }
        let made = new_module(dir.path(), "hello", Lang::Rust).unwrap();
        assert!(made.join("waymark-sdk/wit/waymark.wit").is_file());
        assert!(!made.join("waymark-sdk/guest-sdk/ts").exists());
        assert!(matches!(
            new_module(dir.path(), "hello", Lang::TypeScript),
            Err(ScaffoldError::Exists(_))
        ));
    }

    #[test]
    fn a_typescript_scaffold_links_the_embedded_sdk_and_ships_a_test() {
        let dir = tempfile::tempdir().unwrap();
        let made = new_module(dir.path(), "hello-ts", Lang::TypeScript).unwrap();
        let package: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(made.join("package.json")).unwrap())
                .unwrap();
        assert_eq!(package["name"], "hello-ts");
        let sdk = package["devDependencies"]["@waymark/guest"]
            .as_str()
            .unwrap();
        let sdk_dir = made.join(sdk.strip_prefix("file:").unwrap());
        assert!(sdk_dir.join("src/index.ts").is_file());
        assert!(sdk_dir.join("bin/waymark-guest.mjs").is_file());
        // The build script finds the WIT at ../../wit from the SDK.
        assert!(sdk_dir.join("../../wit/waymark.wit").is_file());
        assert!(
            made.join("src/index.ts").is_file() && made.join("test/hello-ts.test.ts").is_file()
        );
        assert!(!made.join("waymark-sdk/guest-sdk/rust").exists());
        assert!(matches!(
            "kotlin".parse::<Lang>(),
            Err(message) if message.contains("rust") && message.contains("ts")
        ));
    }
}
