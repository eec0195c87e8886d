//! The condition language as data: the typed tree, its JSON form (documented in
//! `docs/criteria.md`) and the criteria fingerprint.
//!
//! The JSON form is a tree of objects tagged by `"type"`:
//!
//! ```json
//! {"type": "all", "conditions": [
//!   {"type": "event", "event": "feature.used", "check": "count", "operator": "gte", "value": 5,
//!    "withinMs": 604800000},
//!   {"type": "property", "property": "plan", "operator": "in", "value": ["pro", "team"]}
//! ]}
//! ```
//!
//! Parsing is strict: an unknown field, a missing one, a value of the wrong type or a window
//! that is not above zero is refused with a [`CriteriaError`] whose path names the field
//! (`criteria.all[0].withinMs`). Serde's derived deserializers cannot report such paths, so
//! [`Condition`]'s `Deserialize` goes through the same hand-written parser; its `Serialize`
//! writes the documented form with optional keys omitted.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// A node of the condition language.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A test on one top-level property of the evaluation context.
    Property(PropertyCondition),
    /// A test on how often the person fired an event, optionally within a window.
    Event(EventCondition),
    /// True when every condition is (short-circuits in order).
    All(Vec<Condition>),
    /// True when some condition is (short-circuits in order).
    Any(Vec<Condition>),
    /// True when the condition is not.
    Not(Box<Condition>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropertyCondition {
    /// A flat top-level key; dots are part of the name, not a path.
    pub property: String,
    pub test: PropertyTest,
}

/// A property operator with its operand.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyTest {
    /// Equal in type and value (`"1"` is not `1`; `1` is `1.0`). A string, number or bool.
    Eq(Value),
    /// Not [`PropertyTest::Eq`]; an absent property satisfies it.
    Neq(Value),
    Gt(Number),
    Gte(Number),
    Lt(Number),
    Lte(Number),
    /// A string property containing this substring (case-sensitive).
    Contains(String),
    /// Equal to one of these strings, numbers or bools.
    In(Vec<Value>),
    /// Present and not null.
    Exists,
    /// Absent or null.
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventCondition {
    pub event: String,
    pub check: EventCheck,
    /// Only occurrences at or after `now - within_ms` count. Above zero when set.
    pub within_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventCheck {
    /// At least one occurrence.
    Exists,
    /// No occurrence.
    NotExists,
    /// The number of occurrences compared with a value.
    Count(CountOperator, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountOperator {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
}

impl CountOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            CountOperator::Gt => "gt",
            CountOperator::Gte => "gte",
            CountOperator::Lt => "lt",
            CountOperator::Lte => "lte",
            CountOperator::Eq => "eq",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "gt" => CountOperator::Gt,
            "gte" => CountOperator::Gte,
            "lt" => CountOperator::Lt,
            "lte" => CountOperator::Lte,
            "eq" => CountOperator::Eq,
            _ => return None,
        })
    }

    pub fn holds(self, count: u64, value: u64) -> bool {
        match self {
            CountOperator::Gt => count > value,
            CountOperator::Gte => count >= value,
            CountOperator::Lt => count < value,
            CountOperator::Lte => count <= value,
            CountOperator::Eq => count == value,
        }
    }
}

impl PropertyTest {
    pub fn operator(&self) -> &'static str {
        match self {
            PropertyTest::Eq(_) => "eq",
            PropertyTest::Neq(_) => "neq",
            PropertyTest::Gt(_) => "gt",
            PropertyTest::Gte(_) => "gte",
            PropertyTest::Lt(_) => "lt",
            PropertyTest::Lte(_) => "lte",
            PropertyTest::Contains(_) => "contains",
            PropertyTest::In(_) => "in",
            PropertyTest::Exists => "exists",
            PropertyTest::NotExists => "not_exists",
        }
    }

    fn operand(&self) -> Option<Value> {
        match self {
            PropertyTest::Eq(v) | PropertyTest::Neq(v) => Some(v.clone()),
            PropertyTest::Gt(n)
            | PropertyTest::Gte(n)
            | PropertyTest::Lt(n)
            | PropertyTest::Lte(n) => Some(Value::Number(n.clone())),
            PropertyTest::Contains(s) => Some(Value::String(s.clone())),
            PropertyTest::In(values) => Some(Value::Array(values.clone())),
            PropertyTest::Exists | PropertyTest::NotExists => None,
        }
    }
}

