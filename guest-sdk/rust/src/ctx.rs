//! The handler's view of a run: who it is for, what started it, and the journaled host calls.

use crate::duration::{Duration, to_millis};
use crate::email::{Email, EmailId, SendEmailError};
use crate::history::{EmailHistory, HistoryError, JourneyHistory};
use crate::members::{BucketReadError, MemberPage, MemberPageRequest};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch, on the host's clock.
pub type TimestampMs = i64;

/// Typed look-ups into a JSON property map, shared by [`Person`] and [`Event`].
macro_rules! property_helpers {
    () => {
        /// All properties, a JSON object.
        pub fn properties(&self) -> &Map<String, Value> {
            &self.properties
        }

        /// One property, if set.
        pub fn property(&self, key: &str) -> Option<&Value> {
            self.properties.get(key)
        }

        /// A string property (`None` if missing or not a string).
        pub fn property_str(&self, key: &str) -> Option<&str> {
            self.property(key).and_then(Value::as_str)
        }

        /// An integer property (`None` if missing or not an integer that fits `i64`).
        pub fn property_i64(&self, key: &str) -> Option<i64> {
            self.property(key).and_then(Value::as_i64)
        }

        /// A numeric property as `f64` (`None` if missing or not a number).
        pub fn property_f64(&self, key: &str) -> Option<f64> {
            self.property(key).and_then(Value::as_f64)
        }

        /// A boolean property (`None` if missing or not a bool).
        pub fn property_bool(&self, key: &str) -> Option<bool> {
            self.property(key).and_then(Value::as_bool)
        }

        /// Sets a property (for building test inputs; the host never sees this change).
        pub fn with_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
            self.properties.insert(key.into(), value.into());
            self
        }
    };
}

/// The person a run is for, as they were when the run started.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    key: String,
    email: Option<String>,
    properties: Map<String, Value>,
}

impl Person {
    /// A person with this key, no email and no properties (handy in tests).
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            email: None,
            properties: Map::new(),
        }
    }

    /// Sets the email (for building test inputs).
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// The contact's resolved key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The contact's email, if known.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    property_helpers!();
}

/// An event: the one that triggered the run, or one a wait received.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    name: String,
    occurred_at: TimestampMs,
    properties: Map<String, Value>,
}

impl Event {
    /// An event with this name, occurring at time 0, with no properties (handy in tests).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            occurred_at: 0,
            properties: Map::new(),
        }
    }

    /// Sets when the event occurred (for building test inputs).
    pub fn at(mut self, occurred_at: TimestampMs) -> Self {
        self.occurred_at = occurred_at;
        self
    }

    /// The event name, e.g. `"user.signed_up"`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it occurred, in ms since the Unix epoch.
    pub fn occurred_at(&self) -> TimestampMs {
        self.occurred_at
    }

    property_helpers!();
}

/// A [`Ctx::emit`] or [`Ctx::update_contact`] the host refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectError {
    call: &'static str,
    reason: String,
}

impl EffectError {
    pub(crate) fn new(call: &'static str, reason: String) -> Self {
        Self { call, reason }
    }

    /// Why the host refused it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for EffectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} was refused: {}", self.call, self.reason)
    }
}

impl std::error::Error for EffectError {}

/// Log levels for [`Ctx::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very fine-grained detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd that did not stop the run.
    Warn,
    /// Something failed.
    Error,
}

