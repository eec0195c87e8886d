//! Plan, then evaluate.
//!
//! The stores differ (SQLite answers synchronously, PostgreSQL asynchronously), so evaluation
//! is split in two: [`Condition::event_queries`] lists the event counts a condition needs, the
//! caller's store counts them (one query each, or one grouped query for all), and [`evaluate`]
//! decides membership from the properties and those counts without any I/O.
//!
//! A store counts a query's occurrences as the person's events with that exact name whose
//! occurred-at is at or after [`EventQuery::window_start`] — the boundary is inclusive: an event
//! exactly `within` ago still counts.

use super::criteria::{Condition, EventCheck, EventCondition, PropertyTest};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// One count a condition needs: how many events named `event` the person has, all time or
/// within the last `within_ms` milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventQuery {
    pub event: String,
    pub within_ms: Option<u64>,
}

impl EventQuery {
    /// The earliest occurred-at (ms) that counts at `now_ms`, inclusive; `None` for all time.
    pub fn window_start(&self, now_ms: i64) -> Option<i64> {
        self.within_ms
            .map(|ms| now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)))
    }

    /// Whether an occurrence of this query's event at `occurred_at_ms` counts at `now_ms`.
    pub fn counts_occurrence(&self, occurred_at_ms: i64, now_ms: i64) -> bool {
        self.window_start(now_ms)
            .is_none_or(|start| occurred_at_ms >= start)
    }
}

/// The store's answers to [`EventQuery`]s. Conditions have a handful of event legs, so this is
/// a small vector searched linearly: no hashing and no allocation on look-up. A query the store
/// did not answer counts as zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCounts {
    counts: Vec<(EventQuery, u64)>,
}

impl EventCounts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            counts: Vec::with_capacity(capacity),
        }
    }

    /// Records (or replaces) the answer to `query`.
    pub fn insert(&mut self, query: EventQuery, count: u64) {
        match self.counts.iter_mut().find(|(q, _)| *q == query) {
            Some((_, c)) => *c = count,
            None => self.counts.push((query, count)),
        }
    }

    /// The count for `event` within `within_ms`, if the store answered it.
    pub fn get(&self, event: &str, within_ms: Option<u64>) -> Option<u64> {
        self.counts
            .iter()
            .find(|(q, _)| q.within_ms == within_ms && q.event == event)
            .map(|(_, c)| *c)
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&EventQuery, u64)> {
        self.counts.iter().map(|(q, c)| (q, *c))
    }
}

impl FromIterator<(EventQuery, u64)> for EventCounts {
    fn from_iter<I: IntoIterator<Item = (EventQuery, u64)>>(iter: I) -> Self {
        let mut counts = EventCounts::new();
        for (query, count) in iter {
            counts.insert(query, count);
        }
        counts
    }
}

impl Condition {
    /// The event counts this condition needs, deduplicated, in first-use order. Empty for
    /// property-only conditions.
    pub fn event_queries(&self) -> Vec<EventQuery> {
        let mut queries: Vec<EventQuery> = Vec::new();
        for leaf in self.leaves() {
            if let Condition::Event(e) = leaf
                && !queries
                    .iter()
                    .any(|q| q.within_ms == e.within_ms && q.event == e.event)
            {
                queries.push(EventQuery {
                    event: e.event.clone(),
                    within_ms: e.within_ms,
                });
            }
        }
        queries
    }

    /// True when the condition has no event leaf (it needs no counts).
    pub fn is_property_only(&self) -> bool {
        self.leaves().all(|l| matches!(l, Condition::Property(_)))
    }
}

