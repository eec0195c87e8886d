//! A tenant's buckets in memory, with the inverted indexes that narrow an ingested event to
//! the buckets it can affect.
//!
//! Only buckets ingest evaluates (enabled, computed, with criteria) are indexed: by every
//! event name and every property key their criteria mention, and — for criteria that mention
//! neither — in a wildcard list that every event reaches. Bucket transition events
//! (`bucket:*`) reach none: a transition never re-enters evaluation.

use super::criteria::Condition;
use super::{BucketDef, is_bucket_event};
use std::collections::HashMap;
use std::fmt;

/// Two modules (or one, twice) declare the same bucket id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateBucket {
    pub bucket_id: String,
    pub first_module: String,
    pub second_module: String,
}

impl fmt::Display for DuplicateBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first_module == self.second_module {
            write!(
                f,
                "bucket id {:?} is declared twice by module {:?}",
                self.bucket_id, self.first_module
            )
        } else {
            write!(
                f,
                "bucket id {:?} is declared by both module {:?} and module {:?}",
                self.bucket_id, self.first_module, self.second_module
            )
        }
    }
}

impl std::error::Error for DuplicateBucket {}

/// Checks that bucket ids are unique across a tenant's modules, given as
/// `(module name, its buckets)`; the first duplicate is reported with both module names.
pub fn check_unique_bucket_ids<'a, I>(modules: I) -> Result<(), DuplicateBucket>
where
    I: IntoIterator<Item = (&'a str, &'a [BucketDef])>,
{
    let mut owners: HashMap<&'a str, &'a str> = HashMap::new();
    for (module, buckets) in modules {
        for bucket in buckets {
            if let Some(first) = owners.insert(bucket.id.as_str(), module) {
                return Err(DuplicateBucket {
                    bucket_id: bucket.id.clone(),
                    first_module: first.to_owned(),
                    second_module: module.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// One tenant's buckets. Cheap to query; rebuilt when the tenant's modules change.
#[derive(Debug, Default)]
pub struct BucketRegistry {
    /// Every bucket, in module then declaration order (the evaluation order).
    buckets: Vec<BucketDef>,
    by_id: HashMap<String, usize>,
    by_event: HashMap<String, Vec<usize>>,
    by_property: HashMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

impl BucketRegistry {
    /// Builds the registry from `(module name, its buckets)`, refusing duplicate ids.
    pub fn build<'a, I>(modules: I) -> Result<Self, DuplicateBucket>
    where
        I: IntoIterator<Item = (&'a str, &'a [BucketDef])>,
    {
        let modules: Vec<(&str, &[BucketDef])> = modules.into_iter().collect();
        check_unique_bucket_ids(modules.iter().copied())?;
        Ok(Self::from_buckets(
            modules.into_iter().flat_map(|(_, b)| b.iter().cloned()),
        ))
    }

    /// Builds the registry from buckets already known to have unique ids (a later duplicate
    /// shadows an earlier one in [`BucketRegistry::get`]).
    pub fn from_buckets(buckets: impl IntoIterator<Item = BucketDef>) -> Self {
        let mut registry = Self {
            buckets: buckets.into_iter().collect(),
            ..Self::default()
        };
        for (position, bucket) in registry.buckets.iter().enumerate() {
            registry.by_id.insert(bucket.id.clone(), position);
            if !bucket.is_evaluated() {
                continue;
            }
            let Some(criteria) = &bucket.criteria else {
                continue;
            };
            let mut referenced = false;
            for leaf in criteria.leaves() {
                let (index, key) = match leaf {
                    Condition::Event(e) => (&mut registry.by_event, &e.event),
                    Condition::Property(p) => (&mut registry.by_property, &p.property),
                    _ => continue,
                };
                referenced = true;
                let list = index.entry(key.clone()).or_default();
                // Leaves are visited bucket by bucket, so a repeat is always at the end.
                if list.last() != Some(&position) {
                    list.push(position);
                }
            }
            if !referenced {
                registry.wildcard.push(position);
            }
        }
        registry
    }

    /// A bucket by id, whatever its kind or state.
    pub fn get(&self, id: &str) -> Option<&BucketDef> {
        self.by_id.get(id).map(|&i| &self.buckets[i])
    }

    /// Every bucket, in evaluation order.
    pub fn all(&self) -> &[BucketDef] {
        &self.buckets
    }

    /// The buckets ingest evaluates (enabled, computed), in evaluation order.
    pub fn evaluated(&self) -> impl Iterator<Item = &BucketDef> {
        self.buckets.iter().filter(|b| b.is_evaluated())
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// The buckets a change may move, each once, in evaluation order: those whose criteria
    /// mention the event's name, or any key of its event properties or of the contact
    /// properties the change changed, plus the wildcard buckets. `event_name` is `None` for a
    /// contact update without an event. Only enabled computed buckets; none at all for a
    /// bucket transition event.
    ///
    /// Event property keys only narrow: evaluation never reads the event's payload.
    pub fn candidates<'a, 'k>(
        &'a self,
        event_name: Option<&str>,
        event_property_keys: impl IntoIterator<Item = &'k str>,
        changed_property_keys: impl IntoIterator<Item = &'k str>,
    ) -> Candidates<'a> {
        let mut positions: Vec<usize> = Vec::new();
        if !event_name.is_some_and(is_bucket_event) && !self.buckets.is_empty() {
            if let Some(list) = event_name.and_then(|name| self.by_event.get(name)) {
                positions.extend_from_slice(list);
            }
            if !self.by_property.is_empty() {
                for key in event_property_keys.into_iter().chain(changed_property_keys) {
                    if let Some(list) = self.by_property.get(key) {
                        positions.extend_from_slice(list);
                    }
                }
            }
            positions.extend_from_slice(&self.wildcard);
            positions.sort_unstable();
            positions.dedup();
        }
        Candidates {
            buckets: &self.buckets,
            positions: positions.into_iter(),
        }
    }
}

/// The buckets [`BucketRegistry::candidates`] selected, in evaluation order.
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    buckets: &'a [BucketDef],
    positions: std::vec::IntoIter<usize>,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a BucketDef;

    fn next(&mut self) -> Option<&'a BucketDef> {
        self.positions.next().map(|i| &self.buckets[i])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.positions.size_hint()
    }
}

impl ExactSizeIterator for Candidates<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::BucketKind;
    use serde_json::{Value, json};

    fn bucket(id: &str, criteria: Option<Value>) -> BucketDef {
        BucketDef::computed(id, id, criteria.map(|c| Condition::from_json(&c).unwrap()))
    }

    fn event(name: &str) -> Value {
        json!({"type": "event", "event": name, "check": "exists"})
    }

    fn prop(name: &str) -> Value {
        json!({"type": "property", "property": name, "operator": "exists"})
    }

    fn ids<'a>(it: impl Iterator<Item = &'a BucketDef>) -> Vec<&'a str> {
        it.map(|b| b.id.as_str()).collect()
    }

    fn registry() -> BucketRegistry {
        let mut disabled = bucket("disabled", Some(event("app.active")));
        disabled.enabled = false;
        let mut manual = bucket("manual", None);
        manual.kind = BucketKind::Manual;
        BucketRegistry::from_buckets([
            bucket("active", Some(event("app.active"))),
            bucket(
                "pro",
                Some(json!({"type": "property", "property": "plan",
                                       "operator": "eq", "value": "pro"})),
            ),
            bucket(
                "both",
                Some(json!({"type": "all", "conditions": [
                    event("app.active"), prop("plan"), event("app.active")
                ]})),
            ),
            disabled,
            manual,
            bucket("degenerate", Some(json!({"type": "all", "conditions": []}))),
        ])
    }

    const NONE: [&str; 0] = [];

    #[test]
    fn given_an_event_name_when_narrowing_then_buckets_mentioning_it_and_wildcards_come_back() {
        let r = registry();
        assert_eq!(
            ids(r.candidates(Some("app.active"), NONE, NONE)),
            ["active", "both", "degenerate"]
        );
        assert_eq!(ids(r.candidates(Some("other"), NONE, NONE)), ["degenerate"]);
    }

    #[test]
    fn given_property_keys_when_narrowing_then_patch_and_event_keys_both_select_once() {
        let r = registry();
        assert_eq!(
            ids(r.candidates(Some("other"), ["plan"], NONE)),
            ["pro", "both", "degenerate"]
        );
        assert_eq!(
            ids(r.candidates(Some("other"), NONE, ["plan"])),
            ["pro", "both", "degenerate"]
        );
        assert_eq!(
            ids(r.candidates(Some("app.active"), ["plan", "x"], ["plan"])),
            ["active", "pro", "both", "degenerate"]
        );
    }

    #[test]
    fn given_a_bucket_transition_event_when_narrowing_then_nothing_comes_back() {
        let r = registry();
        assert_eq!(
            ids(r.candidates(Some("bucket:entered:active"), ["plan"], ["plan"])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn given_disabled_and_manual_buckets_when_narrowing_then_they_are_excluded_but_still_known() {
        let r = registry();
        let all: Vec<&str> = ids(r.candidates(Some("app.active"), ["plan"], ["plan"]));
        assert!(!all.contains(&"disabled") && !all.contains(&"manual"));
        assert_eq!(r.get("manual").unwrap().kind, BucketKind::Manual);
        assert!(!r.get("disabled").unwrap().enabled);
        assert_eq!(r.len(), 6);
        assert_eq!(ids(r.evaluated()), ["active", "pro", "both", "degenerate"]);
        assert!(r.get("nope").is_none());
    }

    #[test]
    fn given_an_empty_registry_when_narrowing_then_nothing_comes_back() {
        let r = BucketRegistry::default();
        assert!(r.is_empty());
        assert_eq!(r.candidates(Some("x"), ["a"], ["b"]).count(), 0);
    }

    #[test]
    fn given_duplicate_ids_across_modules_when_checked_then_both_modules_are_named() {
        let a = [bucket("vip", Some(event("x")))];
        let b = [
            bucket("other", Some(event("x"))),
            bucket("vip", Some(event("y"))),
        ];
        let err = check_unique_bucket_ids([("billing", &a[..]), ("growth", &b[..])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bucket id \"vip\" is declared by both module \"billing\" and module \"growth\""
        );
        assert_eq!(
            BucketRegistry::build([("billing", &a[..]), ("growth", &b[..])]).unwrap_err(),
            err
        );
        let twice = [
            bucket("vip", Some(event("x"))),
            bucket("vip", Some(event("x"))),
        ];
        assert_eq!(
            check_unique_bucket_ids([("m", &twice[..])])
                .unwrap_err()
                .to_string(),
            "bucket id \"vip\" is declared twice by module \"m\""
        );
        let r = BucketRegistry::build([("billing", &a[..]), ("growth", &b[..0])]).unwrap();
        assert_eq!(ids(r.candidates(Some("x"), NONE, NONE)), ["vip"]);
    }
}