/// The host calls a context makes. The real one is the WIT `context` interface; tests use
/// [`crate::testing::TestHost`].
pub(crate) trait Backend {
    fn now(&self) -> TimestampMs;
    fn random(&self) -> u64;
    fn sleep(&self, duration_ms: u64, label: Option<&str>);
    fn sleep_until(&self, at: TimestampMs, label: Option<&str>);
    fn wait_for_event(
        &self,
        name: &str,
        where_json: Option<&str>,
        timeout_ms: u64,
        label: Option<&str>,
    ) -> Result<Option<Event>, String>;
    fn checkpoint(&self, label: &str);
    fn trigger(
        &self,
        name: &str,
        person_key: Option<&str>,
        properties_json: &str,
    ) -> Result<(), String>;
    fn update_contact(&self, properties_json: &str) -> Result<(), String>;
    fn history_event_count(
        &self,
        person_key: Option<&str>,
        name: &str,
        within_ms: Option<u64>,
    ) -> Result<u64, String>;
    /// Events that occurred at or after `since`; `None`: since the run started.
    fn history_event_count_since(
        &self,
        person_key: Option<&str>,
        name: &str,
        since: Option<TimestampMs>,
    ) -> Result<u64, String>;
    fn history_journey(
        &self,
        person_key: Option<&str>,
        journey: &str,
    ) -> Result<crate::history::JourneyHistory, String>;
    fn history_email(
        &self,
        to: Option<&str>,
        template: &str,
    ) -> Result<crate::history::EmailHistory, String>;
    fn send_email(
        &self,
        template: &str,
        to: Option<&str>,
        vars_json: &str,
    ) -> Result<String, String>;
    fn log(&self, level: Level, message: &str);
    fn is_subscribed(&self) -> bool;
    fn bucket_count(&self, bucket: &str) -> Result<u64, String>;
    fn bucket_has(&self, bucket: &str, person_key: &str) -> Result<bool, String>;
    fn bucket_members(&self, bucket: &str, page: &MemberPageRequest) -> Result<MemberPage, String>;
}

/// The handler's context: the run's inputs and the durable host calls.
///
/// Every call except logging is **journaled**: the first time a run reaches it the host does it
/// and records the result; when the run is activated again (after a sleep or a restart) the
/// handler runs from the top and each recorded call returns its recorded result without doing
/// anything. So a handler must be straight-line code that only learns about the world through
/// this context — `ctx.now()` instead of a clock, `ctx.random()` instead of a RNG.
pub struct Ctx {
    journey: String,
    run_id: String,
    person: Person,
    trigger: Event,
    backend: Box<dyn Backend>,
}

impl Ctx {
    pub(crate) fn new(
        journey: String,
        run_id: String,
        person: Person,
        trigger: Event,
        backend: Box<dyn Backend>,
    ) -> Self {
        Self {
            journey,
            run_id,
            person,
            trigger,
            backend,
        }
    }

    /// The person this run is for.
    pub fn person(&self) -> &Person {
        &self.person
    }

    /// The event that started this run.
    pub fn trigger(&self) -> &Event {
        &self.trigger
    }

    /// This run's id (stable across activations).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The id of the journey being run.
    pub fn journey_id(&self) -> &str {
        &self.journey
    }

    /// The host clock, in ms since the Unix epoch. Journaled: a replay sees the same value.
    pub fn now(&self) -> TimestampMs {
        self.backend.now()
    }

    /// A uniformly random `u64`. Journaled: a replay sees the same value.
    pub fn random(&self) -> u64 {
        self.backend.random()
    }

    /// A random number in `0..n` (`n` must be non-zero). One journaled [`Ctx::random`] call.
    pub fn random_below(&self, n: u64) -> u64 {
        assert!(n > 0, "random_below(0)");
        // Widening multiply: unbiased enough for A/B splits, no rejection loop (one journal step).
        ((u128::from(self.random()) * u128::from(n)) >> 64) as u64
    }

    /// Durable sleep: the run stops here and continues `duration` later (possibly on another
    /// host process, after a restart). `label` names the step in the run's timeline; pass `""`
    /// for none.
    pub fn sleep(&self, duration: Duration, label: &str) {
        let label = (!label.is_empty()).then_some(label);
        self.backend.sleep(to_millis(duration), label);
    }

    /// Durable sleep until `at` (ms since the Unix epoch, host clock); an instant already past
    /// returns at once. `label` names the step in the run's timeline; pass `""` for none.
    pub fn sleep_until(&self, at: TimestampMs, label: &str) {
        let label = (!label.is_empty()).then_some(label);
        self.backend.sleep_until(at, label);
    }