impl EventCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            EventCheck::Exists => "exists",
            EventCheck::NotExists => "not_exists",
            EventCheck::Count(..) => "count",
        }
    }
}

/// A criteria field that is missing, unknown or malformed. `path` names it from the root
/// (`criteria.any[1].value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriteriaError {
    pub path: String,
    pub message: String,
}

impl CriteriaError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CriteriaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.message)
    }
}

impl std::error::Error for CriteriaError {}

/// The root of every criteria path.
pub const ROOT: &str = "criteria";

impl Condition {
    /// Parses the documented JSON text. Errors name the field under [`ROOT`].
    pub fn from_json_str(json: &str) -> Result<Self, CriteriaError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| CriteriaError::new(ROOT, format!("is not valid JSON: {e}")))?;
        Self::from_json(&value)
    }

    /// Parses the documented JSON form. Errors name the field under [`ROOT`].
    pub fn from_json(value: &Value) -> Result<Self, CriteriaError> {
        parse_node(value, ROOT)
    }

    /// The documented JSON form, optional keys omitted.
    pub fn to_json(&self) -> Value {
        let mut node = Map::new();
        let tag = |node: &mut Map<String, Value>, t: &str| {
            node.insert("type".into(), Value::String(t.into()));
        };
        match self {
            Condition::Property(p) => {
                tag(&mut node, "property");
                node.insert("property".into(), Value::String(p.property.clone()));
                node.insert("operator".into(), p.test.operator().into());
                if let Some(v) = p.test.operand() {
                    node.insert("value".into(), v);
                }
            }
            Condition::Event(e) => {
                tag(&mut node, "event");
                node.insert("event".into(), Value::String(e.event.clone()));
                node.insert("check".into(), e.check.as_str().into());
                if let EventCheck::Count(op, value) = e.check {
                    node.insert("operator".into(), op.as_str().into());
                    node.insert("value".into(), value.into());
                }
                if let Some(ms) = e.within_ms {
                    node.insert("withinMs".into(), ms.into());
                }
            }
            Condition::All(cs) | Condition::Any(cs) => {
                tag(
                    &mut node,
                    if matches!(self, Condition::All(_)) {
                        "all"
                    } else {
                        "any"
                    },
                );
                node.insert(
                    "conditions".into(),
                    Value::Array(cs.iter().map(Condition::to_json).collect()),
                );
            }
            Condition::Not(c) => {
                tag(&mut node, "not");
                node.insert("condition".into(), c.to_json());
            }
        }
        Value::Object(node)
    }

    /// The normalised JSON text: object keys in ascending order, optional keys omitted, no
    /// whitespace. Independent of how the criteria were written.
    pub fn canonical_json(&self) -> String {
        let mut out = String::new();
        write_canonical(&self.to_json(), &mut out);
        out
    }

    /// sha256 (lowercase hex) of [`Condition::canonical_json`]: stable under key order and
    /// formatting, different whenever the criteria differ.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Every leaf, depth first, in declaration order.
    pub fn leaves(&self) -> Leaves<'_> {
        Leaves { stack: vec![self] }
    }

    /// True when some event leaf has a window: such criteria change with the clock alone.
    pub fn has_window(&self) -> bool {
        self.leaves()
            .any(|leaf| matches!(leaf, Condition::Event(e) if e.within_ms.is_some()))
    }
}

/// Depth-first iterator over a condition's leaves (property and event nodes).
pub struct Leaves<'a> {
    stack: Vec<&'a Condition>,
}

impl<'a> Iterator for Leaves<'a> {
    type Item = &'a Condition;

    fn next(&mut self) -> Option<&'a Condition> {
        while let Some(node) = self.stack.pop() {
            match node {
                Condition::Property(_) | Condition::Event(_) => return Some(node),
                Condition::All(cs) | Condition::Any(cs) => self.stack.extend(cs.iter().rev()),
                Condition::Not(c) => self.stack.push(c),
            }
        }
        None
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Condition::from_json(&value).map_err(serde::de::Error::custom)
    }
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The fields an object node may have, by type.
const PROPERTY_FIELDS: &[&str] = &["type", "property", "operator", "value"];
const EVENT_FIELDS: &[&str] = &["type", "event", "check", "operator", "value", "withinMs"];
const COMPOSITE_FIELDS: &[&str] = &["type", "conditions"];
const NOT_FIELDS: &[&str] = &["type", "condition"];

