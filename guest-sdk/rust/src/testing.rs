//! Run journeys natively in unit tests, against a scripted stand-in for the host.
//!
//! ```
//! use waymark_guest::prelude::*;
//! use waymark_guest::testing::{Step, TestHost};
//!
//! fn hello(ctx: &Ctx) -> JourneyResult {
//!     ctx.send_email(email("hello"))?;
//!     ctx.sleep(days(1), "a day later");
//!     ctx.send_email(email("follow-up").var("at", ctx.now()))?;
//!     Ok(())
//! }
//!
//! let module = Module::new().journey(journey("hello").on("user.signed_up"), hello);
//! let run = TestHost::new().starting_at(1_000).run(
//!     &module,
//!     "hello",
//!     Person::new("u1").with_email("u1@example.com"),
//!     Event::new("user.signed_up"),
//! );
//! assert!(run.result.is_ok());
//! assert_eq!(run.emails(), ["hello", "follow-up"]);
//! assert!(matches!(&run.steps[1], Step::Sleep { label: Some(l), .. } if l == "a day later"));
//! ```
//!
//! The test host performs every call for real, in order: a sleep advances its clock and
//! returns, so one call runs the whole journey. It does not replay or render templates.
//!
//! Buckets a handler reads are stubbed with [`TestHost::bucket`]; any other bucket is unknown:
//!
//! ```
//! use waymark_guest::prelude::*;
//! use waymark_guest::testing::TestHost;
//!
//! fn report(ctx: &Ctx) -> JourneyResult {
//!     let vips = ctx.bucket_count("vip")?;
//!     let page = ctx.bucket_members("vip", MemberPageRequest::first().limit(1))?;
//!     let first = &page.members[0].key;
//!     ctx.send_email(email("report").var("vips", vips).var("first", first.as_str()))?;
//!     assert!(ctx.bucket_has("vip", "ada")?);
//!     assert!(ctx.bucket_count("nope").is_err());
//!     Ok(())
//! }
//!
//! let module = Module::new().journey(journey("report").on("x"), report);
//! let run = TestHost::new()
//!     .bucket("vip", [Member::new("ada"), Member::new("bob")])
//!     .run(&module, "report", Person::new("u1"), Event::new("x"));
//! assert_eq!(run.result, Ok(()));
//! ```
//!
//! [`describe`] shows what the module's `describe` export tells the host, as JSON, so tests
//! can check declarations — buckets' criteria above all:
//!
//! ```
//! use waymark_guest::prelude::*;
//! use waymark_guest::testing::describe;
//!
//! fn hello(_: &Ctx) -> JourneyResult { Ok(()) }
//!
//! let module = Module::new().bucket(
//!     bucket("pro").criteria(prop("plan").eq("pro")).on_enter(hello).first_entry_only(),
//! );
//! let manifest = describe(&module);
//! assert_eq!(
//!     manifest["buckets"][0]["criteria"],
//!     json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"})
//! );
//! assert_eq!(
//!     manifest["buckets"][0]["reactions"][0],
//!     json!({"journeyId": "bucket-pro-on-enter", "handler": "bucket-pro-on-enter",
//!            "on": {"enter": {"firstEntryOnly": true}}})
//! );
//! ```

