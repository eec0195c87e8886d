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
use std::fmt;

mod parse;

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

    /// Criteria kept as JSON in the documented schema (`docs/criteria.md`, what the HTTP API
    /// shows and [`Criteria::to_json`] writes), checked as strictly as the host checks a
    /// manifest: an unknown or missing field, a value of the wrong type or a window that is
    /// not above zero is an error naming the field from the root.
    ///
    /// ```
    /// use waymark_guest::prelude::*;
    /// let kept = json!({"type": "all", "conditions": [
    ///     {"type": "event", "event": "app.active", "check": "exists"},
    ///     {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 604_800_000}
    /// ]});
    /// let lapsed = Criteria::from_json(&kept).unwrap();
    /// assert_eq!(
    ///     lapsed,
    ///     all([event("app.active").exists(), event("app.active").within(days(7)).not_exists()])
    /// );
    ///
    /// let typo = json!({"type": "event", "event": "x", "check": "exists", "within": 5});
    /// let err = Criteria::from_json(&typo).unwrap_err();
    /// assert_eq!(err.path, "criteria.within");
    /// assert!(err.to_string().starts_with("criteria.within is not a field of an event condition"));
    /// ```
    ///
    /// Rules that need the whole tree (composites not empty, at least one positive condition)
    /// are checked where the criteria are used, by [`Module::validate`](crate::Module::validate).
    pub fn from_json(value: &Value) -> Result<Criteria, CriteriaError> {
        parse::node(value, ROOT)?;
        Ok(Criteria(value.clone()))
    }

    /// [`Criteria::from_json`] of JSON text.
    pub fn from_json_str(text: &str) -> Result<Criteria, CriteriaError> {
        let value: Value = serde_json::from_str(text).map_err(|e| CriteriaError {
            path: ROOT.to_owned(),
            message: format!("is not valid JSON: {e}"),
        })?;
        Criteria::from_json(&value)
    }
}

/// The root of every criteria path.
const ROOT: &str = "criteria";

/// Criteria JSON outside the documented schema. Displayed as `<path> <message>`, e.g.
/// `criteria.all[0].withinMs must be above zero` — the wording the host uses when it refuses
/// a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriteriaError {
    /// The offending field from the root: `criteria.any[1].value`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for CriteriaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.message)
    }
}

impl std::error::Error for CriteriaError {}

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

/// Why criteria made of negative leaves only are refused; the host's words exactly
/// (`host/src/buckets/validate.rs`).
const NO_POSITIVE_CONDITION: &str = "must have at least one positive condition: every leaf is \
     satisfied by people who did nothing (neq, not_exists, an event not_exists without \
     withinMs, or an event count that zero satisfies)";

/// What the host refuses in a bucket's criteria, found without the host: empty composites,
/// windows of zero, `in` without values, non-finite numbers, empty names, bucket transition
/// events, and criteria without a positive condition. Paths are like the host's
/// (`criteria.all[0].withinMs`).
pub(crate) fn problems(criteria: &Criteria) -> Vec<String> {
    let mut found = shape_problems(criteria, ROOT);
    // Like the host, only a well-formed tree is judged as a whole.
    if found.is_empty() && !has_positive_leaf(&criteria.0, false) {
        found.push(format!("{ROOT} {NO_POSITIVE_CONDITION}"));
    }
    found
}

/// The structural problems alone, for conditions that may be made of negative leaves only (a
/// journey's trigger filter, an exit rule's `where`), with `root` naming the field.
pub(crate) fn shape_problems(criteria: &Criteria, root: &str) -> Vec<String> {
    let mut found = Vec::new();
    walk(&criteria.0, root, &mut found);
    found
}

/// The first event condition's name, if any: a filter on an event's properties may not hold
/// one.
pub(crate) fn first_event_leg(criteria: &Criteria) -> Option<String> {
    fn find(node: &Value) -> Option<String> {
        match node.get("type").and_then(Value::as_str)? {
            "event" => Some(node.get("event")?.as_str()?.to_owned()),
            "all" | "any" => node.get("conditions")?.as_array()?.iter().find_map(find),
            "not" => find(node.get("condition")?),
            _ => None,
        }
    }
    find(&criteria.0)
}

