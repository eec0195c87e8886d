//! A typed builder for bucket criteria: `all([event("app.active").exists(),
//! event("app.active").within(days(7)).not_exists()])`.
//!
//! Every builder produces exactly the JSON documented in the repository's `docs/criteria.md`
//! (what the host parses), with optional keys left out:
//!
//! ```
//! use waymark_guest::prelude::*;
//! let lapsed = all([
//!     event("app.active").exists(),
//!     event("app.active").within(days(7)).not_exists(),
//! ]);
//! assert_eq!(
//!     lapsed.to_json(),
//!     &json!({"type": "all", "conditions": [
//!         {"type": "event", "event": "app.active", "check": "exists"},
//!         {"type": "event", "event": "app.active", "check": "not_exists",
//!          "withinMs": 604_800_000},
//!     ]})
//! );
//! let pro = prop("plan").is_in(["pro", "team"]);
//! assert_eq!(
//!     pro.to_json(),
//!     &json!({"type": "property", "property": "plan", "operator": "in", "value": ["pro", "team"]})
//! );
//! ```
//!
//! Property conditions read the contact's properties (as updated by the event being
//! ingested), never the event's own payload; event conditions count the person's events by
//! name, optionally only those within a window ending now (inclusive).

use crate::duration::{Duration, to_millis};
use serde_json::{Map, Value, json};

/// Criteria: a condition tree, built with [`prop`], [`event`], [`all`], [`any`] and [`not`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "criteria do nothing until given to a bucket with `.criteria(..)`"]
pub struct Criteria(Value);

impl Criteria {
    /// The documented JSON form.
    pub fn to_json(&self) -> &Value {
        &self.0
    }

    /// The documented JSON form as text (what the manifest's `criteria-json` carries).
    pub fn to_json_string(&self) -> String {
        self.0.to_string()
    }
}

impl std::ops::Not for Criteria {
    type Output = Criteria;

    /// `!c` is [`not(c)`](not).
    fn not(self) -> Criteria {
        not(self)
    }
}

fn node(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Criteria {
    Criteria(Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Map<String, Value>>(),
    ))
}

/// True when every condition is. An empty list is refused by the host.
pub fn all(conditions: impl IntoIterator<Item = Criteria>) -> Criteria {
    composite("all", conditions)
}

/// True when at least one condition is. An empty list is refused by the host.
pub fn any(conditions: impl IntoIterator<Item = Criteria>) -> Criteria {
    composite("any", conditions)
}

fn composite(kind: &'static str, conditions: impl IntoIterator<Item = Criteria>) -> Criteria {
    let conditions: Vec<Value> = conditions.into_iter().map(|c| c.0).collect();
    node([
        ("type", json!(kind)),
        ("conditions", Value::Array(conditions)),
    ])
}

/// True when `condition` is not. Also written `!condition`.
pub fn not(condition: Criteria) -> Criteria {
    node([("type", json!("not")), ("condition", condition.0)])
}

/// A condition on one contact property (a flat top-level key: `"a.b"` is a key, not a path).
pub fn prop(property: impl Into<String>) -> Prop {
    Prop {
        property: property.into(),
    }
}

/// A number a comparison accepts: any integer or float (a non-finite float is refused by
/// the host).
pub trait Number: Copy {
    /// The JSON number (`null` for a non-finite float).
    fn to_json(self) -> Value;
}

macro_rules! number {
    ($($t:ty),*) => {
        $(impl Number for $t {
            fn to_json(self) -> Value {
                Value::from(self)
            }
        })*
    };
}
number!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64);

/// A property condition being built; finish it with an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "finish the property condition with an operator, e.g. `.eq(..)` or `.exists()`"]
pub struct Prop {
    property: String,
}

impl Prop {
    fn op(self, operator: &'static str, value: Option<Value>) -> Criteria {
        let mut fields = vec![
            ("type", json!("property")),
            ("property", Value::String(self.property)),
            ("operator", json!(operator)),
        ];
        if let Some(value) = value {
            fields.push(("value", value));
        }
        node(fields)
    }

    /// Equal in type and value: `"1"` is not `1`. A string, number or bool.
    pub fn eq(self, value: impl Into<Value>) -> Criteria {
        self.op("eq", Some(value.into()))
    }

    /// Not equal; a missing property is not equal to anything.
    pub fn neq(self, value: impl Into<Value>) -> Criteria {
        self.op("neq", Some(value.into()))
    }

    /// A number above `n` (a non-number never matches).
    pub fn gt(self, n: impl Number) -> Criteria {
        self.op("gt", Some(n.to_json()))
    }

    /// A number at least `n`.
    pub fn gte(self, n: impl Number) -> Criteria {
        self.op("gte", Some(n.to_json()))
    }

    /// A number below `n`.
    pub fn lt(self, n: impl Number) -> Criteria {
        self.op("lt", Some(n.to_json()))
    }

    /// A number at most `n`.
    pub fn lte(self, n: impl Number) -> Criteria {
        self.op("lte", Some(n.to_json()))
    }