use crate::ctx::{Backend, Event, Level, Person, TimestampMs};
use crate::duration::{Duration, millis};
use crate::members::{Member, MemberPage, MemberPageRequest};
use crate::module::Module;
use crate::wit::types as wit;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// One host call a handler made, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `ctx.now()` and what it returned.
    Now(TimestampMs),
    /// `ctx.random()` and what it returned.
    Random(u64),
    /// `ctx.sleep(..)`.
    Sleep {
        /// How long.
        duration: Duration,
        /// The label, if not empty.
        label: Option<String>,
    },
    /// `ctx.send_email(..)`.
    SendEmail {
        /// The template key.
        template: String,
        /// The explicit recipient, if any.
        to: Option<String>,
        /// The send's vars.
        vars: Map<String, Value>,
        /// What the handler got back.
        result: Result<String, String>,
    },
    /// `ctx.is_subscribed()` and what it returned.
    IsSubscribed(bool),
    /// `ctx.bucket_count(..)`.
    BucketCount {
        /// The bucket.
        bucket: String,
        /// What the handler got back.
        result: Result<u64, String>,
    },
    /// `ctx.bucket_has(..)`.
    BucketHas {
        /// The bucket.
        bucket: String,
        /// The person key asked about.
        key: String,
        /// What the handler got back.
        result: Result<bool, String>,
    },
    /// `ctx.bucket_members(..)`.
    BucketMembers {
        /// The bucket.
        bucket: String,
        /// The page asked for.
        page: MemberPageRequest,
        /// What the handler got back.
        result: Result<MemberPage, String>,
    },
    /// `ctx.sleep_until(..)`.
    SleepUntil {
        /// The instant.
        at: TimestampMs,
        /// The label, if not empty.
        label: Option<String>,
    },
    /// `ctx.wait_for(..)` / `ctx.wait_for_where(..)`.
    WaitForEvent {
        /// The event name awaited.
        name: String,
        /// The filter's JSON, if any.
        filter: Option<Value>,
        /// The timeout.
        timeout: Duration,
        /// The event that came, or `None` on timeout.
        received: Option<Event>,
    },
    /// `ctx.checkpoint(..)`.
    Checkpoint(String),
    /// `ctx.count_events(..)`, `ctx.count_events_since(..)` and their `_of` forms: the event
    /// name and the answer.
    CountEvents {
        /// The event name.
        name: String,
        /// What the handler got back.
        count: u64,
    },
    /// `ctx.journey_history(..)`.
    JourneyHistory(String),
    /// `ctx.email_history(..)`.
    EmailHistory(String),
    /// `ctx.emit(..)` / `ctx.emit_for(..)`.
    Trigger {
        /// The event name.
        name: String,
        /// The other person's key, for `emit_for`.
        person_key: Option<String>,
        /// The event's properties.
        properties: Value,
        /// What the handler got back.
        result: Result<(), String>,
    },
    /// `ctx.update_contact(..)`.
    UpdateContact {
        /// The patch.
        properties: Value,
        /// What the handler got back.
        result: Result<(), String>,
    },
    /// A log line.
    Log {
        /// Its level.
        level: Level,
        /// Its text.
        message: String,
    },
}

/// A scripted host for native tests: a clock that sleeps advance, a random sequence, and
/// templates that can be made to fail.
#[derive(Debug, Clone)]
pub struct TestHost {
    start: TimestampMs,
    random: Vec<u64>,
    failing: HashMap<String, String>,
    buckets: HashMap<String, Vec<Member>>,
    /// The person's future events: (ms after the start, event).
    events: Vec<(TimestampMs, Event)>,
    unsubscribed: bool,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// Clock at 2023-11-14T22:13:20Z (1,700,000,000,000 ms); random values 0, 1, 2, …
    pub fn new() -> Self {
        Self {
            start: 1_700_000_000_000,
            random: Vec::new(),
            failing: HashMap::new(),
            buckets: HashMap::new(),
            events: Vec::new(),
            unsubscribed: false,
        }
    }

    /// The person does `event` this long after the run starts: a `ctx.wait_for` waiting then
    /// receives it (if it matches), and the clock moves to that moment.
    pub fn event_after(mut self, after: Duration, event: Event) -> Self {
        let after = i64::try_from(crate::duration::to_millis(after)).unwrap_or(i64::MAX);
        self.events.push((after, event));
        self.events.sort_by_key(|(at, _)| *at);
        self
    }

    /// The person has unsubscribed: `ctx.is_subscribed()` answers `false`. (The test host
    /// does not suppress emails; the real host records them as suppressed.)
    pub fn unsubscribed(mut self) -> Self {
        self.unsubscribed = true;
        self
    }

    /// Bucket `id` exists with these members, in this (paging) order. Buckets not stubbed
    /// are unknown: reading one fails as it would on the host.
    pub fn bucket(
        mut self,
        id: impl Into<String>,
        members: impl IntoIterator<Item = Member>,
    ) -> Self {
        self.buckets
            .insert(id.into(), members.into_iter().collect());
        self
    }

    /// Starts the clock at `ms`.
    pub fn starting_at(mut self, ms: TimestampMs) -> Self {
        self.start = ms;
        self
    }

    /// `ctx.random()` returns these values, in order, then continues counting from the last.
    pub fn random_values(mut self, values: impl IntoIterator<Item = u64>) -> Self {
        self.random = values.into_iter().collect();
        self
    }

    /// Sending with `template` fails with `reason`.
    pub fn failing_template(
        mut self,
        template: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        self.failing.insert(template.into(), reason.into());
        self
    }