    /// Waits for this person's next `name` event — one received after the wait began, never
    /// the run's trigger — for at most `timeout`. Returns the event, or `None` when the time
    /// ran out. The run is parked meanwhile (no host resources held) and wakes as soon as the
    /// event is ingested:
    ///
    /// ```no_run
    /// # use waymark_guest::prelude::*;
    /// # fn trial(ctx: &Ctx) -> JourneyResult {
    /// match ctx.wait_for("order.paid", days(3)) {
    ///     Some(order) => ctx.send_email(email("trial-thanks").var("total", order.property("total").cloned()))?,
    ///     None => ctx.send_email(email("trial-ending"))?,
    /// };
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    /// If `timeout` is over 30 days or `name` is empty (the run fails with the reason).
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Option<Event> {
        self.wait(name, None, timeout)
    }

    /// Like [`Ctx::wait_for`], for an event whose properties satisfy `filter`: property
    /// conditions built with [`prop`](crate::prop), [`all`](crate::all), [`any`](crate::any)
    /// and [`not`](crate::not), tested against the event's own properties
    /// (`ctx.wait_for_where("order.paid", prop("total").gte(100), days(3))`). Events that do
    /// not match are skipped; the wait goes on.
    ///
    /// # Panics
    /// As [`Ctx::wait_for`], and if `filter` holds an event condition.
    pub fn wait_for_where(
        &self,
        name: &str,
        filter: crate::criteria::Criteria,
        timeout: Duration,
    ) -> Option<Event> {
        self.wait(name, Some(&filter.to_json_string()), timeout)
    }

    fn wait(&self, name: &str, where_json: Option<&str>, timeout: Duration) -> Option<Event> {
        match self
            .backend
            .wait_for_event(name, where_json, to_millis(timeout), None)
        {
            Ok(event) => event,
            Err(reason) => panic!("wait_for({name:?}): {reason}"),
        }
    }

    /// Ingests an event named `name` with `properties` (a JSON object) for this run's person,
    /// exactly once: after this step commits, through the same ingest as any event — so it can
    /// start journeys, end other runs' waits and move buckets
    /// (`ctx.emit("trial.converted", json!({"plan": "pro"}))`; the host call is `trigger`).
    /// Fails for an empty name, a name in the reserved `bucket:` namespace, or properties that
    /// are not an object.
    pub fn emit(&self, name: &str, properties: Value) -> Result<(), EffectError> {
        self.backend
            .trigger(name, None, &properties.to_string())
            .map_err(|reason| EffectError::new("emit", reason))
    }

    /// Like [`Ctx::emit`], for another person: `person_key` is their resolved key or user id
    /// (an unknown user id creates them).
    pub fn emit_for(
        &self,
        person_key: &str,
        name: &str,
        properties: Value,
    ) -> Result<(), EffectError> {
        self.backend
            .trigger(name, Some(person_key), &properties.to_string())
            .map_err(|reason| EffectError::new("emit", reason))
    }

    /// Merges `properties` (a JSON object; a `null` value removes the key) into this person's
    /// contact, exactly once, after this step commits. What this run's [`Ctx::person`] shows
    /// does not change: it is the person as the run started.
    pub fn update_contact(&self, properties: Value) -> Result<(), EffectError> {
        self.backend
            .update_contact(&properties.to_string())
            .map_err(|reason| EffectError::new("update_contact", reason))
    }

    /// How many `name` events this person has: all of them, or only those that occurred
    /// within `within` of now. Journaled.
    pub fn count_events(&self, name: &str, within: Option<Duration>) -> Result<u64, HistoryError> {
        self.backend
            .history_event_count(None, name, within.map(to_millis))
            .map_err(|reason| HistoryError::new("count_events", reason))
    }

