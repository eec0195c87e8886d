//! The SDK's half of the shared validity cases (`validity_cases.json`, beside this file): each
//! case is built through the public builders (criteria through `Criteria::from_json`) and
//! judged by `Module::validate`, which must say what the host says — the host runs the same
//! file through its manifest loader (`host/src/modules/manifest.rs`).

use serde_json::Value;
use waymark_guest::prelude::*;

fn noop(_: &Ctx) -> JourneyResult {
    Ok(())
}

fn text<'a>(fragment: &'a Value, field: &str, default: &'a str) -> &'a str {
    fragment
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or(default)
}

fn millis_of(fragment: &Value, field: &str) -> Option<Duration> {
    fragment.get(field).and_then(Value::as_u64).map(millis)
}

/// The criteria of a fragment's field, or the SDK's refusal of its JSON.
fn criteria(fragment: &Value, field: &str) -> Result<Option<Criteria>, String> {
    fragment
        .get(field)
        .map(|json| Criteria::from_json(json).map_err(|e| e.to_string()))
        .transpose()
}

fn bucket_module(fragment: &Value) -> Result<Module, String> {
    let mut b = bucket(text(fragment, "id", "b"));
    if let Some(name) = fragment.get("name").and_then(Value::as_str) {
        b = b.name(name);
    }
    if fragment.get("manual").and_then(Value::as_bool) == Some(true) {
        b = b.manual();
    }
    if let Some(c) = criteria(fragment, "criteria")? {
        b = b.criteria(c);
    }
    if let Some(d) = millis_of(fragment, "minDwellMs") {
        b = b.min_dwell(d);
    }
    if let Some(d) = millis_of(fragment, "maxDwellMs") {
        b = b.max_dwell(d);
    }
    if let Some(period) = millis_of(fragment, "oncePerMs") {
        b = b.once_per(period);
    }
    if let Some(reasons) = fragment.get("leaveReasons").and_then(Value::as_array) {
        b = b
            .on_leave(noop)
            .leave_reasons(reasons.iter().filter_map(Value::as_str));
    }
    if let Some(rules) = fragment.get("enterExitOn").and_then(Value::as_array) {
        b = b.on_enter(noop);
        for rule in rules {
            let event = text(rule, "event", "");
            b = match criteria(rule, "where")? {
                Some(c) => b.enter_exit_on_where(event, c),
                None => b.enter_exit_on(event),
            };
        }
    }
    Ok(Module::new().bucket(b))
}

fn journey_module(fragment: &Value) -> Result<Module, String> {
    let mut j = journey(text(fragment, "id", "j")).on(text(fragment, "trigger", "x"));
    if let Some(c) = criteria(fragment, "where")? {
        j = j.where_(c);
    }
    for rule in fragment
        .get("exitOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let event = text(rule, "event", "");
        j = match criteria(rule, "where")? {
            Some(c) => j.exit_on_where(event, c),
            None => j.exit_on(event),
        };
    }
    if let Some(period) = millis_of(fragment, "oncePerMs") {
        j = j.once_per(period);
    }
    Ok(Module::new().journey(j, noop))
}

#[test]
fn given_the_shared_cases_when_validated_by_the_sdk_then_each_verdict_is_the_hosts() {
    let doc: Value = serde_json::from_str(include_str!("validity_cases.json")).unwrap();
    let cases = doc["cases"].as_array().expect("a list of cases");
    assert!(cases.len() > 20, "the shared cases went missing");
    for case in cases {
        let name = case["case"].as_str().unwrap();
        let verdict = match (case.get("bucket"), case.get("journey")) {
            (Some(b), None) => bucket_module(b),
            (None, Some(j)) => journey_module(j),
            _ => panic!("{name}: a case has one bucket or one journey"),
        }
        .and_then(|module| module.validate());
        match case.get("error").and_then(Value::as_str) {
            None => assert_eq!(verdict, Ok(()), "{name}: valid for the host"),
            Some(expected) => {
                let err = verdict.expect_err(name);
                assert!(
                    err.contains(expected),
                    "{name}: the host's refusal says {expected:?}; the SDK said:\n{err}"
                );
            }
        }
    }
}