    /// Runs journey `journey_id` of `module` for `person`, triggered by `trigger`.
    pub fn run(
        &self,
        module: &Module,
        journey_id: &str,
        person: Person,
        trigger: Event,
    ) -> TestRun {
        let state = Rc::new(RefCell::new(State::new(self)));
        let result = module.dispatch(
            journey_id.to_owned(),
            "test-run".to_owned(),
            person,
            trigger,
            Box::new(TestBackend(state.clone())),
        );
        let steps = std::mem::take(&mut state.borrow_mut().steps);
        TestRun { result, steps }
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> Box<dyn Backend> {
        Box::new(TestBackend(Rc::new(RefCell::new(State::new(self)))))
    }
}

/// What a [`TestHost::run`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRun {
    /// What the `run` export would return.
    pub result: Result<(), String>,
    /// Every host call, in order.
    pub steps: Vec<Step>,
}

impl TestRun {
    /// The templates of every email sent successfully, in order.
    pub fn emails(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::SendEmail {
                    template,
                    result: Ok(_),
                    ..
                } => Some(template.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The total time slept.
    pub fn slept(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Sleep { duration, .. } => *duration,
                _ => Duration::ZERO,
            })
            .sum()
    }
}

/// What `describe` returns for `module`, as JSON: `journeys`, `templates` and `buckets`, with
/// field names in camelCase, durations in milliseconds, each bucket's criteria as parsed JSON
/// (`criteria`, `null` for a manual bucket) and reactions' `on` as `{"enter": {..}}` or
/// `{"leave": {..}}`.
pub fn describe(module: &Module) -> Value {
    let manifest = module.manifest();
    let limit = |l: &wit::EntryLimit| match l {
        wit::EntryLimit::Once => json!("once"),
        wit::EntryLimit::OncePer(ms) => json!({"oncePer": ms}),
        wit::EntryLimit::Unlimited => json!("unlimited"),
    };
    let journeys: Vec<Value> = manifest
        .journeys
        .iter()
        .map(|j| {
            let condition = |text: &Option<String>| {
                text.as_deref().map_or(Value::Null, |t| {
                    serde_json::from_str(t).unwrap_or(Value::Null)
                })
            };
            let exit_on: Vec<Value> = j
                .exit_on
                .iter()
                .map(|rule| json!({"event": rule.event, "where": condition(&rule.where_)}))
                .collect();
            json!({"id": j.id, "name": j.name, "trigger": j.trigger,
                   "triggerWhere": condition(&j.trigger_where), "exitOn": exit_on,
                   "entryLimit": limit(&j.entry_limit), "enabled": j.enabled,
                   "suppressMs": j.suppress})
        })
        .collect();
    let templates: Vec<Value> = manifest
        .templates
        .iter()
        .map(|t| json!({"key": t.key, "subject": t.subject, "body": t.body, "html": t.html}))
        .collect();
    let buckets: Vec<Value> = manifest
        .buckets
        .iter()
        .map(|b| {
            let criteria = b
                .criteria_json
                .as_deref()
                .map(|text| serde_json::from_str(text).expect("the SDK writes valid JSON"))
                .unwrap_or(Value::Null);
            let reactions: Vec<Value> = b
                .reactions
                .iter()
                .map(|r| {
                    let on = match &r.on {
                        wit::ReactionOn::Enter(o) => {
                            json!({"enter": {"firstEntryOnly": o.first_entry_only}})
                        }
                        wit::ReactionOn::Leave(o) => json!({"leave": {"reasons": o.reasons}}),
                        wit::ReactionOn::Dwell(o) => {
                            json!({"dwell": {"afterMs": o.after_ms, "everyMs": o.every_ms}})
                        }
                    };
                    json!({"journeyId": r.journey_id, "handler": r.handler, "on": on})
                })
                .collect();
            json!({
                "id": b.id,
                "name": b.name,
                "description": b.description,
                "enabled": b.enabled,
                "kind": match b.kind {
                    wit::BucketKind::Computed => "computed",
                    wit::BucketKind::Manual => "manual",
                },
                "criteria": criteria,
                "timeBased": b.time_based,
                "fastExpiry": b.fast_expiry,
                "minDwellMs": b.min_dwell_ms,
                "maxDwellMs": b.max_dwell_ms,
                "entryLimit": limit(&b.entry_limit),
                "reactions": reactions,
            })
        })
        .collect();
    json!({"journeys": journeys, "templates": templates, "buckets": buckets})
}

