//! What a deploy changed, as a deploy's answer and the CLI print it: the journeys, buckets,
//! reactions and templates it added, removed or changed. A journey or reaction changed when
//! its declaration did; a bucket when its definition did (its criteria fingerprint decides
//! whether it is backfilled again); a template when any part of its text did.

use super::LoadedModule;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Added, removed and changed ids of one kind, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Delta {
    /// Compare two maps of id → declaration.
    fn between(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Delta {
        let mut delta = Delta::default();
        for (id, declared) in after {
            match before.get(id) {
                None => delta.added.push(id.clone()),
                Some(previous) if previous != declared => delta.changed.push(id.clone()),
                Some(_) => {}
            }
        }
        delta.removed = before
            .keys()
            .filter(|id| !after.contains_key(*id))
            .cloned()
            .collect();
        delta
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What moving a module from one version (or none) to another (or none) changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSummary {
    pub journeys: Delta,
    pub buckets: Delta,
    pub reactions: Delta,
    pub templates: Delta,
    /// Buckets whose criteria fingerprint is new: each is backfilled.
    #[serde(rename = "bucketsToBackfill")]
    pub buckets_to_backfill: Vec<String>,
}

impl ChangeSummary {
    pub fn between(before: Option<&LoadedModule>, after: Option<&LoadedModule>) -> ChangeSummary {
        let declared = |module: Option<&LoadedModule>| Declared::of(module);
        let (before, after) = (declared(before), declared(after));
        let mut buckets_to_backfill: Vec<String> = after
            .fingerprints
            .iter()
            .filter(|(id, fingerprint)| before.fingerprints.get(*id) != Some(fingerprint))
            .map(|(id, _)| id.clone())
            .collect();
        buckets_to_backfill.sort();
        ChangeSummary {
            journeys: Delta::between(&before.journeys, &after.journeys),
            buckets: Delta::between(&before.buckets, &after.buckets),
            reactions: Delta::between(&before.reactions, &after.reactions),
            templates: Delta::between(&before.templates, &after.templates),
            buckets_to_backfill,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.journeys.is_empty()
            && self.buckets.is_empty()
            && self.reactions.is_empty()
            && self.templates.is_empty()
    }
}

/// A version's declarations by id, as JSON to compare.
#[derive(Default)]
struct Declared {
    journeys: BTreeMap<String, Value>,
    reactions: BTreeMap<String, Value>,
    buckets: BTreeMap<String, Value>,
    templates: BTreeMap<String, Value>,
    fingerprints: BTreeMap<String, String>,
}

impl Declared {
    fn of(module: Option<&LoadedModule>) -> Declared {
        let Some(module) = module else {
            return Declared::default();
        };
        let mut declared = Declared::default();
        for journey in &module.manifest.journeys {
            let kind = if journey.source_bucket_id.is_some() {
                &mut declared.reactions
            } else {
                &mut declared.journeys
            };
            kind.insert(journey.id.clone(), json(journey));
        }
        for bucket in &module.manifest.buckets {
            declared.buckets.insert(bucket.id.clone(), json(bucket));
            if let Some(fingerprint) = bucket.criteria_fingerprint() {
                declared.fingerprints.insert(bucket.id.clone(), fingerprint);
            }
        }
        for template in &module.manifest.templates {
            declared
                .templates
                .insert(template.key.clone(), json(template));
        }
        declared
    }
}

/// A declaration as JSON, to compare (the manifest types serialise infallibly).
fn json<T: Serialize>(declaration: &T) -> Value {
    serde_json::to_value(declaration).unwrap_or(Value::Null)
}
