//! Load-time validation of bucket definitions: what makes the host refuse a module.
//!
//! Shape errors (unknown fields, wrong types, windows not above zero, empty `in`) are caught
//! when the criteria JSON is parsed ([`super::criteria`]); this adds the rules that need the
//! whole tree or the whole bucket. Every error names its field, under `criteria` for the
//! criteria and by the WIT field name otherwise (`max-dwell-ms`, `reactions[0].journey-id`).

use super::criteria::{Condition, CriteriaError, EventCheck, PropertyTest, ROOT};
use super::{BUCKET_EVENT_PREFIX, BucketDef, BucketKind, ReactionOn};
use crate::journeys::EntryLimit;

/// Longest bucket, journey or handler id accepted.
pub const MAX_ID_LEN: usize = 200;

/// The tree rules: composites are not empty, no event leg names a bucket transition, and at
/// least one leaf is positive.
///
/// A leaf is *negative* when people the host has never heard of satisfy it: property `neq`
/// and `not_exists`, event `not_exists` without a window (a windowed `not_exists` is the
/// bounded dormancy predicate and counts as positive), and an event `count` that zero
/// satisfies (`lt 1`, `lte 0`, `eq 0`, `lt 5`, …), windowed or not. Under a `not` a leaf's
/// polarity flips: `not(exists)` is negative, `not(neq)` positive, `not(count gte 1)`
/// negative.
///
/// Criteria made only of negative leaves would match every unknown person. Real time never
/// evaluates such a person (no event or property of theirs names the bucket) while a backfill
/// evaluates everyone, so membership would depend on which path looked: they are refused.
/// Guarded by a positive leaf (`all([event("signed_up").exists(), event("purchase").
/// less_than(1)])`) both paths evaluate exactly the people the guard names.
pub fn validate_criteria(criteria: &Condition) -> Result<(), CriteriaError> {
    check_tree(criteria, ROOT)?;
    if !has_positive_leaf(criteria, false) {
        return Err(CriteriaError::new(ROOT, NO_POSITIVE_CONDITION));
    }
    Ok(())
}

/// Why criteria made of negative leaves only are refused (shared with the guest SDK's own
/// check, which words it identically: see `guest-sdk/rust/tests/bucket_validity.json`).
pub const NO_POSITIVE_CONDITION: &str = "must have at least one positive condition: every leaf \
     is satisfied by people who did nothing (neq, not_exists, an event not_exists without \
     withinMs, or an event count that zero satisfies)";

/// The structural rules alone (no empty composite, no bucket event leg), for conditions that
/// may be made of negative leaves only: a journey's trigger filter, an exit rule's `where`.
pub fn validate_shape(criteria: &Condition) -> Result<(), CriteriaError> {
    check_tree(criteria, ROOT)
}

fn check_tree(node: &Condition, path: &str) -> Result<(), CriteriaError> {
    match node {
        Condition::Property(_) => Ok(()),
        Condition::Event(e) => {
            if e.event.starts_with(BUCKET_EVENT_PREFIX) {
                Err(CriteriaError::new(
                    format!("{path}.event"),
                    format!(
                        "{:?} is a bucket transition event; criteria may not depend on buckets",
                        e.event
                    ),
                ))
            } else {
                Ok(())
            }
        }
        Condition::All(cs) | Condition::Any(cs) => {
            let tag = if matches!(node, Condition::All(_)) {
                "all"
            } else {
                "any"
            };
            if cs.is_empty() {
                return Err(CriteriaError::new(
                    format!("{path}.conditions"),
                    format!("must not be empty (an empty {tag} is meaningless)"),
                ));
            }
            cs.iter()
                .enumerate()
                .try_for_each(|(i, c)| check_tree(c, &format!("{path}.{tag}[{i}]")))
        }
        Condition::Not(c) => check_tree(c, &format!("{path}.not")),
    }
}