struct State {
    start: TimestampMs,
    events: Vec<(TimestampMs, Event)>,
    clock: TimestampMs,
    random: VecDeque<u64>,
    next_random: u64,
    failing: HashMap<String, String>,
    buckets: HashMap<String, Vec<Member>>,
    unsubscribed: bool,
    sent: u64,
    steps: Vec<Step>,
}

impl State {
    fn members(&self, bucket: &str) -> Result<&[Member], String> {
        self.buckets
            .get(bucket)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("unknown bucket {bucket:?}"))
    }

    /// A page of stubbed members; the cursor is the position after the page.
    fn page(&self, bucket: &str, request: &MemberPageRequest) -> Result<MemberPage, String> {
        let members = self.members(bucket)?;
        let start = match request.cursor() {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| format!("{cursor:?} is not a cursor of this test host"))?,
        };
        let end = start
            .saturating_add(request.page_size() as usize)
            .min(members.len());
        let start = start.min(end);
        Ok(MemberPage {
            members: members[start..end].to_vec(),
            next_cursor: (end < members.len()).then(|| end.to_string()),
            total: members.len() as u64,
        })
    }
}

impl State {
    fn new(host: &TestHost) -> Self {
        Self {
            start: host.start,
            events: host.events.clone(),
            clock: host.start,
            random: host.random.iter().copied().collect(),
            next_random: 0,
            failing: host.failing.clone(),
            buckets: host.buckets.clone(),
            unsubscribed: host.unsubscribed,
            sent: 0,
            steps: Vec::new(),
        }
    }
}

/// Whether property conditions (the criteria JSON a wait's filter carries) hold for
/// `properties`, as the host decides it. Event conditions are refused, as on the host.
fn holds(condition: &Value, properties: &Map<String, Value>) -> Result<bool, String> {
    let all = |key: &str| -> Result<Vec<bool>, String> {
        condition[key]
            .as_array()
            .ok_or_else(|| format!("where-json: {key} is not a list"))?
            .iter()
            .map(|c| holds(c, properties))
            .collect()
    };
    match condition["type"].as_str() {
        Some("all") => Ok(all("conditions")?.into_iter().all(|b| b)),
        Some("any") => Ok(all("conditions")?.into_iter().any(|b| b)),
        Some("not") => Ok(!holds(&condition["condition"], properties)?),
        Some("property") => {
            let key = condition["property"].as_str().unwrap_or_default();
            let actual = properties.get(key).filter(|v| !v.is_null());
            let expected = &condition["value"];
            let number = |v: &Value| v.as_f64();
            let compare = |test: fn(f64, f64) -> bool| matches!((actual.and_then(number), number(expected)), (Some(a), Some(b)) if test(a, b));
            Ok(match condition["operator"].as_str() {
                Some("eq") => actual == Some(expected),
                Some("neq") => actual.is_some_and(|a| a != expected),
                Some("gt") => compare(|a, b| a > b),
                Some("gte") => compare(|a, b| a >= b),
                Some("lt") => compare(|a, b| a < b),
                Some("lte") => compare(|a, b| a <= b),
                Some("contains") => match (actual.and_then(Value::as_str), expected.as_str()) {
                    (Some(a), Some(b)) => a.contains(b),
                    _ => false,
                },
                Some("in") => expected
                    .as_array()
                    .is_some_and(|values| actual.is_some_and(|a| values.contains(a))),
                Some("exists") => actual.is_some(),
                Some("not_exists") => actual.is_none(),
                other => return Err(format!("where-json: unknown operator {other:?}")),
            })
        }
        _ => Err("where-json: a wait's where holds property conditions only".into()),
    }
}

struct TestBackend(Rc<RefCell<State>>);

impl TestBackend {
    /// The person's scripted `name` events that occurred at or after `from` and by now,
    /// recorded as a step.
    fn count_scripted(&self, name: &str, from: TimestampMs) -> u64 {
        let mut s = self.0.borrow_mut();
        let now = s.clock;
        let count = s
            .events
            .iter()
            .map(|(after, event)| (s.start.saturating_add(*after), event))
            .filter(|(at, event)| event.name() == name && *at <= now && *at >= from)
            .count() as u64;
        s.steps.push(Step::CountEvents {
            name: name.to_owned(),
            count,
        });
        count
    }
}

impl Backend for TestBackend {
    fn now(&self) -> TimestampMs {
        let mut s = self.0.borrow_mut();
        let now = s.clock;
        s.steps.push(Step::Now(now));
        now
    }

