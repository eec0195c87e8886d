//! `waymark deploy SOURCE_OR_WASM`: build a module source (or take a built `.wasm`), upload
//! each component to a running host's `POST /v1/modules/{name}` and print what changed. A
//! client of the API only: it must not open the database.

use super::build::{BuildOptions, build_modules};
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Deploy `source` (a `.wasm` component, or a module source to build) to the host at `url`
/// with API key `key` (deploy scope); `name` overrides the module name of a single component.
pub async fn deploy(source: &Path, name: Option<&str>, url: &str, key: &str) -> anyhow::Result<()> {
    let components = components_of(source)?;
    if name.is_some() && components.len() > 1 {
        bail!(
            "--name names one module, and {} built {}",
            source.display(),
            components.len()
        );
    }
    let client = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    for (module, path) in components {
        let module = name.map_or(module, str::to_owned);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let response = client
            .post(format!("{base}/v1/modules/{module}"))
            .bearer_auth(key)
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(wasm)
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "deploying {module} was refused ({status}): {}",
                body["error"].as_str().unwrap_or("no reason given")
            );
        }
        print!("{}", summary(&module, &body));
    }
    Ok(())
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
    let version = answer["version"].as_str().unwrap_or("?");
    let short = &version[..12.min(version.len())];
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