    /// Like [`Ctx::count_events`], for another person (their resolved key or user id).
    pub fn count_events_of(
        &self,
        person_key: &str,
        name: &str,
        within: Option<Duration>,
    ) -> Result<u64, HistoryError> {
        self.backend
            .history_event_count(Some(person_key), name, within.map(to_millis))
            .map_err(|reason| HistoryError::new("count_events_of", reason))
    }

    /// How many `name` events this person has that occurred at or after the instant `since`
    /// (inclusive; milliseconds on the host clock, e.g. from [`Ctx::now`] or an event's
    /// [`Event::occurred_at`]). Journaled.
    ///
    /// ```
    /// use waymark_guest::prelude::*;
    /// fn nudge(ctx: &Ctx) -> JourneyResult {
    ///     let asked_at = ctx.now();
    ///     ctx.sleep(days(3), "give them time");
    ///     if ctx.count_events_since("feature.used", asked_at)? == 0 {
    ///         ctx.send_email(email("try-it"))?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn count_events_since(&self, name: &str, since: TimestampMs) -> Result<u64, HistoryError> {
        self.backend
            .history_event_count_since(None, name, Some(since))
            .map_err(|reason| HistoryError::new("count_events_since", reason))
    }

    /// How many `name` events this person has had since this run started (at or after the
    /// instant the host started it; the trigger itself counts when it is such an event).
    /// Journaled.
    pub fn count_events_since_start(&self, name: &str) -> Result<u64, HistoryError> {
        self.backend
            .history_event_count_since(None, name, None)
            .map_err(|reason| HistoryError::new("count_events_since_start", reason))
    }

    /// Like [`Ctx::count_events_since`], for another person (their resolved key or user id);
    /// `since` `None` counts from the start of this run.
    pub fn count_events_of_since(
        &self,
        person_key: &str,
        name: &str,
        since: Option<TimestampMs>,
    ) -> Result<u64, HistoryError> {
        self.backend
            .history_event_count_since(Some(person_key), name, since)
            .map_err(|reason| HistoryError::new("count_events_of_since", reason))
    }

    /// This person's runs of `journey` (this run included when it is that journey). Journaled.
    pub fn journey_history(&self, journey: &str) -> Result<JourneyHistory, HistoryError> {
        self.backend
            .history_journey(None, journey)
            .map_err(|reason| HistoryError::new("journey_history", reason))
    }

    /// The emails of `template` to this person's address, any status. Journaled. Fails when
    /// the person has no address.
    pub fn email_history(&self, template: &str) -> Result<EmailHistory, HistoryError> {
        self.backend
            .history_email(None, template)
            .map_err(|reason| HistoryError::new("email_history", reason))
    }

    /// Marks where the run is: the run's `currentStep` until the next checkpoint, sleep or
    /// wait, and a line in its timeline. Journaled; does not wait.
    pub fn checkpoint(&self, label: &str) {
        self.backend.checkpoint(label);
    }

    /// Renders a template and queues the email for delivery, exactly once for this run step.
    /// The recipient is the person's email unless the email says otherwise.
    pub fn send_email(&self, email: Email) -> Result<EmailId, SendEmailError> {
        let vars_json = email.vars_json();
        self.backend
            .send_email(email.template(), email.recipient(), &vars_json)
            .map(EmailId)
            .map_err(|reason| SendEmailError::new(email.template(), reason))
    }

    /// Whether this run's person still accepts email: they have not unsubscribed (through an
    /// email's unsubscribe link), neither as a person nor at their address. Journaled: a
    /// replay sees what the first run saw, so ask again after a long sleep. Emails to someone
    /// unsubscribed are suppressed by the host anyway; this lets a journey take another path.
    pub fn is_subscribed(&self) -> bool {
        self.backend.is_subscribed()
    }

    /// How many current members `bucket` (declared by any module of the tenant) has; deleted
    /// contacts never count. Journaled: a replay sees the count the first run saw, however
    /// the bucket changed since. Fails for an unknown bucket.
    pub fn bucket_count(&self, bucket: &str) -> Result<u64, BucketReadError> {
        self.backend
            .bucket_count(bucket)
            .map_err(|reason| BucketReadError::new(bucket, reason))
    }

    /// Whether the person `person_key` designates (their key, or a key they had before) is a
    /// current member of `bucket`. Journaled. Fails for an unknown bucket.
    pub fn bucket_has(&self, bucket: &str, person_key: &str) -> Result<bool, BucketReadError> {
        self.backend
            .bucket_has(bucket, person_key)
            .map_err(|reason| BucketReadError::new(bucket, reason))
    }

    /// One page of `bucket`'s current members; walk on with [`MemberPage::next`]. Each page
    /// is one journaled call. Fails for an unknown bucket.
    pub fn bucket_members(
        &self,
        bucket: &str,
        page: MemberPageRequest,
    ) -> Result<MemberPage, BucketReadError> {
        self.backend
            .bucket_members(bucket, &page)
            .map_err(|reason| BucketReadError::new(bucket, reason))
    }

    /// Writes a line to the host's log (not journaled; silent while the run replays).
    pub fn log(&self, level: Level, message: impl AsRef<str>) {
        self.backend.log(level, message.as_ref());
    }

    /// Logs at [`Level::Trace`].
    pub fn trace(&self, message: impl AsRef<str>) {
        self.log(Level::Trace, message);
    }

    /// Logs at [`Level::Debug`].
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(Level::Debug, message);
    }

    /// Logs at [`Level::Info`].
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(Level::Info, message);
    }

    /// Logs at [`Level::Warn`].
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(Level::Warn, message);
    }

    /// Logs at [`Level::Error`].
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(Level::Error, message);
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("journey", &self.journey)
            .field("run_id", &self.run_id)
            .field("person", &self.person)
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