/// Whether some leaf is positive: not satisfied by a person the host never heard of, once the
/// `not`s above it are applied (the host's rule, `validate_criteria`). A windowed `not_exists`
/// is positive (the bounded dormancy predicate); a count is negative when zero satisfies it.
fn has_positive_leaf(node: &Value, negated: bool) -> bool {
    let field = |name: &str| node.get(name).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "property" => matches!(field("operator"), "neq" | "not_exists") == negated,
        "event" => {
            let windowed = node.get("withinMs").is_some();
            match field("check") {
                "exists" => !negated || windowed,
                "not_exists" => negated || windowed,
                "count" => {
                    let value = node
                        .get("value")
                        .and_then(Value::as_u64)
                        .unwrap_or_default();
                    // Whether `0 <operator> value` holds.
                    let zero_satisfies = match field("operator") {
                        "gte" | "eq" => value == 0,
                        "lt" => value > 0,
                        "lte" => true,
                        _ => false, // gt
                    };
                    zero_satisfies == negated
                }
                _ => false,
            }
        }
        "all" | "any" => node
            .get("conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| has_positive_leaf(c, negated))),
        "not" => node
            .get("condition")
            .is_some_and(|c| has_positive_leaf(c, !negated)),
        _ => false,
    }
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
            if node
                .get("event")
                .and_then(Value::as_str)
                .is_some_and(|name| name.trim().is_empty())
            {
                found.push(format!("{path}.event must not be empty"));
            }
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
            if node
                .get("property")
                .and_then(Value::as_str)
                .is_some_and(|name| name.trim().is_empty())
            {
                found.push(format!("{path}.property must not be empty"));
            }
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
    fn given_criteria_json_in_the_documented_schema_when_parsed_then_it_equals_the_builders() {
        let built = all([
            prop("plan").is_in(["pro", "team"]),
            prop("seats").gt(10),
            any([prop("bio").contains("x"), !prop("trial").exists()]),
            event("feature.used").within(days(7)).at_least(5),
            not(event("churned").exists()),
        ]);
        let parsed = Criteria::from_json_str(&built.to_json_string()).unwrap();
        assert_eq!(parsed, built);
        assert_eq!(Criteria::from_json(built.to_json()), Ok(built));
    }

    #[test]
    fn given_bad_criteria_json_when_parsed_then_the_error_names_the_field() {
        let err = |v: Value| Criteria::from_json(&v).unwrap_err();
        let e = err(json!({"type": "all", "conditions": [
            {"type": "event", "event": "x", "check": "exists"},
            {"type": "event", "event": "x", "check": "count", "operator": "gte", "value": -1}
        ]}));
        assert_eq!(e.path, "criteria.all[1].value");
        assert_eq!(
            e.to_string(),
            "criteria.all[1].value must be a whole number of at least zero, got -1"
        );
        let e = err(json!({"type": "not", "condition":
            {"type": "property", "property": "p", "operator": "like", "value": 1}}));
        assert_eq!(e.path, "criteria.not.operator");
        assert!(e.message.starts_with("\"like\" is not a property operator"));
        let e = err(json!({"type": "any", "conditions": [
            {"type": "property", "property": "p", "operator": "exists", "eventName": "x"}
        ]}));
        assert_eq!(e.path, "criteria.any[0].eventName");
        assert_eq!(err(json!({"property": "p"})).path, "criteria.type");
        assert_eq!(
            err(json!([1])).to_string(),
            "criteria must be a condition object, got an array"
        );
        assert_eq!(
            err(
                json!({"type": "property", "property": "p", "operator": "in", "value": ["a", null]})
            )
            .to_string(),
            "criteria.value[1] must be a string, number or bool, got null"
        );
        let e = Criteria::from_json_str("{nope").unwrap_err();
        assert_eq!(e.path, "criteria");
        assert!(e.message.starts_with("is not valid JSON"), "{e}");
    }

    #[test]
    fn given_only_negative_leaves_when_checked_then_the_missing_positive_condition_is_reported() {
        for negative in [
            event("purchase").less_than(1),
            event("purchase").at_most(0),
            event("purchase").exactly(0),
            event("purchase").within(days(7)).less_than(5),
            not(event("purchase").at_least(1)),
            event("x").not_exists(),
            prop("plan").neq("pro"),
            any([prop("plan").not_exists(), not(prop("p").eq(1))]),
        ] {
            let found = problems(&negative);
            assert_eq!(found.len(), 1, "{negative:?}: {found:?}");
            assert!(
                found[0].starts_with("criteria must have at least one positive condition"),
                "{found:?}"
            );
        }
        for positive in [
            all([event("signed_up").exists(), event("purchase").less_than(1)]),
            event("x").within(days(7)).not_exists(),
            event("purchase").exactly(2),
            not(event("purchase").less_than(1)),
            not(prop("plan").not_exists()),
        ] {
            assert!(problems(&positive).is_empty(), "{positive:?}");
        }
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