/// Whether `condition` holds for a person whose properties are `properties` and whose event
/// counts are `counts`.
///
/// For buckets `properties` is the contact's stored properties with this ingest's patch
/// applied (the patch wins; a `null` in the patch removes the key) — never the event's
/// payload. For a journey's trigger filter it is the triggering event's properties.
///
/// There is no `now` parameter: the only clock-dependent part of the language is an event
/// leg's window, which the store applied when it counted (see [`EventQuery::window_start`]).
pub fn evaluate(
    condition: &Condition,
    properties: &Map<String, Value>,
    counts: &EventCounts,
) -> bool {
    decide_with(condition, properties, &|e| {
        Some(event_holds(
            e,
            counts.get(&e.event, e.within_ms).unwrap_or(0),
        ))
    })
    .unwrap_or(false) // unreachable: every leaf decides
}

/// Whether `condition` holds as far as `counts` tells, or `None` when the answer turns on an
/// event leg whose count `counts` lacks (unlike [`evaluate`], which counts a missing answer as
/// zero). Property legs always decide; `all`, `any` and `not` follow three-valued logic, so
/// `all(prop false, event ?)` is false and `any(prop true, event ?)` is true.
///
/// Real-time evaluation asks this first with no counts: a bucket its properties alone decide
/// costs the store no count at all.
pub fn decide(
    condition: &Condition,
    properties: &Map<String, Value>,
    counts: &EventCounts,
) -> Option<bool> {
    decide_with(condition, properties, &|e| {
        counts
            .get(&e.event, e.within_ms)
            .map(|count| event_holds(e, count))
    })
}

/// Three-valued evaluation with `event` answering the event legs. Children are visited in
/// order and a decided `all`/`any` stops early, as the two-valued logic would.
fn decide_with(
    condition: &Condition,
    properties: &Map<String, Value>,
    event: &dyn Fn(&EventCondition) -> Option<bool>,
) -> Option<bool> {
    match condition {
        Condition::Property(p) => Some(property_holds(&p.test, properties.get(&p.property))),
        Condition::Event(e) => event(e),
        Condition::All(cs) => decide_composite(cs, false, properties, event),
        Condition::Any(cs) => decide_composite(cs, true, properties, event),
        Condition::Not(c) => decide_with(c, properties, event).map(|holds| !holds),
    }
}

/// `all` (`decisive` false) or `any` (`decisive` true): a child that is `decisive` decides it;
/// all children known and none decisive make it `!decisive`; otherwise it is unknown.
fn decide_composite(
    children: &[Condition],
    decisive: bool,
    properties: &Map<String, Value>,
    event: &dyn Fn(&EventCondition) -> Option<bool>,
) -> Option<bool> {
    let mut known = true;
    for child in children {
        match decide_with(child, properties, event) {
            Some(holds) if holds == decisive => return Some(decisive),
            Some(_) => {}
            None => known = false,
        }
    }
    known.then_some(!decisive)
}

fn event_holds(e: &EventCondition, count: u64) -> bool {
    match e.check {
        EventCheck::Exists => count > 0,
        EventCheck::NotExists => count == 0,
        EventCheck::Count(op, value) => op.holds(count, value),
    }
}

fn property_holds(test: &PropertyTest, actual: Option<&Value>) -> bool {
    let actual = actual.filter(|v| !v.is_null());
    match test {
        PropertyTest::Exists => actual.is_some(),
        PropertyTest::NotExists => actual.is_none(),
        PropertyTest::Eq(expected) => actual.is_some_and(|a| scalar_eq(a, expected)),
        PropertyTest::Neq(expected) => !actual.is_some_and(|a| scalar_eq(a, expected)),
        PropertyTest::In(options) => {
            actual.is_some_and(|a| options.iter().any(|o| scalar_eq(a, o)))
        }
        PropertyTest::Contains(needle) => {
            matches!(actual, Some(Value::String(s)) if s.contains(needle.as_str()))
        }
        PropertyTest::Gt(n) => compare(actual, n).is_some_and(Ordering::is_gt),
        PropertyTest::Gte(n) => compare(actual, n).is_some_and(Ordering::is_ge),
        PropertyTest::Lt(n) => compare(actual, n).is_some_and(Ordering::is_lt),
        PropertyTest::Lte(n) => compare(actual, n).is_some_and(Ordering::is_le),
    }
}