    /// A string containing `needle` (case-sensitive).
    pub fn contains(self, needle: impl Into<String>) -> Criteria {
        self.op("contains", Some(Value::String(needle.into())))
    }

    /// Equal to one of `values` (strings, numbers or bools; at least one).
    pub fn is_in<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Criteria {
        let values = values.into_iter().map(Into::into).collect();
        self.op("in", Some(Value::Array(values)))
    }

    /// Set and not null.
    pub fn exists(self) -> Criteria {
        self.op("exists", None)
    }

    /// Missing or null.
    pub fn not_exists(self) -> Criteria {
        self.op("not_exists", None)
    }
}

/// A condition on how often the person fired event `name` (exact name).
pub fn event(name: impl Into<String>) -> EventCount {
    EventCount {
        event: name.into(),
        within: None,
    }
}

/// How [`EventCount::count`] compares the number of events with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountOp {
    /// More than.
    Gt,
    /// At least.
    Gte,
    /// Fewer than.
    Lt,
    /// At most.
    Lte,
    /// Exactly.
    Eq,
}

impl CountOp {
    /// The JSON operator.
    pub fn as_str(self) -> &'static str {
        match self {
            CountOp::Gt => "gt",
            CountOp::Gte => "gte",
            CountOp::Lt => "lt",
            CountOp::Lte => "lte",
            CountOp::Eq => "eq",
        }
    }
}

/// An event condition being built; finish it with a check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "finish the event condition with a check, e.g. `.exists()` or `.at_least(3)`"]
pub struct EventCount {
    event: String,
    within: Option<Duration>,
}

impl EventCount {
    /// Counts only events that occurred within `window` of now (an event exactly `window`
    /// ago counts). Whole milliseconds; must be above zero.
    pub fn within(mut self, window: Duration) -> Self {
        self.within = Some(window);
        self
    }

    fn check(self, check: &'static str, count: Option<(CountOp, u64)>) -> Criteria {
        let mut fields = vec![
            ("type", json!("event")),
            ("event", Value::String(self.event)),
            ("check", json!(check)),
        ];
        if let Some((op, n)) = count {
            fields.push(("operator", json!(op.as_str())));
            fields.push(("value", json!(n)));
        }
        if let Some(window) = self.within {
            fields.push(("withinMs", json!(to_millis(window))));
        }
        node(fields)
    }

    /// At least one such event.
    pub fn exists(self) -> Criteria {
        self.check("exists", None)
    }

    /// No such event. Without a window this matches people who never did anything, so the
    /// host wants some other positive condition next to it.
    pub fn not_exists(self) -> Criteria {
        self.check("not_exists", None)
    }

    /// The number of such events compared with `n`.
    pub fn count(self, op: CountOp, n: u64) -> Criteria {
        self.check("count", Some((op, n)))
    }

    /// At least `n` such events.
    pub fn at_least(self, n: u64) -> Criteria {
        self.count(CountOp::Gte, n)
    }

    /// More than `n` such events.
    pub fn more_than(self, n: u64) -> Criteria {
        self.count(CountOp::Gt, n)
    }

    /// At most `n` such events.
    pub fn at_most(self, n: u64) -> Criteria {
        self.count(CountOp::Lte, n)
    }

    /// Fewer than `n` such events.
    pub fn less_than(self, n: u64) -> Criteria {
        self.count(CountOp::Lt, n)
    }

    /// Exactly `n` such events.
    pub fn exactly(self, n: u64) -> Criteria {
        self.count(CountOp::Eq, n)
    }
}

/// Problems the host would certainly refuse, found without the host: empty composites,
/// windows of zero, `in` without values, non-finite numbers, bucket transition events.
/// Paths are like the host's (`criteria.all[0].withinMs`).
pub(crate) fn problems(criteria: &Criteria) -> Vec<String> {
    let mut found = Vec::new();
    walk(&criteria.0, "criteria", &mut found);
    found
}

