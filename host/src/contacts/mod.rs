//! Contacts: one per person. This module owns the rules for a contact's identity keys and
//! property bag; the store applies them inside its transactions and never re-implements them.

use serde_json::{Map, Value};

/// Merge a property patch into a contact's properties: shallow, the patch wins, and a `null`
/// in the patch removes the key. Nested objects are replaced wholesale.
pub fn merge_properties(existing: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            existing.remove(key);
        } else {
            existing.insert(key.clone(), value.clone());
        }
    }
}

/// Emails identify people case-insensitively: trimmed and lowercased. Empty means absent.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    (!email.is_empty()).then_some(email)
}

/// The key a contact is addressed by: its user id, else its normalised email.
pub fn contact_key(user_id: Option<&str>, email: Option<&str>) -> Option<String> {
    user_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .or_else(|| email.and_then(normalize_email))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
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
    fn the_user_id_is_the_key_else_the_email() {
        assert_eq!(contact_key(Some("u1"), Some("a@b.c")), Some("u1".into()));
        assert_eq!(contact_key(Some(" "), Some("A@B.c")), Some("a@b.c".into()));
        assert_eq!(contact_key(None, None), None);
    }
}
