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
            unsubscribed: false,
        }
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
            json!({"id": j.id, "name": j.name, "trigger": j.trigger,
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

struct TestBackend(Rc<RefCell<State>>);

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
}
