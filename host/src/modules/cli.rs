//! `waymark deploy SOURCE_OR_WASM`: build a module source (or take a built `.wasm`), upload
//! each component to a running host's `POST /v1/modules/{name}` and print what changed. A
//! client of the API only: it must not open the database.

use super::build::{BuildOptions, build_modules};
use crate::api::client::ApiClient;
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What `waymark deploy` asks of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployMode {
    /// Make it the active version; live runs stay on theirs.
    Deploy,
    /// Replay the module's live runs against it and report; change nothing.
    Verify,
    /// Deploy it and move the live runs that replay cleanly to it.
    Migrate,
}

impl DeployMode {
    fn route(self) -> &'static str {
        match self {
            DeployMode::Deploy => "",
            DeployMode::Verify => "/verify",
            DeployMode::Migrate => "/upgrade",
        }
    }
}

/// Deploy `source` (a `.wasm` component, or a module source to build) to the host at `url`
/// with API key `key` (deploy scope); `name` overrides the module name of a single component.
/// A verification that finds runs that would not replay is an error (exit status 1).
pub async fn deploy(
    source: &Path,
    name: Option<&str>,
    mode: DeployMode,
    url: &str,
    key: &str,
) -> anyhow::Result<()> {
    let components = components_of(source)?;
    if name.is_some() && components.len() > 1 {
        bail!(
            "--name names one module, and {} built {}",
            source.display(),
            components.len()
        );
    }
    let client = ApiClient::new(url, key);
    for (module, path) in components {
        let module = name.map_or(module, str::to_owned);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let request = client
            .request(
                reqwest::Method::POST,
                &format!("/v1/modules/{module}{}", mode.route()),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(wasm);
        let body = client
            .send(request)
            .await
            .with_context(|| format!("deploying {module}"))?;
        match mode {
            DeployMode::Deploy => print!("{}", summary(&module, &body)),
            DeployMode::Verify => {
                print!("{}", verification(&module, &body));
                let stuck = body["runs"].as_u64().unwrap_or(0) - clean_runs(&body);
                if stuck > 0 {
                    bail!("{stuck} live run(s) of {module} would not replay on this version");
                }
            }
            DeployMode::Migrate => {
                print!("{}", summary(&module, &body));
                print!("{}", verification(&module, &body["verification"]));
                let migrated = body["migrated"].as_array().map_or(0, Vec::len);
                let total = body["verification"]["runs"].as_u64().unwrap_or(0);
                println!(
                    "moved {migrated} of {total} live run(s) to the new version; the others stay on theirs"
                );
            }
        }
    }
    Ok(())
}

fn clean_runs(verification: &Value) -> u64 {
    verification["journeys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| j["clean"].as_u64().unwrap_or(0))
        .sum()
}

/// A verification, for a person: per journey the runs by verdict, and each run that would
/// not replay with why.
pub fn verification(module: &str, answer: &Value) -> String {
    let mut text = format!(
        "{module}: {} live run(s) replayed against {}\n",
        answer["runs"],
        short(answer["candidate"].as_str().unwrap_or("?"))
    );
    for journey in answer["journeys"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "  {}: {} clean, {} diverged, {} without the journey, {} failed\n",
            journey["journey"].as_str().unwrap_or("?"),
            journey["clean"],
            journey["diverged"],
            journey["journeyMissing"],
            journey["failed"]
        ));
        for run in journey["runs"].as_array().into_iter().flatten() {
            let id = run["runId"].as_str().unwrap_or("?");
            match run["result"].as_str() {
                Some("diverged") => text.push_str(&format!(
                    "    {id}: diverges at step {}: recorded {}, called {}\n",
                    run["step"],
                    run["recorded"].as_str().unwrap_or("?"),
                    run["called"].as_str().unwrap_or("?")
                )),
                Some("failed") => text.push_str(&format!(
                    "    {id}: fails: {}\n",
                    run["reason"].as_str().unwrap_or("?")
                )),
                Some("journeyMissing") => text.push_str(&format!(
                    "    {id}: its journey is gone from this version\n"
                )),
                _ => {}
            }
        }
    }
    text
}

/// `(module name, component path)` for each module `source` stands for: itself when it is a
/// `.wasm` file, else what building it produces.
fn components_of(source: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if source.extension().is_some_and(|ext| ext == "wasm") {
        let name = source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, source.to_owned())]);
    }
    let source = source
        .canonicalize()
        .with_context(|| format!("module source {}", source.display()))?;
    let work = source.join("target").join("waymark");
    let built = build_modules(&BuildOptions {
        sources: vec![source.clone()],
        out_dir: work.join("modules"),
        target_dir: work.join("wasm"),
    })?;
    Ok(built.into_iter().map(|m| (m.name, m.path)).collect())
}

/// What a deploy answered, for a person: the version and one line per kind that changed.
pub fn summary(module: &str, answer: &Value) -> String {
    let short = short(answer["version"].as_str().unwrap_or("?"));
    if answer["changed"] == false {
        return format!("{module} {short}: already active, nothing changed\n");
    }
    let mut text = format!(
        "{module} {short}: deployed (revision {})\n",
        answer["revision"]
    );
    for kind in ["journeys", "buckets", "reactions", "templates"] {
        let delta = &answer["changes"][kind];
        let mut parts = Vec::new();
        for (key, mark) in [("added", "+"), ("changed", "~"), ("removed", "-")] {
            for id in delta[key].as_array().into_iter().flatten() {
                parts.push(format!("{mark}{}", id.as_str().unwrap_or("?")));
            }
        }
        if !parts.is_empty() {
            text.push_str(&format!("  {kind}: {}\n", parts.join(" ")));
        }
    }
    if let Some(backfills) = answer["changes"]["bucketsToBackfill"].as_array()
        && !backfills.is_empty()
    {
        let ids: Vec<&str> = backfills.iter().filter_map(Value::as_str).collect();
        text.push_str(&format!("  backfilling: {}\n", ids.join(" ")));
    }
    text
}

/// A version's hash as people read it: its first twelve characters.
fn short(version: &str) -> &str {
    &version[..12.min(version.len())]
}