/// Strict equality: same JSON type and value; numbers compare by value (`1` equals `1.0`).
fn scalar_eq(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => cmp_numbers(a, b) == Some(Ordering::Equal),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

fn compare(actual: Option<&Value>, expected: &Number) -> Option<Ordering> {
    match actual {
        Some(Value::Number(a)) => cmp_numbers(a, expected),
        _ => None,
    }
}

/// Exact for integers (no `f64` rounding of large ids), by `f64` when either is a float.
fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn cond(v: Value) -> Condition {
        Condition::from_json(&v).unwrap()
    }

    fn props(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn prop_op(op: &str, value: Value) -> Condition {
        cond(json!({"type": "property", "property": "p", "operator": op, "value": value}))
    }

    fn holds_for(c: &Condition, p: Value) -> bool {
        evaluate(c, &props(p), &EventCounts::new())
    }

    fn counts(entries: &[(&str, Option<u64>, u64)]) -> EventCounts {
        entries
            .iter()
            .map(|(e, w, c)| {
                (
                    EventQuery {
                        event: (*e).into(),
                        within_ms: *w,
                    },
                    *c,
                )
            })
            .collect()
    }

    #[test]
    fn given_eq_when_the_types_differ_then_it_does_not_match() {
        let c = prop_op("eq", json!(1));
        assert!(holds_for(&c, json!({"p": 1})));
        assert!(holds_for(&c, json!({"p": 1.0})));
        assert!(!holds_for(&c, json!({"p": "1"})));
        assert!(!holds_for(&c, json!({"p": true})));
        assert!(!holds_for(&c, json!({})));
        assert!(!holds_for(&c, json!({"p": null})));
        let s = prop_op("eq", json!("pro"));
        assert!(holds_for(&s, json!({"p": "pro"})));
        assert!(!holds_for(&s, json!({"p": "Pro"})));
        assert!(!holds_for(&s, json!({"p": ["pro"]})));
        let b = prop_op("eq", json!(false));
        assert!(holds_for(&b, json!({"p": false})));
        assert!(!holds_for(&b, json!({"p": 0})));
    }

    #[test]
    fn given_neq_when_the_property_is_missing_or_of_another_type_then_it_matches() {
        let c = prop_op("neq", json!("pro"));
        assert!(holds_for(&c, json!({})));
        assert!(holds_for(&c, json!({"p": null})));
        assert!(holds_for(&c, json!({"p": "free"})));
        assert!(holds_for(&c, json!({"p": 1})));
        assert!(!holds_for(&c, json!({"p": "pro"})));
    }

    #[test]
    fn given_numeric_comparisons_when_at_the_threshold_then_each_operator_answers_exactly() {
        for (op, below, equal, above) in [
            ("gt", false, false, true),
            ("gte", false, true, true),
            ("lt", true, false, false),
            ("lte", true, true, false),
        ] {
            let c = prop_op(op, json!(5));
            assert_eq!(holds_for(&c, json!({"p": 4})), below, "{op} below");
            assert_eq!(holds_for(&c, json!({"p": 5})), equal, "{op} equal");
            assert_eq!(holds_for(&c, json!({"p": 5.0})), equal, "{op} equal float");
            assert_eq!(holds_for(&c, json!({"p": 5.5})), above, "{op} above");
        }
    }

    #[test]
    fn given_numeric_comparisons_when_the_property_is_not_a_number_then_they_are_false() {
        for op in ["gt", "gte", "lt", "lte"] {
            let c = prop_op(op, json!(5));
            for actual in [json!("6"), json!("4"), json!(true), json!(null), json!([6])] {
                assert!(!holds_for(&c, json!({ "p": actual })), "{op} {actual}");
            }
            assert!(!holds_for(&c, json!({})), "{op} missing");
        }
    }

    #[test]
    fn given_large_integers_when_compared_then_there_is_no_float_rounding() {
        let c = prop_op("gt", json!(9_007_199_254_740_992_i64));
        assert!(holds_for(&c, json!({"p": 9_007_199_254_740_993_i64})));
        let big = prop_op("gt", json!(-1));
        assert!(holds_for(&big, json!({"p": u64::MAX})));
        let neg = prop_op("lt", json!(u64::MAX));
        assert!(holds_for(&neg, json!({"p": -5})));
        assert!(holds_for(&prop_op("lt", json!(0.5)), json!({"p": -1})));
    }

    #[test]
    fn given_contains_when_the_property_is_a_string_then_it_is_a_case_sensitive_substring() {
        let c = prop_op("contains", json!("corp"));
        assert!(holds_for(&c, json!({"p": "acme corp"})));
        assert!(!holds_for(&c, json!({"p": "ACME CORP"})));
        assert!(!holds_for(&c, json!({"p": ["corp"]})));
        assert!(!holds_for(&c, json!({"p": 1})));
        assert!(!holds_for(&c, json!({})));
        assert!(holds_for(
            &prop_op("contains", json!("")),
            json!({"p": "x"})
        ));
    }

    #[test]
    fn given_in_with_mixed_types_when_evaluated_then_only_same_typed_values_match() {
        let c = prop_op("in", json!(["1", 2, true]));
        assert!(holds_for(&c, json!({"p": "1"})));
        assert!(!holds_for(&c, json!({"p": 1})));
        assert!(holds_for(&c, json!({"p": 2})));
        assert!(holds_for(&c, json!({"p": 2.0})));
        assert!(!holds_for(&c, json!({"p": "2"})));
        assert!(holds_for(&c, json!({"p": true})));
        assert!(!holds_for(&c, json!({"p": "true"})));
        assert!(!holds_for(&c, json!({})));
        assert!(!holds_for(&c, json!({"p": null})));
    }

    #[test]
    fn given_exists_and_not_exists_when_the_property_is_null_then_it_counts_as_absent() {
        let e = cond(json!({"type": "property", "property": "p", "operator": "exists"}));
        let n = cond(json!({"type": "property", "property": "p", "operator": "not_exists"}));
        for (p, exists) in [
            (json!({"p": 0}), true),
            (json!({"p": ""}), true),
            (json!({"p": false}), true),
            (json!({"p": null}), false),
            (json!({}), false),
        ] {
            assert_eq!(holds_for(&e, p.clone()), exists, "{p}");
            assert_eq!(holds_for(&n, p.clone()), !exists, "{p}");
        }
    }

    #[test]
    fn given_a_dotted_property_name_when_evaluated_then_it_is_a_flat_key_not_a_path() {
        let c = cond(json!({"type": "property", "property": "a.b", "operator": "exists"}));
        assert!(!holds_for(&c, json!({"a": {"b": 1}})));
        assert!(holds_for(&c, json!({"a.b": 1})));
    }

    #[test]
    fn given_event_checks_when_counts_are_zero_or_more_then_exists_and_not_exists_answer() {
        let exists = cond(json!({"type": "event", "event": "x", "check": "exists"}));
        let absent = cond(json!({"type": "event", "event": "x", "check": "not_exists"}));
        let empty = Map::new();
        for (n, present) in [(0, false), (1, true), (7, true)] {
            let c = counts(&[("x", None, n)]);
            assert_eq!(evaluate(&exists, &empty, &c), present);
            assert_eq!(evaluate(&absent, &empty, &c), !present);
        }
        // A query the store did not answer counts as zero.
        assert!(!evaluate(&exists, &empty, &EventCounts::new()));
        assert!(evaluate(&absent, &empty, &EventCounts::new()));
    }

    #[test]
    fn given_a_count_equal_to_the_threshold_when_evaluated_then_each_operator_answers_exactly() {
        for (op, below, equal, above) in [
            ("gt", false, false, true),
            ("gte", false, true, true),
            ("lt", true, false, false),
            ("lte", true, true, false),
            ("eq", false, true, false),
        ] {
            let c = cond(json!({"type": "event", "event": "x", "check": "count",
                                "operator": op, "value": 3}));
            for (n, expected) in [(2, below), (3, equal), (4, above)] {
                assert_eq!(
                    evaluate(&c, &Map::new(), &counts(&[("x", None, n)])),
                    expected,
                    "{op} with count {n}"
                );
            }
        }
    }

    #[test]
    fn given_a_windowed_leaf_when_evaluated_then_it_reads_the_windowed_count_only() {
        let c = cond(json!({"type": "event", "event": "x", "check": "exists", "withinMs": 1000}));
        let all_time_only = counts(&[("x", None, 5)]);
        assert!(!evaluate(&c, &Map::new(), &all_time_only));
        let both = counts(&[("x", None, 5), ("x", Some(1000), 1)]);
        assert!(evaluate(&c, &Map::new(), &both));
    }

    #[test]
    fn given_an_event_exactly_at_now_minus_within_when_counted_then_it_counts() {
        let q = EventQuery {
            event: "x".into(),
            within_ms: Some(1000),
        };
        assert_eq!(q.window_start(NOW), Some(NOW - 1000));
        assert!(q.counts_occurrence(NOW - 1000, NOW));
        assert!(!q.counts_occurrence(NOW - 1001, NOW));
        assert!(q.counts_occurrence(NOW, NOW));
        let all_time = EventQuery {
            event: "x".into(),
            within_ms: None,
        };
        assert_eq!(all_time.window_start(NOW), None);
        assert!(all_time.counts_occurrence(i64::MIN, NOW));
        let huge = EventQuery {
            event: "x".into(),
            within_ms: Some(u64::MAX),
        };
        assert_eq!(huge.window_start(NOW), Some(NOW - i64::MAX));
    }

    #[test]
    fn given_composites_when_evaluated_then_all_any_and_not_combine_their_children() {
        let yes = json!({"type": "property", "property": "a", "operator": "exists"});
        let no = json!({"type": "property", "property": "b", "operator": "exists"});
        let p = json!({"a": 1});
        let check = |v: Value| holds_for(&cond(v), p.clone());
        assert!(check(json!({"type": "all", "conditions": [yes, yes]})));
        assert!(!check(json!({"type": "all", "conditions": [yes, no]})));
        assert!(check(json!({"type": "any", "conditions": [no, yes]})));
        assert!(!check(json!({"type": "any", "conditions": [no, no]})));
        assert!(!check(json!({"type": "not", "condition": yes})));
        assert!(check(json!({"type": "not", "condition": no})));
        assert!(check(
            json!({"type": "not", "condition": {"type": "not", "condition": yes}})
        ));
        // not(eq) differs from neq only in name: both are true for a missing property.
        let not_eq = json!({"type": "not", "condition":
            {"type": "property", "property": "z", "operator": "eq", "value": 1}});
        assert!(check(not_eq));
        // Degenerate composites (refused at validation) keep the usual identities.
        assert!(evaluate(
            &Condition::All(vec![]),
            &Map::new(),
            &EventCounts::new()
        ));
        assert!(!evaluate(
            &Condition::Any(vec![]),
            &Map::new(),
            &EventCounts::new()
        ));
    }

    #[test]
    fn given_no_counts_when_deciding_then_only_property_legs_settle_the_answer() {
        let seats =
            json!({"type": "property", "property": "seats", "operator": "gte", "value": 10});
        let invited = json!({"type": "event", "event": "teammate.invited", "check": "count",
            "operator": "gte", "value": 2});
        let none = EventCounts::new();
        let small = props(json!({"seats": 3}));
        let large = props(json!({"seats": 30}));
        let all = cond(json!({"type": "all", "conditions": [seats, invited]}));
        assert_eq!(decide(&all, &small, &none), Some(false));
        assert_eq!(decide(&all, &large, &none), None);
        let any = cond(json!({"type": "any", "conditions": [invited, seats]}));
        assert_eq!(decide(&any, &large, &none), Some(true));
        assert_eq!(decide(&any, &small, &none), None);
        let not = cond(
            json!({"type": "not", "condition": {"type": "all", "conditions": [seats, invited]}}),
        );
        assert_eq!(decide(&not, &small, &none), Some(true));
        assert_eq!(decide(&not, &large, &none), None);
        assert_eq!(decide(&cond(invited.clone()), &large, &none), None);
    }

    #[test]
    fn given_the_counts_when_deciding_then_it_agrees_with_evaluate() {
        let c = cond(json!({"type": "any", "conditions": [
            {"type": "all", "conditions": [
                {"type": "property", "property": "plan", "operator": "eq", "value": "pro"},
                {"type": "event", "event": "a", "check": "exists", "withinMs": 1000}
            ]},
            {"type": "not", "condition": {"type": "event", "event": "b", "check": "count",
                "operator": "gt", "value": 1}}
        ]}));
        for plan in ["pro", "free"] {
            for a in [0, 1] {
                for b in [0, 1, 2] {
                    let p = props(json!({"plan": plan}));
                    let answered = counts(&[("a", Some(1000), a), ("b", None, b)]);
                    assert_eq!(
                        decide(&c, &p, &answered),
                        Some(evaluate(&c, &p, &answered)),
                        "plan {plan}, a {a}, b {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn given_lapsed_activity_when_evaluated_then_the_dormancy_shape_works() {
        // "Was active, but not in the last 7 days."
        let c = cond(json!({"type": "all", "conditions": [
            {"type": "event", "event": "app.active", "check": "exists"},
            {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 604_800_000}
        ]}));
        let lapsed = counts(&[
            ("app.active", None, 3),
            ("app.active", Some(604_800_000), 0),
        ]);
        let active = counts(&[
            ("app.active", None, 3),
            ("app.active", Some(604_800_000), 1),
        ]);
        let never = counts(&[
            ("app.active", None, 0),
            ("app.active", Some(604_800_000), 0),
        ]);
        assert!(evaluate(&c, &Map::new(), &lapsed));
        assert!(!evaluate(&c, &Map::new(), &active));
        assert!(!evaluate(&c, &Map::new(), &never));
    }

    #[test]
    fn given_repeated_event_legs_when_planning_then_queries_are_deduplicated() {
        let c = cond(json!({"type": "any", "conditions": [
            {"type": "event", "event": "a", "check": "exists"},
            {"type": "event", "event": "a", "check": "count", "operator": "gte", "value": 2},
            {"type": "event", "event": "a", "check": "exists", "withinMs": 10},
            {"type": "not", "condition": {"type": "event", "event": "b", "check": "exists"}},
            {"type": "property", "property": "p", "operator": "exists"}
        ]}));
        let q = c.event_queries();
        assert_eq!(
            q,
            vec![
                EventQuery {
                    event: "a".into(),
                    within_ms: None
                },
                EventQuery {
                    event: "a".into(),
                    within_ms: Some(10)
                },
                EventQuery {
                    event: "b".into(),
                    within_ms: None
                },
            ]
        );
        assert!(!c.is_property_only());
        assert!(prop_op("eq", json!(1)).event_queries().is_empty());
        assert!(prop_op("eq", json!(1)).is_property_only());
    }

    #[test]
    fn given_event_counts_when_a_query_is_inserted_twice_then_the_last_answer_wins() {
        let mut c = EventCounts::with_capacity(2);
        let q = EventQuery {
            event: "a".into(),
            within_ms: None,
        };
        c.insert(q.clone(), 1);
        c.insert(q, 4);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("a", None), Some(4));
        assert_eq!(c.get("a", Some(1)), None);
        assert_eq!(c.iter().count(), 1);
        assert!(!c.is_empty());
    }
}
