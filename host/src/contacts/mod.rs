//! Contacts: one per person. This module owns the rules for a contact's identity (which
//! values identify a person, the resolved key, which contact survives a merge) and its property
//! bag; the store applies them inside its transactions and never re-implements them.

use serde_json::{Map, Value};

/// Merge a property patch into a contact's properties: shallow, the patch wins, and a `null`
/// in the patch removes the key. Nested objects are replaced wholesale. Answers the keys whose
/// value it changed: added, replaced by a different value, or removed. A key the patch sets to
/// the value it already had is not among them, nor is a `null` for a key that was absent.
pub fn merge_properties(
    existing: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, value) in patch {
        let differs = if value.is_null() {
            existing.remove(key).is_some()
        } else if existing.get(key) == Some(value) {
            false
        } else {
            existing.insert(key.clone(), value.clone());
            true
        };
        if differs {
            changed.push(key.clone());
        }
    }
    changed
}

/// Emails identify people case-insensitively: trimmed and lowercased. Empty means absent.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    (!email.is_empty()).then_some(email)
}

/// The kinds of value that identify a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    /// The producer's user id.
    External,
    Email,
    Anonymous,
    /// A resolved key the contact had before (kept as an alias so old keys still resolve).
    Key,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::External => "external",
            IdentityKind::Email => "email",
            IdentityKind::Anonymous => "anonymous",
            IdentityKind::Key => "key",
        }
    }

    pub fn parse(text: &str) -> Option<IdentityKind> {
        [
            IdentityKind::External,
            IdentityKind::Email,
            IdentityKind::Anonymous,
            IdentityKind::Key,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One identifying value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    pub kind: IdentityKind,
    pub value: String,
}

/// The identifying values an event or contact upsert carries, normalised: trimmed, emails
/// lowercased, empty meaning absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub anonymous_id: Option<String>,
}

fn trimmed(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Identity {
    pub fn new(user_id: Option<&str>, email: Option<&str>, anonymous_id: Option<&str>) -> Self {
        Self {
            user_id: trimmed(user_id),
            email: email.and_then(normalize_email),
            anonymous_id: trimmed(anonymous_id),
        }
    }

    /// The keys to look up, in resolution order: user id, email, anonymous id.
    pub fn keys(&self) -> Vec<IdentityKey> {
        [
            (IdentityKind::External, &self.user_id),
            (IdentityKind::Email, &self.email),
            (IdentityKind::Anonymous, &self.anonymous_id),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.clone().map(|value| IdentityKey { kind, value }))
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.email.is_none() && self.anonymous_id.is_none()
    }
}

/// The resolved key of a contact: its user id, else its anonymous id, else its id. Emails are
/// never keys: they change, and they are personal data that deletion erases.
pub fn resolved_key(external_id: Option<&str>, anonymous_id: Option<&str>, id: &str) -> String {
    external_id.or(anonymous_id).unwrap_or(id).to_owned()
}

/// The contact that survives a merge, as an index into `candidates` of
/// `(has user id, first seen ms, id)`: one with a user id first, then the oldest, then the
/// lowest id — deterministic whatever order the contacts were found in.
pub fn survivor_index(candidates: &[(bool, i64, &str)]) -> usize {
    candidates
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// Properties after a merge: the losers' in order, then the survivor's, then the patch, with
/// `null` removing keys.
pub fn fold_properties<'a>(
    losers: impl IntoIterator<Item = &'a Map<String, Value>>,
    survivor: &'a Map<String, Value>,
    patch: &'a Map<String, Value>,
) -> Map<String, Value> {
    let mut folded = Map::new();
    for props in losers.into_iter().chain([survivor, patch]) {
        merge_properties(&mut folded, props); // a merge re-evaluates every key anyway
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn given_a_patch_when_merged_then_only_keys_whose_value_changed_are_reported() {
        let mut props = map(json!({"plan": "pro", "seats": 10, "name": "Ada", "tags": ["a"]}));
        let changed = merge_properties(
            &mut props,
            &map(json!({
                "plan": "pro",        // the same value: unchanged
                "seats": 12,          // replaced
                "name": null,         // removed
                "missing": null,      // a null for an absent key: unchanged
                "country": "DE",      // added
                "tags": ["a"],        // an equal array: unchanged
            })),
        );
        let mut changed = changed;
        changed.sort();
        assert_eq!(changed, ["country", "name", "seats"]);
        assert_eq!(
            Value::Object(props),
            json!({"plan": "pro", "seats": 12, "country": "DE", "tags": ["a"]})
        );
    }

    #[test]
    fn a_patch_overwrites_adds_and_null_removes() {
        let mut props = map(json!({"plan": "free", "name": "Ada", "nested": {"a": 1}}));
        merge_properties(
            &mut props,
            &map(json!({"plan": "pro", "name": null, "nested": {"b": 2}, "age": 36})),
        );
        assert_eq!(
            Value::Object(props),
            json!({"plan": "pro", "nested": {"b": 2}, "age": 36})
        );
    }

    #[test]
    fn emails_are_trimmed_and_lowercased_and_empty_is_absent() {
        assert_eq!(
            normalize_email("  Ada@Example.COM "),
            Some("ada@example.com".into())
        );
        assert_eq!(normalize_email("   "), None);
    }

    #[test]
    fn identities_are_normalised_and_list_their_keys_in_resolution_order() {
        let identity = Identity::new(Some(" u1 "), Some(" Ada@Example.COM"), Some(""));
        assert_eq!(identity.user_id.as_deref(), Some("u1"));
        assert_eq!(identity.anonymous_id, None);
        let kinds: Vec<_> = identity.keys().into_iter().map(|k| k.kind).collect();
        assert_eq!(kinds, [IdentityKind::External, IdentityKind::Email]);
        assert!(Identity::new(Some(" "), None, None).is_empty());
    }

    #[test]
    fn the_resolved_key_is_the_user_id_else_the_anonymous_id_else_the_id() {
        assert_eq!(resolved_key(Some("u1"), Some("anon"), "c1"), "u1");
        assert_eq!(resolved_key(None, Some("anon"), "c1"), "anon");
        assert_eq!(resolved_key(None, None, "c1"), "c1");
    }

    #[test]
    fn the_survivor_has_a_user_id_then_is_oldest_then_has_the_lowest_id() {
        assert_eq!(survivor_index(&[(false, 1, "a"), (true, 5, "b")]), 1);
        assert_eq!(
            survivor_index(&[(true, 9, "a"), (true, 5, "b"), (false, 1, "c")]),
            1
        );
        assert_eq!(survivor_index(&[(false, 5, "b"), (false, 5, "a")]), 1);
    }

    #[test]
    fn folding_layers_losers_then_survivor_then_patch() {
        let folded = fold_properties(
            [&map(json!({"a": 1, "b": 1})), &map(json!({"b": 2, "c": 2}))],
            &map(json!({"c": 3, "d": 3})),
            &map(json!({"d": 4, "a": null})),
        );
        assert_eq!(Value::Object(folded), json!({"b": 2, "c": 3, "d": 4}));
    }
}