fn parse_node(value: &Value, path: &str) -> Result<Condition, CriteriaError> {
    let Value::Object(node) = value else {
        return Err(CriteriaError::new(
            path,
            format!("must be a condition object, got {}", kind(value)),
        ));
    };
    let Some(tag) = node.get("type") else {
        return Err(CriteriaError::new(
            format!("{path}.type"),
            "is missing (one of \"property\", \"event\", \"all\", \"any\", \"not\")",
        ));
    };
    let Some(tag) = tag.as_str() else {
        return Err(CriteriaError::new(
            format!("{path}.type"),
            format!("must be a string, got {}", kind(tag)),
        ));
    };
    match tag {
        "property" => {
            deny_unknown(node, path, PROPERTY_FIELDS, "a property condition")?;
            parse_property(node, path).map(Condition::Property)
        }
        "event" => {
            deny_unknown(node, path, EVENT_FIELDS, "an event condition")?;
            parse_event(node, path).map(Condition::Event)
        }
        "all" | "any" => {
            deny_unknown(node, path, COMPOSITE_FIELDS, "a composite condition")?;
            let field = format!("{path}.conditions");
            let items = match node.get("conditions") {
                Some(Value::Array(items)) => items,
                Some(other) => {
                    return Err(CriteriaError::new(
                        field,
                        format!("must be an array, got {}", kind(other)),
                    ));
                }
                None => return Err(CriteriaError::new(field, "is missing")),
            };
            let conditions = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_node(item, &format!("{path}.{tag}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if tag == "all" {
                Condition::All(conditions)
            } else {
                Condition::Any(conditions)
            })
        }
        "not" => {
            deny_unknown(node, path, NOT_FIELDS, "a not condition")?;
            match node.get("condition") {
                Some(inner) => Ok(Condition::Not(Box::new(parse_node(
                    inner,
                    &format!("{path}.not"),
                )?))),
                None => Err(CriteriaError::new(
                    format!("{path}.condition"),
                    "is missing",
                )),
            }
        }
        other => Err(CriteriaError::new(
            format!("{path}.type"),
            format!(
                "{other:?} is not a condition type (one of \"property\", \"event\", \"all\", \"any\", \"not\")"
            ),
        )),
    }
}