fn has_positive_leaf(node: &Condition, negated: bool) -> bool {
    match node {
        Condition::Property(p) => {
            let negative = matches!(p.test, PropertyTest::Neq(_) | PropertyTest::NotExists);
            negative == negated
        }
        Condition::Event(e) => match e.check {
            // A count that zero satisfies holds for someone who never fired the event, like
            // an unwindowed `not_exists`; a window does not bound it (only `not_exists` legs
            // have the absence joins that make a windowed absence agree across paths).
            EventCheck::Count(op, value) => op.holds(0, value) == negated,
            EventCheck::Exists => !negated || e.within_ms.is_some(),
            EventCheck::NotExists => negated || e.within_ms.is_some(),
        },
        Condition::All(cs) | Condition::Any(cs) => cs.iter().any(|c| has_positive_leaf(c, negated)),
        Condition::Not(c) => has_positive_leaf(c, !negated),
    }
}

/// An id or name: not blank, not too long.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!("{field} is longer than {MAX_ID_LEN} characters"));
    }
    Ok(())
}

/// Every rule for one bucket. The error starts with the field it is about
/// (`criteria.all[0].withinMs must be above zero`, `max-dwell-ms ...`); the caller prefixes
/// which bucket.
pub fn validate_bucket(bucket: &BucketDef) -> Result<(), String> {
    check_name("id", &bucket.id)?;
    if let Some(c) = bucket
        .id
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "id must not contain {c:?} (it is part of the transition event names)"
        ));
    }
    check_name("name", &bucket.name)?;
    match (bucket.kind, &bucket.criteria) {
        (BucketKind::Manual, Some(_)) => {
            return Err(
                "criteria-json must be left out for a manual bucket (its membership is set \
                 through the API)"
                    .into(),
            );
        }
        (BucketKind::Computed, None) => {
            return Err("criteria-json is required for a computed bucket".into());
        }
        (BucketKind::Computed, Some(criteria)) => {
            validate_criteria(criteria).map_err(|e| e.to_string())?;
        }
        (BucketKind::Manual, None) => {}
    }
    for (field, value) in [
        ("min-dwell-ms", bucket.min_dwell_ms),
        ("max-dwell-ms", bucket.max_dwell_ms),
    ] {
        if value == Some(0) {
            return Err(format!("{field} must be above zero"));
        }
    }
    if let (Some(min), Some(max)) = (bucket.min_dwell_ms, bucket.max_dwell_ms)
        && max < min
    {
        return Err(format!(
            "max-dwell-ms ({max}) must not be below min-dwell-ms ({min})"
        ));
    }
    if bucket.entry_limit == EntryLimit::OncePer(0) {
        return Err("entry-limit once-per needs a period above zero".into());
    }
    let mut seen_kinds = Vec::with_capacity(2);
    for (i, reaction) in bucket.reactions.iter().enumerate() {
        check_name(&format!("reactions[{i}].journey-id"), &reaction.journey_id)?;
        check_name(&format!("reactions[{i}].handler"), &reaction.handler)?;
        let kind = reaction.on.slot();
        if seen_kinds.contains(&kind) {
            return Err(format!(
                "reactions[{i}].on: a second {kind} reaction; a bucket has at most one per \
                 transition (declare an ordinary journey on the transition event instead)"
            ));
        }
        seen_kinds.push(kind);
        if let ReactionOn::Dwell { schedule } = &reaction.on
            && schedule.offset_ms() == 0
        {
            return Err(format!(
                "reactions[{i}].on.dwell needs a duration above zero"
            ));
        }
        if let ReactionOn::Leave {
            reasons: Some(reasons),
        } = &reaction.on
            && reasons.is_empty()
        {
            return Err(format!(
                "reactions[{i}].on.leave.reasons must not be empty (leave it out for every \
                 reason)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::{LeaveReason, ReactionDef};
    use serde_json::{Value, json};

    fn criteria(v: Value) -> Condition {
        Condition::from_json(&v).unwrap()
    }

    fn check(v: Value) -> Result<(), String> {
        validate_criteria(&criteria(v)).map_err(|e| e.to_string())
    }

    fn bucket(criteria_json: Option<Value>) -> BucketDef {
        BucketDef::computed("power-users", "Power users", criteria_json.map(criteria))
    }

    fn active() -> Value {
        json!({"type": "event", "event": "app.active", "check": "exists"})
    }

    #[test]
    fn given_an_empty_composite_when_validated_then_it_is_refused_naming_it() {
        assert_eq!(
            check(json!({"type": "all", "conditions": []})).unwrap_err(),
            "criteria.conditions must not be empty (an empty all is meaningless)"
        );
        assert_eq!(
            check(json!({"type": "all", "conditions": [
                {"type": "any", "conditions": [active()]},
                {"type": "not", "condition": {"type": "any", "conditions": []}}
            ]}))
            .unwrap_err(),
            "criteria.all[1].not.conditions must not be empty (an empty any is meaningless)"
        );
    }

    #[test]
    fn given_a_bucket_event_leg_when_validated_then_it_is_refused() {
        let err = check(json!({"type": "any", "conditions": [
            active(),
            {"type": "event", "event": "bucket:entered:vip", "check": "exists"}
        ]}))
        .unwrap_err();
        assert!(
            err.starts_with("criteria.any[1].event \"bucket:entered:vip\" is a bucket"),
            "{err}"
        );
    }

    #[test]
    fn given_only_negative_leaves_when_validated_then_the_criteria_are_refused() {
        for negative in [
            json!({"type": "property", "property": "plan", "operator": "neq", "value": "pro"}),
            json!({"type": "property", "property": "plan", "operator": "not_exists"}),
            json!({"type": "event", "event": "x", "check": "not_exists"}),
            json!({"type": "not", "condition": active()}),
            json!({"type": "not", "condition":
                {"type": "property", "property": "p", "operator": "eq", "value": 1}}),
            json!({"type": "all", "conditions": [
                {"type": "event", "event": "x", "check": "not_exists"},
                {"type": "property", "property": "p", "operator": "neq", "value": 1}
            ]}),
        ] {
            let err = check(negative.clone()).unwrap_err();
            assert!(
                err.starts_with("criteria must have at least one positive condition"),
                "{negative}: {err}"
            );
        }
    }

    #[test]
    fn given_a_count_that_zero_satisfies_when_unguarded_then_it_is_refused_like_not_exists() {
        let count = |op: &str, value: u64| {
            json!({"type": "event", "event": "purchase", "check": "count", "operator": op,
                   "value": value})
        };
        for zero_satisfied in [
            count("lt", 1),
            count("lte", 0),
            count("eq", 0),
            count("lt", 5),
            count("lte", 3),
            json!({"type": "event", "event": "purchase", "check": "count", "operator": "lt",
                   "value": 1, "withinMs": 1000}),
            json!({"type": "not", "condition": count("gte", 1)}),
            json!({"type": "all", "conditions": [
                count("lt", 1),
                {"type": "property", "property": "plan", "operator": "neq", "value": "pro"}
            ]}),
        ] {
            let err = check(zero_satisfied.clone()).unwrap_err();
            assert!(
                err.starts_with("criteria must have at least one positive condition"),
                "{zero_satisfied}: {err}"
            );
        }
    }

    #[test]
    fn given_a_positive_leaf_when_validated_then_the_criteria_pass() {
        for positive in [
            active(),
            json!({"type": "event", "event": "x", "check": "not_exists", "withinMs": 1000}),
            json!({"type": "event", "event": "x", "check": "count", "operator": "gte", "value": 3}),
            json!({"type": "event", "event": "x", "check": "count", "operator": "eq", "value": 2}),
            json!({"type": "not", "condition":
                {"type": "event", "event": "x", "check": "count", "operator": "lt", "value": 1}}),
            json!({"type": "all", "conditions": [
                active(),
                {"type": "event", "event": "x", "check": "count", "operator": "lt", "value": 1}
            ]}),
            json!({"type": "not", "condition":
                {"type": "property", "property": "p", "operator": "not_exists"}}),
            json!({"type": "not", "condition": {"type": "not", "condition": active()}}),
            json!({"type": "not", "condition":
                {"type": "event", "event": "x", "check": "exists", "withinMs": 5}}),
            json!({"type": "any", "conditions": [
                {"type": "event", "event": "x", "check": "not_exists"},
                {"type": "property", "property": "p", "operator": "gt", "value": 1}
            ]}),
        ] {
            assert_eq!(check(positive.clone()), Ok(()), "{positive}");
        }
    }

    #[test]
    fn given_manual_and_computed_kinds_when_validated_then_criteria_must_match_the_kind() {
        let mut manual = bucket(Some(active()));
        manual.kind = BucketKind::Manual;
        assert!(
            validate_bucket(&manual)
                .unwrap_err()
                .starts_with("criteria-json must be left out for a manual bucket")
        );
        manual.criteria = None;
        assert_eq!(validate_bucket(&manual), Ok(()));
        assert_eq!(
            validate_bucket(&bucket(None)).unwrap_err(),
            "criteria-json is required for a computed bucket"
        );
    }

    #[test]
    fn given_dwell_bounds_when_max_is_below_min_then_it_is_refused() {
        let mut b = bucket(Some(active()));
        b.min_dwell_ms = Some(5000);
        b.max_dwell_ms = Some(1000);
        assert_eq!(
            validate_bucket(&b).unwrap_err(),
            "max-dwell-ms (1000) must not be below min-dwell-ms (5000)"
        );
        b.max_dwell_ms = Some(5000);
        assert_eq!(validate_bucket(&b), Ok(()));
        b.min_dwell_ms = Some(0);
        assert_eq!(
            validate_bucket(&b).unwrap_err(),
            "min-dwell-ms must be above zero"
        );
    }

    #[test]
    fn given_bad_ids_and_limits_when_validated_then_the_field_is_named() {
        let mut b = bucket(Some(active()));
        b.id = "a:b".into();
        assert!(
            validate_bucket(&b)
                .unwrap_err()
                .starts_with("id must not contain ':'")
        );
        b.id = " ".into();
        assert_eq!(validate_bucket(&b).unwrap_err(), "id must not be empty");
        b.id = "ok".into();
        b.name = String::new();
        assert_eq!(validate_bucket(&b).unwrap_err(), "name must not be empty");
        b.name = "Ok".into();
        b.entry_limit = EntryLimit::OncePer(0);
        assert_eq!(
            validate_bucket(&b).unwrap_err(),
            "entry-limit once-per needs a period above zero"
        );
    }

    #[test]
    fn given_reactions_when_two_share_a_kind_or_reasons_are_empty_then_they_are_refused() {
        let reaction = |on| ReactionDef {
            journey_id: "j".into(),
            handler: "h".into(),
            on,
        };
        let mut b = bucket(Some(active()));
        b.reactions = vec![
            reaction(ReactionOn::Enter {
                first_entry_only: false,
            }),
            reaction(ReactionOn::Enter {
                first_entry_only: true,
            }),
        ];
        assert!(
            validate_bucket(&b)
                .unwrap_err()
                .starts_with("reactions[1].on: a second enter reaction")
        );
        b.reactions = vec![reaction(ReactionOn::Leave {
            reasons: Some(vec![]),
        })];
        assert!(
            validate_bucket(&b)
                .unwrap_err()
                .starts_with("reactions[0].on.leave.reasons must not be empty")
        );
        b.reactions = vec![ReactionDef {
            journey_id: "".into(),
            handler: "h".into(),
            on: ReactionOn::Leave {
                reasons: Some(vec![LeaveReason::Criteria]),
            },
        }];
        assert_eq!(
            validate_bucket(&b).unwrap_err(),
            "reactions[0].journey-id must not be empty"
        );
    }
}