/// Parses a `properties-json` field: a JSON object (empty text or `null` count as empty).
pub(crate) fn parse_properties(what: &str, json: &str) -> Result<Map<String, Value>, String> {
    if json.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(format!(
            "{what} must be a JSON object, got {}",
            json_kind(&other)
        )),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Person {
    pub(crate) fn from_parts(
        key: String,
        email: Option<String>,
        properties_json: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            key,
            email,
            properties: parse_properties("person properties", properties_json)?,
        })
    }
}

impl Event {
    pub(crate) fn from_parts(
        name: String,
        occurred_at: TimestampMs,
        properties_json: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            name,
            occurred_at,
            properties: parse_properties("trigger properties", properties_json)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_helpers_are_typed() {
        let p = Person::from_parts(
            "u1".into(),
            Some("a@example.com".into()),
            r#"{"plan":"pro","seats":3,"ratio":0.5,"beta":true}"#,
        )
        .unwrap();
        assert_eq!(p.key(), "u1");
        assert_eq!(p.email(), Some("a@example.com"));
        assert_eq!(p.property_str("plan"), Some("pro"));
        assert_eq!(p.property_str("seats"), None);
        assert_eq!(p.property_i64("seats"), Some(3));
        assert_eq!(p.property_f64("ratio"), Some(0.5));
        assert_eq!(p.property_bool("beta"), Some(true));
        assert_eq!(p.property("missing"), None);
        assert_eq!(p.properties().len(), 4);
    }

    #[test]
    fn properties_must_be_an_object() {
        assert!(parse_properties("x", "").unwrap().is_empty());
        assert!(parse_properties("x", "null").unwrap().is_empty());
        assert_eq!(
            parse_properties("person properties", "[1]").unwrap_err(),
            "person properties must be a JSON object, got an array"
        );
        assert!(
            parse_properties("trigger properties", "{")
                .unwrap_err()
                .starts_with("trigger properties is not valid JSON")
        );
    }

    #[test]
    fn test_builders() {
        let e = Event::new("user.signed_up")
            .at(42)
            .with_property("source", "ads");
        assert_eq!(e.name(), "user.signed_up");
        assert_eq!(e.occurred_at(), 42);
        assert_eq!(e.property("source"), Some(&json!("ads")));
    }
}