fn deny_unknown(
    node: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
    what: &str,
) -> Result<(), CriteriaError> {
    match node.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(CriteriaError::new(
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
        Some(Value::String(_)) => Err(CriteriaError::new(
            format!("{path}.{field}"),
            "must not be empty",
        )),
        Some(other) => Err(CriteriaError::new(
            format!("{path}.{field}"),
            format!("must be a string, got {}", kind(other)),
        )),
        None => Err(CriteriaError::new(format!("{path}.{field}"), "is missing")),
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn parse_property(
    node: &Map<String, Value>,
    path: &str,
) -> Result<PropertyCondition, CriteriaError> {
    let property = required_str(node, path, "property")?.to_owned();
    let operator = required_str(node, path, "operator")?;
    let value_path = || format!("{path}.value");
    let value = node.get("value");
    let scalar = |op: &str| match value {
        Some(v) if is_scalar(v) => Ok(v.clone()),
        Some(v) => Err(CriteriaError::new(
            value_path(),
            format!("must be a string, number or bool for {op}, got {}", kind(v)),
        )),
        None => Err(CriteriaError::new(
            value_path(),
            format!("is missing (needed by {op})"),
        )),
    };
    let number = |op: &str| match value {
        Some(Value::Number(n)) => Ok(n.clone()),
        Some(v) => Err(CriteriaError::new(
            value_path(),
            format!("must be a number for {op}, got {}", kind(v)),
        )),
        None => Err(CriteriaError::new(
            value_path(),
            format!("is missing (needed by {op})"),
        )),
    };
    let test = match operator {
        "eq" => PropertyTest::Eq(scalar("eq")?),
        "neq" => PropertyTest::Neq(scalar("neq")?),
        "gt" => PropertyTest::Gt(number("gt")?),
        "gte" => PropertyTest::Gte(number("gte")?),
        "lt" => PropertyTest::Lt(number("lt")?),
        "lte" => PropertyTest::Lte(number("lte")?),
        "contains" => match value {
            Some(Value::String(s)) => PropertyTest::Contains(s.clone()),
            Some(v) => {
                return Err(CriteriaError::new(
                    value_path(),
                    format!("must be a string for contains, got {}", kind(v)),
                ));
            }
            None => {
                return Err(CriteriaError::new(
                    value_path(),
                    "is missing (needed by contains)",
                ));
            }
        },
        "in" => match value {
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(CriteriaError::new(value_path(), "must not be empty for in"));
            }
            Some(Value::Array(items)) => {
                if let Some((i, bad)) = items.iter().enumerate().find(|(_, v)| !is_scalar(v)) {
                    return Err(CriteriaError::new(
                        format!("{path}.value[{i}]"),
                        format!("must be a string, number or bool, got {}", kind(bad)),
                    ));
                }
                PropertyTest::In(items.clone())
            }
            Some(v) => {
                return Err(CriteriaError::new(
                    value_path(),
                    format!("must be an array for in, got {}", kind(v)),
                ));
            }
            None => {
                return Err(CriteriaError::new(
                    value_path(),
                    "is missing (needed by in)",
                ));
            }
        },
        "exists" | "not_exists" => {
            if value.is_some() {
                return Err(CriteriaError::new(
                    value_path(),
                    format!("must be left out for {operator}"),
                ));
            }
            if operator == "exists" {
                PropertyTest::Exists
            } else {
                PropertyTest::NotExists
            }
        }
        other => {
            return Err(CriteriaError::new(
                format!("{path}.operator"),
                format!(
                    "{other:?} is not a property operator (one of eq, neq, gt, gte, lt, lte, contains, in, exists, not_exists)"
                ),
            ));
        }
    };
    Ok(PropertyCondition { property, test })
}

fn parse_event(node: &Map<String, Value>, path: &str) -> Result<EventCondition, CriteriaError> {
    let event = required_str(node, path, "event")?.to_owned();
    let check = required_str(node, path, "check")?;
    let within_ms = match node.get("withinMs") {
        None => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if ms > 0 => Some(ms as u64),
            Some(_) => {
                return Err(CriteriaError::new(
                    format!("{path}.withinMs"),
                    "must be above zero",
                ));
            }
            None if n.as_f64().is_some_and(|f| f <= 0.0) => {
                return Err(CriteriaError::new(
                    format!("{path}.withinMs"),
                    "must be above zero",
                ));
            }
            None => {
                return Err(CriteriaError::new(
                    format!("{path}.withinMs"),
                    "must be a whole number of milliseconds",
                ));
            }
        },
        Some(other) => {
            return Err(CriteriaError::new(
                format!("{path}.withinMs"),
                format!(
                    "must be a whole number of milliseconds, got {}",
                    kind(other)
                ),
            ));
        }
    };
    let check = match check {
        "exists" | "not_exists" => {
            for field in ["operator", "value"] {
                if node.contains_key(field) {
                    return Err(CriteriaError::new(
                        format!("{path}.{field}"),
                        format!("must be left out for check {check}"),
                    ));
                }
            }
            if check == "exists" {
                EventCheck::Exists
            } else {
                EventCheck::NotExists
            }
        }
        "count" => {
            let op = required_str(node, path, "operator")?;
            let op = CountOperator::parse(op).ok_or_else(|| {
                CriteriaError::new(
                    format!("{path}.operator"),
                    format!("{op:?} is not a count operator (one of gt, gte, lt, lte, eq)"),
                )
            })?;
            let value = match node.get("value") {
                Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                    CriteriaError::new(
                        format!("{path}.value"),
                        format!("must be a whole number of at least zero, got {n}"),
                    )
                })?,
                Some(other) => {
                    return Err(CriteriaError::new(
                        format!("{path}.value"),
                        format!("must be a number, got {}", kind(other)),
                    ));
                }
                None => {
                    return Err(CriteriaError::new(
                        format!("{path}.value"),
                        "is missing (needed by check count)",
                    ));
                }
            };
            EventCheck::Count(op, value)
        }
        other => {
            return Err(CriteriaError::new(
                format!("{path}.check"),
                format!("{other:?} is not an event check (one of exists, not_exists, count)"),
            ));
        }
    };
    Ok(EventCondition {
        event,
        check,
        within_ms,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Condition, String> {
        Condition::from_json(&v).map_err(|e| e.to_string())
    }

    #[test]
    fn given_every_node_shape_when_parsed_and_written_then_the_json_round_trips() {
        let doc = json!({"type": "all", "conditions": [
            {"type": "property", "property": "plan", "operator": "eq", "value": "pro"},
            {"type": "property", "property": "seats", "operator": "gte", "value": 3},
            {"type": "property", "property": "tier", "operator": "in", "value": ["a", 1, true]},
            {"type": "property", "property": "nick", "operator": "exists"},
            {"type": "event", "event": "app.active", "check": "exists"},
            {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 1000},
            {"type": "event", "event": "feature.used", "check": "count", "operator": "gte",
             "value": 5, "withinMs": 604800000},
            {"type": "any", "conditions": [
                {"type": "not", "condition":
                    {"type": "property", "property": "bio", "operator": "contains", "value": "x"}}
            ]}
        ]});
        let c = parse(doc.clone()).unwrap();
        assert_eq!(c.to_json(), doc);
        let back: Condition = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn given_an_unknown_field_when_parsed_then_the_error_names_it() {
        let err = parse(json!({"type": "all", "conditions": [
            {"type": "event", "event": "x", "check": "exists", "withn": 5}
        ]}))
        .unwrap_err();
        assert!(
            err.starts_with("criteria.all[0].withn is not a field of an event condition"),
            "{err}"
        );
        let err = parse(
            json!({"type": "property", "property": "p", "operator": "exists",
                               "eventName": "x"}),
        )
        .unwrap_err();
        assert!(
            err.starts_with("criteria.eventName is not a field"),
            "{err}"
        );
    }

    #[test]
    fn given_serde_deserialisation_when_a_field_is_unknown_then_it_is_refused_too() {
        let err = serde_json::from_value::<Condition>(
            json!({"type": "not", "condition": {"type": "event", "event": "x", "check": "exists"}, "extra": 1}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("criteria.extra"), "{err}");
    }

    #[test]
    fn given_a_missing_or_unknown_type_when_parsed_then_it_is_refused() {
        assert!(
            parse(json!({"property": "p"}))
                .unwrap_err()
                .starts_with("criteria.type is missing")
        );
        assert!(
            parse(json!({"type": "and", "conditions": []}))
                .unwrap_err()
                .starts_with("criteria.type \"and\" is not a condition type")
        );
        assert!(
            parse(json!([1]))
                .unwrap_err()
                .starts_with("criteria must be a condition object, got an array")
        );
    }

    #[test]
    fn given_bad_windows_when_parsed_then_they_are_refused_naming_within() {
        for (within, message) in [
            (json!(0), "must be above zero"),
            (json!(-5), "must be above zero"),
            (json!(-1.5), "must be above zero"),
            (json!(1.5), "must be a whole number of milliseconds"),
            (
                json!("7d"),
                "must be a whole number of milliseconds, got a string",
            ),
        ] {
            let err = parse(json!({"type": "any", "conditions": [
                {"type": "event", "event": "x", "check": "exists"},
                {"type": "event", "event": "x", "check": "exists", "withinMs": within}
            ]}))
            .unwrap_err();
            assert_eq!(err, format!("criteria.any[1].withinMs {message}"));
        }
    }

    #[test]
    fn given_comparison_operators_when_the_value_is_not_a_number_then_they_are_refused() {
        for op in ["gt", "gte", "lt", "lte"] {
            let err = parse(json!({"type": "property", "property": "n", "operator": op,
                                   "value": "5"}))
            .unwrap_err();
            assert_eq!(
                err,
                format!("criteria.value must be a number for {op}, got a string")
            );
        }
    }

    #[test]
    fn given_in_when_the_value_is_empty_or_not_an_array_then_it_is_refused() {
        assert_eq!(
            parse(json!({"type": "property", "property": "p", "operator": "in", "value": []}))
                .unwrap_err(),
            "criteria.value must not be empty for in"
        );
        assert_eq!(
            parse(json!({"type": "property", "property": "p", "operator": "in", "value": "a"}))
                .unwrap_err(),
            "criteria.value must be an array for in, got a string"
        );
        assert_eq!(
            parse(
                json!({"type": "property", "property": "p", "operator": "in",
                         "value": ["a", null]})
            )
            .unwrap_err(),
            "criteria.value[1] must be a string, number or bool, got null"
        );
    }

    #[test]
    fn given_operand_rules_when_violated_then_the_field_is_named() {
        assert_eq!(
            parse(json!({"type": "property", "property": "p", "operator": "exists", "value": 1}))
                .unwrap_err(),
            "criteria.value must be left out for exists"
        );
        assert_eq!(
            parse(json!({"type": "property", "property": "p", "operator": "eq"})).unwrap_err(),
            "criteria.value is missing (needed by eq)"
        );
        assert_eq!(
            parse(json!({"type": "property", "property": "p", "operator": "eq", "value": null}))
                .unwrap_err(),
            "criteria.value must be a string, number or bool for eq, got null"
        );
        assert_eq!(
            parse(
                json!({"type": "property", "property": "p", "operator": "contains",
                         "value": 1})
            )
            .unwrap_err(),
            "criteria.value must be a string for contains, got a number"
        );
        assert!(
            parse(json!({"type": "property", "property": "p", "operator": "like", "value": 1}))
                .unwrap_err()
                .starts_with("criteria.operator \"like\" is not a property operator")
        );
        assert_eq!(
            parse(json!({"type": "property", "property": " ", "operator": "exists"})).unwrap_err(),
            "criteria.property must not be empty"
        );
        assert_eq!(
            parse(json!({"type": "event", "event": "x", "check": "count", "operator": "gte"}))
                .unwrap_err(),
            "criteria.value is missing (needed by check count)"
        );
        assert_eq!(
            parse(
                json!({"type": "event", "event": "x", "check": "count", "operator": "gte",
                         "value": -1})
            )
            .unwrap_err(),
            "criteria.value must be a whole number of at least zero, got -1"
        );
        assert_eq!(
            parse(json!({"type": "event", "event": "x", "check": "exists", "value": 1}))
                .unwrap_err(),
            "criteria.value must be left out for check exists"
        );
        assert!(
            parse(
                json!({"type": "event", "event": "x", "check": "count", "operator": "ge",
                         "value": 1})
            )
            .unwrap_err()
            .starts_with("criteria.operator \"ge\" is not a count operator")
        );
        assert_eq!(
            parse(json!({"type": "not"})).unwrap_err(),
            "criteria.condition is missing"
        );
        assert_eq!(
            parse(json!({"type": "not", "condition": {"type": "all", "conditions": {}}}))
                .unwrap_err(),
            "criteria.not.conditions must be an array, got an object"
        );
    }

    #[test]
    fn given_the_same_criteria_in_another_key_order_when_fingerprinted_then_the_hash_is_equal() {
        let a = Condition::from_json_str(
            r#"{"type":"all","conditions":[{"type":"event","event":"x","check":"count","operator":"gte","value":5,"withinMs":1000}]}"#,
        )
        .unwrap();
        let b = Condition::from_json_str(
            r#"{ "conditions": [ {"withinMs":1000, "value":5, "operator":"gte", "check":"count", "event":"x", "type":"event"} ], "type": "all" }"#,
        )
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        assert_eq!(
            a.canonical_json(),
            r#"{"conditions":[{"check":"count","event":"x","operator":"gte","type":"event","value":5,"withinMs":1000}],"type":"all"}"#
        );
    }

    #[test]
    fn given_criteria_that_differ_when_fingerprinted_then_the_hashes_differ() {
        let base = json!({"type": "event", "event": "x", "check": "count", "operator": "gte",
                          "value": 5});
        let variants = [
            json!({"type": "event", "event": "x", "check": "count", "operator": "gte", "value": 6}),
            json!({"type": "event", "event": "x", "check": "count", "operator": "gt", "value": 5}),
            json!({"type": "event", "event": "y", "check": "count", "operator": "gte", "value": 5}),
            json!({"type": "event", "event": "x", "check": "count", "operator": "gte", "value": 5,
                   "withinMs": 1}),
            json!({"type": "all", "conditions": [base.clone()]}),
        ];
        let fp = parse(base.clone()).unwrap().fingerprint();
        for v in variants {
            assert_ne!(parse(v.clone()).unwrap().fingerprint(), fp, "{v}");
        }
    }

    #[test]
    fn given_nested_criteria_when_walking_leaves_then_they_come_in_declaration_order() {
        let c = parse(json!({"type": "all", "conditions": [
            {"type": "event", "event": "a", "check": "exists"},
            {"type": "not", "condition": {"type": "any", "conditions": [
                {"type": "property", "property": "b", "operator": "exists"},
                {"type": "event", "event": "c", "check": "exists", "withinMs": 5}
            ]}},
        ]}))
        .unwrap();
        let names: Vec<&str> = c
            .leaves()
            .map(|l| match l {
                Condition::Event(e) => e.event.as_str(),
                Condition::Property(p) => p.property.as_str(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(c.has_window());
    }
}
