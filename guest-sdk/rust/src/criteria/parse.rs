//! The strict reading of criteria JSON behind [`Criteria::from_json`](super::Criteria::from_json):
//! the same checks, in the same order and with the same wording, as the host's parser
//! (`host/src/buckets/criteria.rs`), so criteria kept as JSON fail here exactly as they would
//! fail at load. The shared cases in `tests/validity_cases.json` hold the two to that.

use super::CriteriaError;
use serde_json::{Map, Value};

const PROPERTY_FIELDS: &[&str] = &["type", "property", "operator", "value"];
const EVENT_FIELDS: &[&str] = &["type", "event", "check", "operator", "value", "withinMs"];
const COMPOSITE_FIELDS: &[&str] = &["type", "conditions"];
const NOT_FIELDS: &[&str] = &["type", "condition"];
const NODE_TYPES: &str = "(one of \"property\", \"event\", \"all\", \"any\", \"not\")";

type Checked = Result<(), CriteriaError>;

fn error(path: impl Into<String>, message: impl Into<String>) -> CriteriaError {
    CriteriaError {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks one node (and its children) at `path`.
pub(super) fn node(value: &Value, path: &str) -> Checked {
    let Value::Object(node) = value else {
        return Err(error(
            path,
            format!("must be a condition object, got {}", kind(value)),
        ));
    };
    let tag = match node.get("type") {
        None => {
            return Err(error(
                format!("{path}.type"),
                format!("is missing {NODE_TYPES}"),
            ));
        }
        Some(Value::String(tag)) => tag.as_str(),
        Some(other) => {
            return Err(error(
                format!("{path}.type"),
                format!("must be a string, got {}", kind(other)),
            ));
        }
    };
    match tag {
        "property" => {
            deny_unknown(node, path, PROPERTY_FIELDS, "a property condition")?;
            property(node, path)
        }
        "event" => {
            deny_unknown(node, path, EVENT_FIELDS, "an event condition")?;
            event(node, path)
        }
        "all" | "any" => {
            deny_unknown(node, path, COMPOSITE_FIELDS, "a composite condition")?;
            let field = format!("{path}.conditions");
            match node.get("conditions") {
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, item)| self::node(item, &format!("{path}.{tag}[{i}]"))),
                Some(other) => Err(error(
                    field,
                    format!("must be an array, got {}", kind(other)),
                )),
                None => Err(error(field, "is missing")),
            }
        }
        "not" => {
            deny_unknown(node, path, NOT_FIELDS, "a not condition")?;
            match node.get("condition") {
                Some(inner) => self::node(inner, &format!("{path}.not")),
                None => Err(error(format!("{path}.condition"), "is missing")),
            }
        }
        other => Err(error(
            format!("{path}.type"),
            format!("{other:?} is not a condition type {NODE_TYPES}"),
        )),
    }
}

fn deny_unknown(node: &Map<String, Value>, path: &str, allowed: &[&str], what: &str) -> Checked {
    match node.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(error(
            format!("{path}.{key}"),
            format!(
                "is not a field of {what} (its fields are {})",
                allowed.join(", ")
            ),
        )),
    }
}

fn required_str<'a>(
    node: &'a Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<&'a str, CriteriaError> {
    match node.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(error(format!("{path}.{field}"), "must not be empty")),
        Some(other) => Err(error(
            format!("{path}.{field}"),
            format!("must be a string, got {}", kind(other)),
        )),
        None => Err(error(format!("{path}.{field}"), "is missing")),
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn property(node: &Map<String, Value>, path: &str) -> Checked {
    required_str(node, path, "property")?;
    let operator = required_str(node, path, "operator")?;
    let value_path = format!("{path}.value");
    let value = node.get("value");
    let missing = |op: &str| error(&*value_path, format!("is missing (needed by {op})"));
    match operator {
        "eq" | "neq" => match value {
            Some(v) if is_scalar(v) => Ok(()),
            Some(v) => Err(error(
                &*value_path,
                format!(
                    "must be a string, number or bool for {operator}, got {}",
                    kind(v)
                ),
            )),
            None => Err(missing(operator)),
        },
        "gt" | "gte" | "lt" | "lte" => match value {
            Some(Value::Number(_)) => Ok(()),
            Some(v) => Err(error(
                &*value_path,
                format!("must be a number for {operator}, got {}", kind(v)),
            )),
            None => Err(missing(operator)),
        },
        "contains" => match value {
            Some(Value::String(_)) => Ok(()),
            Some(v) => Err(error(
                &*value_path,
                format!("must be a string for contains, got {}", kind(v)),
            )),
            None => Err(missing("contains")),
        },
        "in" => match value {
            Some(Value::Array(items)) if items.is_empty() => {
                Err(error(&*value_path, "must not be empty for in"))
            }
            Some(Value::Array(items)) => {
                match items.iter().enumerate().find(|(_, v)| !is_scalar(v)) {
                    Some((i, bad)) => Err(error(
                        format!("{path}.value[{i}]"),
                        format!("must be a string, number or bool, got {}", kind(bad)),
                    )),
                    None => Ok(()),
                }
            }
            Some(v) => Err(error(
                &*value_path,
                format!("must be an array for in, got {}", kind(v)),
            )),
            None => Err(missing("in")),
        },
        "exists" | "not_exists" => match value {
            Some(_) => Err(error(
                &*value_path,
                format!("must be left out for {operator}"),
            )),
            None => Ok(()),
        },
        other => Err(error(
            format!("{path}.operator"),
            format!(
                "{other:?} is not a property operator (one of eq, neq, gt, gte, lt, lte, \
                 contains, in, exists, not_exists)"
            ),
        )),
    }
}

fn event(node: &Map<String, Value>, path: &str) -> Checked {
    required_str(node, path, "event")?;
    let check = required_str(node, path, "check")?;
    let within = format!("{path}.withinMs");
    match node.get("withinMs") {
        None => {}
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if ms > 0 => {}
            Some(_) => return Err(error(within, "must be above zero")),
            None if n.as_f64().is_some_and(|f| f <= 0.0) => {
                return Err(error(within, "must be above zero"));
            }
            None => return Err(error(within, "must be a whole number of milliseconds")),
        },
        Some(other) => {
            return Err(error(
                within,
                format!(
                    "must be a whole number of milliseconds, got {}",
                    kind(other)
                ),
            ));
        }
    }
    match check {
        "exists" | "not_exists" => {
            match ["operator", "value"]
                .into_iter()
                .find(|field| node.contains_key(*field))
            {
                Some(field) => Err(error(
                    format!("{path}.{field}"),
                    format!("must be left out for check {check}"),
                )),
                None => Ok(()),
            }
        }
        "count" => {
            let op = required_str(node, path, "operator")?;
            if !matches!(op, "gt" | "gte" | "lt" | "lte" | "eq") {
                return Err(error(
                    format!("{path}.operator"),
                    format!("{op:?} is not a count operator (one of gt, gte, lt, lte, eq)"),
                ));
            }
            let value_path = format!("{path}.value");
            match node.get("value") {
                Some(Value::Number(n)) if n.as_u64().is_some() => Ok(()),
                Some(Value::Number(n)) => Err(error(
                    value_path,
                    format!("must be a whole number of at least zero, got {n}"),
                )),
                Some(other) => Err(error(
                    value_path,
                    format!("must be a number, got {}", kind(other)),
                )),
                None => Err(error(value_path, "is missing (needed by check count)")),
            }
        }
        other => Err(error(
            format!("{path}.check"),
            format!("{other:?} is not an event check (one of exists, not_exists, count)"),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