    fn random(&self) -> u64 {
        let mut s = self.0.borrow_mut();
        let value = match s.random.pop_front() {
            Some(v) => v,
            None => s.next_random,
        };
        s.next_random = value.wrapping_add(1);
        s.steps.push(Step::Random(value));
        value
    }

    fn sleep(&self, duration_ms: u64, label: Option<&str>) {
        let mut s = self.0.borrow_mut();
        s.clock = s
            .clock
            .saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX));
        s.steps.push(Step::Sleep {
            duration: millis(duration_ms),
            label: label.map(str::to_owned),
        });
    }

    fn sleep_until(&self, at: TimestampMs, label: Option<&str>) {
        let mut s = self.0.borrow_mut();
        s.clock = s.clock.max(at);
        s.steps.push(Step::SleepUntil {
            at,
            label: label.map(str::to_owned),
        });
    }

    fn wait_for_event(
        &self,
        name: &str,
        where_json: Option<&str>,
        timeout_ms: u64,
        _label: Option<&str>,
    ) -> Result<Option<Event>, String> {
        const MAX_WAIT_MS: u64 = 30 * 86_400_000;
        if name.trim().is_empty() {
            return Err("the event name is empty".into());
        }
        if timeout_ms > MAX_WAIT_MS {
            return Err(format!(
                "timeout of {timeout_ms} ms is over the 30 days a wait may last"
            ));
        }
        let filter: Option<Value> = where_json
            .map(|json| serde_json::from_str(json).map_err(|e| format!("where-json: {e}")))
            .transpose()?;
        let mut s = self.0.borrow_mut();
        let since = s.clock;
        let deadline = since.saturating_add(i64::try_from(timeout_ms).unwrap_or(i64::MAX));
        let mut received = None;
        for (after, event) in &s.events {
            let at = s.start.saturating_add(*after);
            if at <= since || at > deadline || event.name() != name {
                continue;
            }
            let matches = match &filter {
                None => true,
                Some(filter) => holds(filter, event.properties())?,
            };
            if matches {
                received = Some((at, event.clone()));
                break;
            }
        }
        s.clock = received.as_ref().map_or(deadline, |(at, _)| *at);
        let received = received.map(|(_, event)| event);
        s.steps.push(Step::WaitForEvent {
            name: name.to_owned(),
            filter,
            timeout: millis(timeout_ms),
            received: received.clone(),
        });
        Ok(received)
    }

    fn trigger(
        &self,
        name: &str,
        person_key: Option<&str>,
        properties_json: &str,
    ) -> Result<(), String> {
        let properties: Value = serde_json::from_str(properties_json).unwrap_or(Value::Null);
        let result = if name.trim().is_empty() {
            Err("the event name is empty".to_owned())
        } else if name.starts_with("bucket:") {
            Err(format!(
                "{name:?}: names starting with \"bucket:\" are reserved for bucket transitions"
            ))
        } else if !properties.is_object() {
            Err(format!(
                "properties must be a JSON object, got {properties_json:?}"
            ))
        } else {
            Ok(())
        };
        self.0.borrow_mut().steps.push(Step::Trigger {
            name: name.to_owned(),
            person_key: person_key.map(str::to_owned),
            properties,
            result: result.clone(),
        });
        result
    }

    fn update_contact(&self, properties_json: &str) -> Result<(), String> {
        let properties: Value = serde_json::from_str(properties_json).unwrap_or(Value::Null);
        let result = if properties.is_object() {
            Ok(())
        } else {
            Err(format!(
                "properties must be a JSON object, got {properties_json:?}"
            ))
        };
        self.0.borrow_mut().steps.push(Step::UpdateContact {
            properties,
            result: result.clone(),
        });
        result
    }

    fn history_event_count(
        &self,
        _person_key: Option<&str>,
        name: &str,
        within_ms: Option<u64>,
    ) -> Result<u64, String> {
        let now = self.0.borrow().clock;
        let from = within_ms.map_or(i64::MIN, |ms| {
            now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
        });
        Ok(self.count_scripted(name, from))
    }

    fn history_event_count_since(
        &self,
        _person_key: Option<&str>,
        name: &str,
        since: Option<TimestampMs>,
    ) -> Result<u64, String> {
        let from = since.unwrap_or(self.0.borrow().start);
        Ok(self.count_scripted(name, from))
    }

    fn history_journey(
        &self,
        _person_key: Option<&str>,
        journey: &str,
    ) -> Result<crate::history::JourneyHistory, String> {
        let mut s = self.0.borrow_mut();
        s.steps.push(Step::JourneyHistory(journey.to_owned()));
        Ok(crate::history::JourneyHistory::default())
    }

    fn history_email(
        &self,
        _to: Option<&str>,
        template: &str,
    ) -> Result<crate::history::EmailHistory, String> {
        let mut s = self.0.borrow_mut();
        let count = s
            .steps
            .iter()
            .filter(|step| matches!(step, Step::SendEmail { template: t, result: Ok(_), .. } if t == template))
            .count() as u64;
        s.steps.push(Step::EmailHistory(template.to_owned()));
        Ok(crate::history::EmailHistory {
            count,
            last_sent_at: None,
        })
    }

    fn checkpoint(&self, label: &str) {
        self.0
            .borrow_mut()
            .steps
            .push(Step::Checkpoint(label.to_owned()));
    }

    fn send_email(
        &self,
        template: &str,
        to: Option<&str>,
        vars_json: &str,
    ) -> Result<String, String> {
        let mut s = self.0.borrow_mut();
        let result = match s.failing.get(template) {
            Some(reason) => Err(reason.clone()),
            None => {
                s.sent += 1;
                Ok(format!("email-{}", s.sent))
            }
        };
        let vars = match serde_json::from_str(vars_json) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        s.steps.push(Step::SendEmail {
            template: template.to_owned(),
            to: to.map(str::to_owned),
            vars,
            result: result.clone(),
        });
        result
    }

    fn log(&self, level: Level, message: &str) {
        self.0.borrow_mut().steps.push(Step::Log {
            level,
            message: message.to_owned(),
        });
    }

    fn is_subscribed(&self) -> bool {
        let mut s = self.0.borrow_mut();
        let subscribed = !s.unsubscribed;
        s.steps.push(Step::IsSubscribed(subscribed));
        subscribed
    }

    fn bucket_count(&self, bucket: &str) -> Result<u64, String> {
        let mut s = self.0.borrow_mut();
        let result = s.members(bucket).map(|m| m.len() as u64);
        s.steps.push(Step::BucketCount {
            bucket: bucket.to_owned(),
            result: result.clone(),
        });
        result
    }

    fn bucket_has(&self, bucket: &str, person_key: &str) -> Result<bool, String> {
        let mut s = self.0.borrow_mut();
        let result = s
            .members(bucket)
            .map(|m| m.iter().any(|m| m.key == person_key));
        s.steps.push(Step::BucketHas {
            bucket: bucket.to_owned(),
            key: person_key.to_owned(),
            result: result.clone(),
        });
        result
    }

    fn bucket_members(&self, bucket: &str, page: &MemberPageRequest) -> Result<MemberPage, String> {
        let mut s = self.0.borrow_mut();
        let result = s.page(bucket, page);
        s.steps.push(Step::BucketMembers {
            bucket: bucket.to_owned(),
            page: page.clone(),
            result: result.clone(),
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn ab(ctx: &Ctx) -> JourneyResult {
        let id = ctx.send_email(email("welcome"))?;
        ctx.info(format!("sent {id}"));
        ctx.sleep(days(2), "wait 2 days");
        let variant = if ctx.random().is_multiple_of(2) {
            "a"
        } else {
            "b"
        };
        ctx.send_email(
            email(variant).var("plan", ctx.person().property_str("plan").unwrap_or("free")),
        )?;
        Ok(())
    }

    fn module() -> Module {
        Module::new().journey(journey("ab").on("user.signed_up"), ab)
    }

    fn alice() -> Person {
        Person::new("alice")
            .with_email("alice@example.com")
            .with_property("plan", "pro")
    }

    #[test]
    fn records_every_step_in_order() {
        let run = TestHost::new().starting_at(0).random_values([3]).run(
            &module(),
            "ab",
            alice(),
            Event::new("user.signed_up"),
        );
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["welcome", "b"]);
        assert_eq!(run.slept(), days(2));
        assert_eq!(
            run.steps[1],
            Step::Log {
                level: Level::Info,
                message: "sent email-1".into()
            }
        );
        match &run.steps[4] {
            Step::SendEmail { vars, .. } => assert_eq!(vars["plan"], json!("pro")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn is_subscribed_answers_what_the_test_host_was_told_and_is_recorded() {
        fn gated(ctx: &Ctx) -> JourneyResult {
            if ctx.is_subscribed() {
                ctx.send_email(email("news"))?;
            }
            Ok(())
        }
        let module = Module::new().journey(journey("gated").on("x"), gated);
        let subscribed = TestHost::new().run(&module, "gated", alice(), Event::new("x"));
        assert_eq!(subscribed.steps[0], Step::IsSubscribed(true));
        assert_eq!(subscribed.emails(), ["news"]);
        let unsubscribed =
            TestHost::new()
                .unsubscribed()
                .run(&module, "gated", alice(), Event::new("x"));
        assert_eq!(unsubscribed.steps, [Step::IsSubscribed(false)]);
    }

    #[test]
    fn failing_send_fails_the_run_with_the_reason() {
        let run = TestHost::new()
            .failing_template("welcome", "person has no email")
            .run(
                &module(),
                "ab",
                Person::new("bob"),
                Event::new("user.signed_up"),
            );
        assert_eq!(
            run.result,
            Err("sending email with template `welcome` failed: person has no email".into())
        );
        assert_eq!(run.steps.len(), 1);
    }

    #[test]
    fn given_stubbed_members_when_paged_then_every_member_comes_once_and_unknown_buckets_fail() {
        fn walk(ctx: &Ctx) -> JourneyResult {
            let mut request = MemberPageRequest::first().limit(2);
            let mut keys = Vec::new();
            loop {
                let page = ctx.bucket_members("vip", request.clone())?;
                assert_eq!(page.total, 5);
                keys.extend(page.members.iter().map(|m| m.key.clone()));
                match page.next(&request) {
                    Some(next) => request = next,
                    None => break,
                }
            }
            assert_eq!(keys, ["a", "b", "c", "d", "e"]);
            assert_eq!(ctx.bucket_count("vip")?, 5);
            assert!(ctx.bucket_has("vip", "c")?);
            assert!(!ctx.bucket_has("vip", "z")?);
            ctx.bucket_count("nope")?;
            Ok(())
        }
        let m = Module::new().journey(journey("w").on("x"), walk);
        let run = TestHost::new()
            .bucket("vip", ["a", "b", "c", "d", "e"].map(Member::new))
            .run(&m, "w", Person::new("p"), Event::new("x"));
        assert_eq!(
            run.result,
            Err("reading bucket `nope` failed: unknown bucket \"nope\"".into())
        );
        let pages = run
            .steps
            .iter()
            .filter(|s| matches!(s, Step::BucketMembers { .. }))
            .count();
        assert_eq!(pages, 3);
    }

    #[test]
    fn sleep_advances_the_clock_and_random_below_is_in_range() {
        fn clocked(ctx: &Ctx) -> JourneyResult {
            let before = ctx.now();
            ctx.sleep(hours(3), "");
            let after = ctx.now();
            assert_eq!(after - before, 3 * 3_600_000);
            for _ in 0..10 {
                assert!(ctx.random_below(3) < 3);
            }
            Ok(())
        }
        let m = Module::new().journey(journey("c").on("x"), clocked);
        let run = TestHost::new().random_values([u64::MAX, 0]).run(
            &m,
            "c",
            Person::new("p"),
            Event::new("x"),
        );
        assert_eq!(run.result, Ok(()));
        assert_eq!(
            run.steps[1],
            Step::Sleep {
                duration: hours(3),
                label: None
            }
        );
    }

    fn trial(ctx: &Ctx) -> JourneyResult {
        ctx.checkpoint("welcomed");
        match ctx.wait_for_where("order.paid", prop("total").gte(100), days(3)) {
            Some(order) => {
                ctx.send_email(email("thanks").var("total", order.property("total").cloned()))?
            }
            None => ctx.send_email(email("ending"))?,
        };
        Ok(())
    }

    #[test]
    fn a_wait_receives_the_first_matching_event_within_its_timeout_and_moves_the_clock() {
        // Given a small order after an hour and a big one after a day
        let host = TestHost::new()
            .starting_at(0)
            .event_after(
                hours(1),
                Event::new("order.paid").with_property("total", 20),
            )
            .event_after(
                days(1),
                Event::new("order.paid").with_property("total", 150),
            );
        let module = Module::new().journey(journey("trial").on("trial.started"), trial);

        // When the journey waits for an order of at least 100
        let run = host.run(
            &module,
            "trial",
            Person::new("p"),
            Event::new("trial.started"),
        );

        // Then it got the big one, a day in
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["thanks"]);
        assert_eq!(run.steps[0], Step::Checkpoint("welcomed".into()));
        match &run.steps[1] {
            Step::WaitForEvent {
                received: Some(order),
                timeout,
                ..
            } => {
                assert_eq!(order.property_i64("total"), Some(150));
                assert_eq!(*timeout, days(3));
            }
            other => panic!("expected a received wait, got {other:?}"),
        }
    }

    #[test]
    fn a_wait_with_no_matching_event_times_out_and_the_clock_moves_by_the_timeout() {
        // Given only an order after the timeout
        let host = TestHost::new().starting_at(0).event_after(
            days(4),
            Event::new("order.paid").with_property("total", 500),
        );
        fn patient(ctx: &Ctx) -> JourneyResult {
            let got = ctx.wait_for("order.paid", days(3));
            assert!(got.is_none());
            assert_eq!(ctx.now(), 3 * 86_400_000);
            ctx.sleep_until(4 * 86_400_000, "");
            assert_eq!(ctx.now(), 4 * 86_400_000);
            Ok(())
        }
        let module = Module::new().journey(journey("trial").on("trial.started"), patient);

        // When it runs, then the wait timed out at three days
        let run = host.run(
            &module,
            "trial",
            Person::new("p"),
            Event::new("trial.started"),
        );
        assert_eq!(run.result, Ok(()));
        assert!(matches!(
            &run.steps[0],
            Step::WaitForEvent { received: None, .. }
        ));
    }

    #[test]
    #[should_panic(expected = "over the 30 days a wait may last")]
    fn a_wait_longer_than_thirty_days_panics_naming_the_limit() {
        fn impatient(ctx: &Ctx) -> JourneyResult {
            ctx.wait_for("order.paid", days(31));
            Ok(())
        }
        let module = Module::new().journey(journey("w").on("x"), impatient);
        TestHost::new().run(&module, "w", Person::new("p"), Event::new("x"));
    }

    #[test]
    fn emitted_events_and_contact_updates_are_recorded_and_reserved_names_refused() {
        fn convert(ctx: &Ctx) -> JourneyResult {
            ctx.update_contact(json!({ "plan": "pro" }))?;
            ctx.emit("trial.converted", json!({ "plan": "pro" }))?;
            ctx.emit_for("owner-1", "teammate.converted", json!({}))?;
            let refused = ctx.emit("bucket:entered:vip", json!({})).unwrap_err();
            assert!(refused.reason().contains("reserved"), "{refused}");
            Ok(())
        }
        let module = Module::new().journey(journey("c").on("x"), convert);
        let run = TestHost::new().run(&module, "c", Person::new("p"), Event::new("x"));
        assert_eq!(run.result, Ok(()));
        assert_eq!(
            run.steps[0],
            Step::UpdateContact {
                properties: json!({ "plan": "pro" }),
                result: Ok(())
            }
        );
        assert!(matches!(
            &run.steps[2],
            Step::Trigger { name, person_key: Some(owner), result: Ok(()), .. }
                if name == "teammate.converted" && owner == "owner-1"
        ));
    }

    #[test]
    fn given_events_during_a_run_when_counted_since_an_instant_or_the_start_then_only_later_ones_count()
     {
        fn tally(ctx: &Ctx) -> JourneyResult {
            let at_start = ctx.now();
            ctx.sleep(days(2), "two days");
            let since_start = ctx.count_events_since_start("feature.used")?;
            let since_a_day = ctx.count_events_since("feature.used", at_start + 86_400_000)?;
            let of_other = ctx.count_events_of_since("u2", "feature.used", Some(at_start))?;
            ctx.send_email(
                email("tally")
                    .var("since_start", since_start)
                    .var("since_a_day", since_a_day)
                    .var("of_other", of_other),
            )?;
            Ok(())
        }
        let module = Module::new().journey(journey("t").on("x"), tally);
        let run = TestHost::new()
            .event_after(hours(1), Event::new("feature.used"))
            .event_after(hours(30), Event::new("feature.used"))
            .event_after(hours(30), Event::new("other"))
            .event_after(days(3), Event::new("feature.used"))
            .run(&module, "t", Person::new("p"), Event::new("x"));
        assert_eq!(run.result, Ok(()));
        let counts: Vec<u64> = run
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::CountEvents { count, .. } => Some(*count),
                _ => None,
            })
            .collect();
        // Two uses by the time the sleep ends (the third is still in the future), one of them
        // after the first day; the test host scripts one person, so `_of` sees the same.
        assert_eq!(counts, [2, 1, 2]);
    }
}