fn walk(node: &Value, path: &str, found: &mut Vec<String>) {
    let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "all" | "any" => {
            let items = node
                .get("conditions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if items.is_empty() {
                found.push(format!("{path}.conditions must not be empty"));
            }
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}.{kind}[{i}]"), found);
            }
        }
        "not" => {
            if let Some(inner) = node.get("condition") {
                walk(inner, &format!("{path}.not"), found);
            }
        }
        "event" => {
            if node.get("withinMs") == Some(&json!(0)) {
                found.push(format!("{path}.withinMs must be above zero"));
            }
            if let Some(name) = node.get("event").and_then(Value::as_str)
                && name.starts_with("bucket:")
            {
                found.push(format!(
                    "{path}.event {name:?} is a bucket transition event"
                ));
            }
        }
        "property" => {
            let operator = node.get("operator").and_then(Value::as_str);
            let value = node.get("value");
            if operator == Some("in") && value.and_then(Value::as_array).is_some_and(Vec::is_empty)
            {
                found.push(format!("{path}.value must not be empty for in"));
            }
            if matches!(operator, Some("gt" | "gte" | "lt" | "lte")) && value == Some(&Value::Null)
            {
                found.push(format!("{path}.value must be a finite number"));
            }
            if matches!(operator, Some("eq" | "neq")) && value == Some(&Value::Null) {
                found.push(format!("{path}.value must be a string, number or bool"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::{days, hours};

    #[test]
    fn given_property_builders_when_built_then_they_produce_the_documented_json() {
        let cases = [
            (
                prop("plan").eq("pro"),
                json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"}),
            ),
            (
                prop("plan").neq("free"),
                json!({"type": "property", "property": "plan", "operator": "neq", "value": "free"}),
            ),
            (
                prop("seats").gt(5),
                json!({"type": "property", "property": "seats", "operator": "gt", "value": 5}),
            ),
            (
                prop("seats").gte(5_u8),
                json!({"type": "property", "property": "seats", "operator": "gte", "value": 5}),
            ),
            (
                prop("ratio").lt(0.5),
                json!({"type": "property", "property": "ratio", "operator": "lt", "value": 0.5}),
            ),
            (
                prop("seats").lte(-1),
                json!({"type": "property", "property": "seats", "operator": "lte", "value": -1}),
            ),
            (
                prop("company").contains("corp"),
                json!({"type": "property", "property": "company", "operator": "contains", "value": "corp"}),
            ),
            (
                prop("tier").is_in([json!("a"), json!(1), json!(true)]),
                json!({"type": "property", "property": "tier", "operator": "in", "value": ["a", 1, true]}),
            ),
            (
                prop("nick").exists(),
                json!({"type": "property", "property": "nick", "operator": "exists"}),
            ),
            (
                prop("nick").not_exists(),
                json!({"type": "property", "property": "nick", "operator": "not_exists"}),
            ),
            (
                prop("beta").eq(true),
                json!({"type": "property", "property": "beta", "operator": "eq", "value": true}),
            ),
        ];
        for (built, expected) in cases {
            assert_eq!(built.to_json(), &expected);
        }
    }

    #[test]
    fn given_event_builders_when_built_then_they_produce_the_documented_json() {
        let e = |check: &str| json!({"type": "event", "event": "x", "check": check});
        let count = |op: &str, n: u64| json!({"type": "event", "event": "x", "check": "count", "operator": op, "value": n});
        let cases = [
            (event("x").exists(), e("exists")),
            (event("x").not_exists(), e("not_exists")),
            (event("x").at_least(5), count("gte", 5)),
            (event("x").more_than(5), count("gt", 5)),
            (event("x").at_most(5), count("lte", 5)),
            (event("x").less_than(5), count("lt", 5)),
            (event("x").exactly(0), count("eq", 0)),
            (event("x").count(CountOp::Gt, 2), count("gt", 2)),
            (
                event("x").within(hours(1)).at_least(3),
                json!({"type": "event", "event": "x", "check": "count", "operator": "gte",
                       "value": 3, "withinMs": 3_600_000}),
            ),
            (
                event("x").within(days(7)).exists(),
                json!({"type": "event", "event": "x", "check": "exists", "withinMs": 604_800_000}),
            ),
        ];
        for (built, expected) in cases {
            assert_eq!(built.to_json(), &expected);
        }
    }

    #[test]
    fn given_composites_when_built_then_they_nest_the_children_in_order() {
        let c = all([
            event("app.active").exists(),
            any([prop("plan").eq("pro"), !prop("trial").exists()]),
            not(event("churned").exists()),
        ]);
        assert_eq!(
            c.to_json(),
            &json!({"type": "all", "conditions": [
                {"type": "event", "event": "app.active", "check": "exists"},
                {"type": "any", "conditions": [
                    {"type": "property", "property": "plan", "operator": "eq", "value": "pro"},
                    {"type": "not", "condition":
                        {"type": "property", "property": "trial", "operator": "exists"}}
                ]},
                {"type": "not", "condition": {"type": "event", "event": "churned", "check": "exists"}}
            ]})
        );
        let text = c.to_json_string();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), *c.to_json());
    }

    #[test]
    fn given_obvious_mistakes_when_checked_then_each_is_reported_with_its_path() {
        let c = all([
            any([]),
            event("x").within(Duration::ZERO).exists(),
            prop("p").is_in(Vec::<Value>::new()),
            prop("n").gt(f64::NAN),
            not(event("bucket:left:vip").exists()),
        ]);
        assert_eq!(
            problems(&c),
            [
                "criteria.all[0].conditions must not be empty",
                "criteria.all[1].withinMs must be above zero",
                "criteria.all[2].value must not be empty for in",
                "criteria.all[3].value must be a finite number",
                "criteria.all[4].not.event \"bucket:left:vip\" is a bucket transition event",
            ]
        );
        assert!(problems(&event("x").at_least(1)).is_empty());
    }
}
