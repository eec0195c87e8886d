//! The guest boundary: the state one activation's [`wasmtime::Store`] holds and the `context`
//! imports the guest calls. Every import except `log` goes through the run's journal: a step
//! already recorded answers from it; a new step is performed (in memory only: effects are
//! buffered for the executor to commit) and recorded. WASI clocks and random are routed through
//! the same journal, so a guest has no ambient non-determinism.

use super::activation::{ActivationJournal, Lookup, RunScope, SharedJournal, lock};
use super::bindings::types::{
    BucketMember, Email, EmailHistory, Event, JourneyHistory, LogLevel, MemberPage,
    MemberPageRequest,
};
use super::bindings::{ContextHost, types};
use super::events::ReceivedSpan;
use super::members::{BucketReader, MemberRead, MemberReadError};
use super::send::{PrepareError, prepare_email};
use crate::buckets::Condition;
use crate::clock::Timestamp;
use crate::journeys::journal::StepKind;
use crate::store::{Effect, EventRecord, EventWait};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest accepted string argument (template vars, log lines) from a guest.
pub const MAX_IMPORT_PAYLOAD: usize = 64 * 1024;
/// Guest stderr kept to explain a trap (a Rust panic message lands there).
const STDERR_CAPACITY: usize = 16 * 1024;
/// Most log lines one activation writes to the host's log, and most bytes: a guest that logs
/// in a loop cannot fill the host's disk inside its CPU budget. Past either, lines are
/// dropped and one line says how many.
const MAX_LOG_LINES: u32 = 200;
const MAX_LOG_BYTES: usize = 64 * 1024;
/// Longest log line kept; the rest of a line is cut.
const MAX_LOG_LINE: usize = 4096;

/// Ends the guest call: the run must wait until `wake_at` (or, in `wait-for-event`, until its
/// person gets the awaited event). Not a failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("run suspended until {wake_at}")]
pub struct Suspend {
    pub wake_at: Timestamp,
    pub wait: Option<EventWait>,
}

/// The longest sleep: ten years. Past that a wake time means a bug (a sleep of `u64::MAX`),
/// not a journey.
pub const MAX_SLEEP: Duration = Duration::from_secs(10 * YEAR_SECS);
/// A year as humantime reads and writes one (365.25 days), so the maximum reads "10years".
const YEAR_SECS: u64 = 31_557_600;

/// The longest `wait-for-event` timeout: 30 days.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// An import was called with something the host refuses (too large, malformed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GuestFault(pub String);

/// An import could not be answered because a host service (the database) failed. Ends the
/// activation as a host-side error (retried later), not as a failure of the run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HostUnavailable(pub String);

/// Limits enforced on the store while the guest runs.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} MiB exceeded",
                self.max_bytes >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one activation's store: WASI (virtualised), limits, journal and run scope.
pub struct ActivationState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    pub journal: SharedJournal,
    pub stderr: MemoryOutputPipe,
    scope: Option<RunScope>,
    /// What this activation may still write to the host's log.
    log_lines_left: u32,
    log_bytes_left: usize,
}

impl WasiView for ActivationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ActivationState {
    /// State for a run's activation (`scope` set) or for `describe` (no journal steps allowed).
    pub fn new(
        journal: SharedJournal,
        scope: Option<RunScope>,
        memory_cap: usize,
        seed: u128,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(JournaledClock(journal.clone()))
            .monotonic_clock(JournaledClock(journal.clone()))
            .secure_random(JournaledRandom(journal.clone()))
            .insecure_random(JournaledRandom(journal.clone()))
            .insecure_random_seed(seed)
            // No network: the defaults deny it already; say so explicitly.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: memory_cap,
                exceeded: false,
            },
            journal,
            stderr,
            scope,
            log_lines_left: MAX_LOG_LINES,
            log_bytes_left: MAX_LOG_BYTES,
        }
    }

    fn buckets(&self, import: &str) -> wasmtime::Result<Arc<dyn BucketReader>> {
        Ok(self.scope(import)?.buckets.clone())
    }

    fn scope(&self, import: &str) -> wasmtime::Result<&RunScope> {
        self.scope.as_ref().ok_or_else(|| {
            wasmtime::Error::new(GuestFault(format!(
                "`{import}` may only be called while a journey runs, not from describe"
            )))
        })
    }

    fn step(
        &mut self,
        import: &str,
        kind: StepKind,
        request: Value,
        perform: impl FnOnce(&mut ActivationJournal, u32) -> Value,
    ) -> wasmtime::Result<Value> {
        self.scope(import)?;
        lock(&self.journal)
            .journaled(kind, request, perform)
            .map_err(wasmtime::Error::new)
    }
}

impl ActivationState {
    /// Return once the clock has reached `wake_at`; before that (the step was just recorded,
    /// or the run was woken early) end the activation until then.
    fn sleep_over(&self, wake_at: Timestamp) -> wasmtime::Result<()> {
        if lock(&self.journal).clock.now() >= wake_at {
            Ok(())
        } else {
            Err(wasmtime::Error::new(Suspend {
                wake_at,
                wait: None,
            }))
        }
    }
}

/// Check a `wait-for-event` call's arguments: a name, a timeout within [`MAX_WAIT`], and a
/// `where` of property conditions only (it is tested against the event's properties).
fn wait_filter(
    name: &str,
    where_json: Option<&str>,
    timeout: u64,
) -> Result<Option<Condition>, String> {
    if name.trim().is_empty() {
        return Err("the event name is empty".into());
    }
    if Duration::from_millis(timeout) > MAX_WAIT {
        return Err(format!(
            "timeout of {} is over the {} a wait may last",
            humantime::format_duration(Duration::from_millis(timeout)),
            humantime::format_duration(MAX_WAIT)
        ));
    }
    let Some(json) = where_json.filter(|j| !j.trim().is_empty()) else {
        return Ok(None);
    };
    let condition = Condition::from_json_str(json).map_err(|e| format!("where-json: {e}"))?;
    if condition
        .leaves()
        .any(|leaf| matches!(leaf, Condition::Event(_)))
    {
        return Err(
            "where-json: a wait's where holds property conditions only (on the event's \
             properties), not event conditions"
                .into(),
        );
    }
    Ok(Some(condition))
}

/// A journaled optional number: `null` is `Some(None)`, a non-number is `None` (malformed).
fn optional_i64(value: &Value) -> Option<Option<i64>> {
    match value {
        Value::Null => Some(None),
        other => other.as_i64().map(Some),
    }
}

/// The properties of a `trigger` or `update-contact`: a JSON object (empty text: none).
fn effect_properties(json: &str) -> Result<serde_json::Map<String, Value>, String> {
    if json.trim().is_empty() {
        return Ok(Default::default());
    }
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("properties must be a JSON object, got {json:?}")),
    }
}

/// An event as the journal records a resolved wait.
fn event_to_json(event: &EventRecord) -> Value {
    json!({
        "id": event.id,
        "name": event.name,
        "occurredAt": event.occurred_at.0,
        "receivedAt": event.received_at.0,
        "properties": event.properties,
    })
}

/// A journaled event, back in WIT form.
fn event_from_json(value: &Value) -> Option<Event> {
    Some(Event {
        name: value["name"].as_str()?.to_owned(),
        occurred_at: value["occurredAt"].as_i64()?,
        properties_json: Value::Object(value["properties"].as_object()?.clone()).to_string(),
    })
}

/// A sleep within [`MAX_SLEEP`], or the run fails naming the maximum.
fn check_sleep(duration: Duration) -> wasmtime::Result<()> {
    if duration > MAX_SLEEP {
        return Err(wasmtime::Error::new(GuestFault(format!(
            "a sleep of {} is longer than the maximum of {}",
            humantime::format_duration(duration),
            humantime::format_duration(MAX_SLEEP)
        ))));
    }
    Ok(())
}

pub(super) fn check_payload(what: &str, text: &str) -> wasmtime::Result<()> {
    if text.len() > MAX_IMPORT_PAYLOAD {
        return Err(wasmtime::Error::new(GuestFault(format!(
            "{what} is {} bytes, over the {MAX_IMPORT_PAYLOAD}-byte limit",
            text.len()
        ))));
    }
    Ok(())
}

fn fault(message: String) -> wasmtime::Error {
    wasmtime::Error::new(GuestFault(message))
}

impl ActivationState {
    /// A journaled read of the store (bucket membership, subscription): answered from the
    /// journal when recorded (`read` is dropped unawaited); otherwise `read` is awaited,
    /// without holding the journal, and its answer recorded as `{"ok": …}`, or `{"error": …}`
    /// for what the guest is refused. A host failure records nothing and ends the activation
    /// ([`HostUnavailable`]).
    async fn journaled_read<Fut>(
        &mut self,
        import: &str,
        kind: StepKind,
        request: Value,
        read: Fut,
    ) -> wasmtime::Result<Result<Value, String>>
    where
        Fut: Future<Output = MemberRead<Value>> + Send,
    {
        self.scope(import)?;
        let looked_up = lock(&self.journal)
            .lookup(kind, &request)
            .map_err(wasmtime::Error::new)?;
        let response = match looked_up {
            Lookup::Recorded(response) => response,
            Lookup::Frontier { .. } => {
                let response = match read.await {
                    Ok(value) => json!({ "ok": value }),
                    Err(MemberReadError::Refused(message)) => json!({ "error": message }),
                    Err(MemberReadError::Unavailable(message)) => {
                        return Err(wasmtime::Error::new(HostUnavailable(format!(
                            "`{import}` could not be answered: {message}"
                        ))));
                    }
                };
                lock(&self.journal).record(kind, request, response.clone());
                response
            }
        };
        match (
            response.get("ok"),
            response.get("error").and_then(Value::as_str),
        ) {
            (_, Some(message)) => Ok(Err(message.to_owned())),
            (Some(ok), _) => Ok(Ok(ok.clone())),
            _ => Err(fault(format!(
                "journaled `{import}` has no outcome: {response}"
            ))),
        }
    }
}

/// A journaled read's answer for the guest: its error as recorded, or the value `decode` reads
/// (a value it cannot read is a corrupt journal).
fn decode<T>(
    import: &str,
    answer: Result<Value, String>,
    decode: impl FnOnce(&Value) -> Option<T>,
) -> wasmtime::Result<Result<T, String>> {
    match answer {
        Err(message) => Ok(Err(message)),
        Ok(value) => decode(&value)
            .map(Ok)
            .ok_or_else(|| fault(format!("journaled `{import}` answer is malformed: {value}"))),
    }
}

/// A member page as the journal records it.
fn page_to_json(page: crate::store::MemberPage) -> Value {
    let members: Vec<Value> = page
        .members
        .into_iter()
        .map(|m| {
            json!({
                "key": m.contact_key,
                "email": m.email,
                "enteredAt": m.entered_at.0,
                "entryCount": m.entry_count,
            })
        })
        .collect();
    json!({ "members": members, "nextCursor": page.next_cursor, "total": page.total })
}

/// A journaled member page, back in WIT form.
fn page_from_json(value: &Value) -> Option<MemberPage> {
    let members = value["members"]
        .as_array()?
        .iter()
        .map(|m| {
            Some(BucketMember {
                key: m["key"].as_str()?.to_owned(),
                email: match &m["email"] {
                    Value::Null => None,
                    email => Some(email.as_str()?.to_owned()),
                },
                entered_at: m["enteredAt"].as_i64()?,
                entry_count: u32::try_from(m["entryCount"].as_u64()?).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let next_cursor = match &value["nextCursor"] {
        Value::Null => None,
        cursor => Some(cursor.as_str()?.to_owned()),
    };
    Some(MemberPage {
        members,
        next_cursor,
        total: value["total"].as_u64()?,
    })
}

impl types::Host for ActivationState {}

impl ContextHost for ActivationState {
    fn now(&mut self) -> wasmtime::Result<i64> {
        let value = self.step("now", StepKind::Now, Value::Null, |j, _| {
            json!(j.clock.now().0)
        })?;
        value
            .as_i64()
            .ok_or_else(|| fault(format!("journaled `now` is not a number: {value}")))
    }

    fn random(&mut self) -> wasmtime::Result<u64> {
        let value = self.step("random", StepKind::Random, Value::Null, |_, _| {
            json!(rand::random::<u64>())
        })?;
        value
            .as_u64()
            .ok_or_else(|| fault(format!("journaled `random` is not a number: {value}")))
    }

    fn sleep(&mut self, duration: u64, label: Option<String>) -> wasmtime::Result<()> {
        check_sleep(Duration::from_millis(duration))?;
        let label = label.unwrap_or_else(|| {
            format!(
                "sleep {}",
                humantime::format_duration(Duration::from_millis(duration))
            )
        });
        check_payload("the sleep label", &label)?;
        let request = json!({ "durationMs": duration, "label": label });
        let value = self.step("sleep", StepKind::Sleep, request, |j, _| {
            json!({ "wakeAt": j.clock.now().saturating_add(Duration::from_millis(duration)).0 })
        })?;
        let wake_at = value["wakeAt"]
            .as_i64()
            .map(Timestamp)
            .ok_or_else(|| fault(format!("journaled sleep has no wake time: {value}")))?;
        // Past the wake time the sleep is over and the handler continues; otherwise (the step
        // was just recorded, or the run was woken early) the activation ends here.
        self.sleep_over(wake_at)
    }

    fn sleep_until(&mut self, at: i64, label: Option<String>) -> wasmtime::Result<()> {
        let now = lock(&self.journal).clock.now();
        check_sleep(Duration::from_millis(
            u64::try_from(at.saturating_sub(now.0)).unwrap_or(0),
        ))?;
        let label = label.unwrap_or_else(|| format!("sleep until {}", Timestamp(at).to_rfc3339()));
        check_payload("the sleep label", &label)?;
        let request = json!({ "at": at, "label": label });
        self.step(
            "sleep-until",
            StepKind::SleepUntil,
            request,
            |_, _| json!({ "wakeAt": at }),
        )?;
        self.sleep_over(Timestamp(at))
    }

    async fn wait_for_event(
        &mut self,
        name: String,
        where_json: Option<String>,
        timeout: u64,
        label: Option<String>,
    ) -> wasmtime::Result<Result<Option<Event>, String>> {
        check_payload("the event name", &name)?;
        if let Some(filter) = &where_json {
            check_payload("the wait's where-json", filter)?;
        }
        let label = label.unwrap_or_else(|| format!("wait for {name}"));
        check_payload("the wait label", &label)?;
        let filter = match wait_filter(&name, where_json.as_deref(), timeout) {
            Ok(filter) => filter,
            Err(message) => return Ok(Err(message)),
        };
        let (events, started_at) = {
            let scope = self.scope("wait-for-event")?;
            (scope.events.clone(), scope.started_at)
        };

        // The wait's start, journaled: since when events count and until when to wait.
        let request = json!({
            "event": name,
            "where": filter.as_ref().map(Condition::to_json),
            "timeoutMs": timeout,
            "label": label,
        });
        let started = self.step("wait-for-event", StepKind::WaitForEvent, request, |j, _| {
            let now = j.clock.now();
            json!({
                "since": now.0,
                "deadline": now.saturating_add(Duration::from_millis(timeout)).0,
            })
        })?;
        let (Some(since), Some(deadline)) =
            (started["since"].as_i64(), started["deadline"].as_i64())
        else {
            return Err(fault(format!(
                "journaled wait-for-event is malformed: {started}"
            )));
        };

        // Its end: recorded once the event came or the time ran out.
        let request = json!({ "event": name });
        let looked_up = lock(&self.journal)
            .lookup(StepKind::WaitResolved, &request)
            .map_err(wasmtime::Error::new)?;
        let response = match looked_up {
            Lookup::Recorded(response) => response,
            Lookup::Frontier { .. } => {
                let now = lock(&self.journal).clock.now();
                // The trigger was received when the run started: a later event only.
                let span = ReceivedSpan {
                    from: Timestamp(since.max(started_at.0.saturating_add(1))),
                    until: Timestamp(deadline.min(now.0)),
                };
                let found = events
                    .first_match(&name, span, filter.as_ref())
                    .await
                    .map_err(|message| {
                        wasmtime::Error::new(HostUnavailable(format!(
                            "`wait-for-event` could not read events: {message}"
                        )))
                    })?;
                let response = match found.event {
                    Some(event) => json!({ "event": event_to_json(&event) }),
                    None if now.0 >= deadline => json!({ "timedOut": true }),
                    None => {
                        return Err(wasmtime::Error::new(Suspend {
                            wake_at: Timestamp(deadline),
                            wait: Some(EventWait {
                                event_name: name,
                                since: span.from,
                                seen: found.examined,
                            }),
                        }));
                    }
                };
                lock(&self.journal).record(StepKind::WaitResolved, request, response.clone());
                response
            }
        };
        if response["timedOut"].as_bool() == Some(true) {
            return Ok(Ok(None));
        }
        event_from_json(&response["event"])
            .map(|event| Ok(Some(event)))
            .ok_or_else(|| fault(format!("journaled wait-resolved is malformed: {response}")))
    }

    fn trigger(
        &mut self,
        name: String,
        person_key: Option<String>,
        properties_json: String,
    ) -> wasmtime::Result<Result<(), String>> {
        check_payload("the event name", &name)?;
        check_payload("the event's properties", &properties_json)?;
        if let Some(key) = &person_key {
            check_payload("the person key", key)?;
        }
        let properties = match effect_properties(&properties_json) {
            Ok(properties) => properties,
            Err(message) => return Ok(Err(message)),
        };
        if name.trim().is_empty() {
            return Ok(Err("the event name is empty".into()));
        }
        if name.starts_with(crate::buckets::BUCKET_EVENT_PREFIX) {
            return Ok(Err(format!(
                "{name:?}: names starting with {:?} are reserved for bucket transitions",
                crate::buckets::BUCKET_EVENT_PREFIX
            )));
        }
        let person_key = match person_key.map(|k| k.trim().to_owned()) {
            Some(key) if key.is_empty() => return Ok(Err("the person key is empty".into())),
            Some(key) => key,
            None => self.scope("trigger")?.person.key.clone(),
        };
        let request = json!({ "name": name, "personKey": person_key, "properties": properties });
        self.step("trigger", StepKind::Trigger, request, move |j, seq| {
            j.effects.push((
                seq,
                Effect::Trigger {
                    name,
                    person_key,
                    properties,
                },
            ));
            Value::Null
        })?;
        Ok(Ok(()))
    }

    fn update_contact(&mut self, properties_json: String) -> wasmtime::Result<Result<(), String>> {
        check_payload("the contact properties", &properties_json)?;
        let properties = match effect_properties(&properties_json) {
            Ok(properties) => properties,
            Err(message) => return Ok(Err(message)),
        };
        let person_key = self.scope("update-contact")?.person.key.clone();
        let request = json!({ "properties": properties });
        self.step(
            "update-contact",
            StepKind::UpdateContact,
            request,
            move |j, seq| {
                j.effects.push((
                    seq,
                    Effect::UpdateContact {
                        person_key,
                        properties,
                    },
                ));
                Value::Null
            },
        )?;
        Ok(Ok(()))
    }

    fn checkpoint(&mut self, label: String) -> wasmtime::Result<()> {
        check_payload("the checkpoint label", &label)?;
        self.step(
            "checkpoint",
            StepKind::Checkpoint,
            json!({ "label": label }),
            |_, _| Value::Null,
        )?;
        Ok(())
    }

    async fn send_email(&mut self, email: Email) -> wasmtime::Result<Result<String, String>> {
        check_payload("the template key", &email.template)?;
        if let Some(to) = &email.to {
            check_payload("the recipient address", to)?;
        }
        check_payload("the email's vars", &email.vars_json)?;
        let vars: serde_json::Map<String, Value> = if email.vars_json.trim().is_empty() {
            Default::default()
        } else {
            match serde_json::from_str(&email.vars_json) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Ok(Err(format!(
                        "vars-json must be a JSON object, got {:?}",
                        email.vars_json
                    )));
                }
            }
        };
        let request = json!({ "template": email.template, "to": email.to, "vars": vars });
        self.scope("send-email")?;
        let looked_up = lock(&self.journal)
            .lookup(StepKind::SendEmail, &request)
            .map_err(wasmtime::Error::new)?;
        // The verdict (queued or suppressed, and why) is journaled with the id, so a replay
        // answers the same whatever changed since.
        let value = match looked_up {
            Lookup::Recorded(response) => response,
            Lookup::Frontier { seq } => {
                let scope = self.scope.as_ref().expect("checked above");
                let response = match prepare_email(&self.journal, scope, seq, &email, &vars).await {
                    Ok(queued) => {
                        let response = json!({
                            "ok": queued.id.as_str(),
                            "status": queued.status,
                            "reason": queued.suppressed_reason,
                        });
                        lock(&self.journal).emails.push(queued);
                        response
                    }
                    Err(PrepareError::Refused(message)) => json!({ "error": message }),
                    Err(PrepareError::Unavailable(message)) => {
                        return Err(wasmtime::Error::new(HostUnavailable(format!(
                            "`send-email` could not be answered: {message}"
                        ))));
                    }
                };
                lock(&self.journal).record(StepKind::SendEmail, request, response.clone());
                response
            }
        };
        match (
            value.get("ok").and_then(Value::as_str),
            value.get("error").and_then(Value::as_str),
        ) {
            (Some(id), _) => Ok(Ok(id.to_owned())),
            (_, Some(message)) => Ok(Err(message.to_owned())),
            _ => Err(fault(format!(
                "journaled send-email has no outcome: {value}"
            ))),
        }
    }

    async fn history_event_count(
        &mut self,
        person_key: Option<String>,
        name: String,
        within: Option<u64>,
    ) -> wasmtime::Result<Result<u64, String>> {
        check_payload("the event name", &name)?;
        if let Some(key) = &person_key {
            check_payload("the person key", key)?;
        }
        let events = self.scope("history-event-count")?.events.clone();
        let now = lock(&self.journal).clock.now();
        let since =
            within.map(|ms| Timestamp(now.0.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))));
        let request = json!({ "personKey": person_key, "name": name, "withinMs": within });
        let answer = self
            .journaled_read(
                "history-event-count",
                StepKind::HistoryEventCount,
                request,
                async move {
                    events
                        .event_count(person_key.as_deref(), &name, since)
                        .await
                        .map(|n| json!(n))
                        .map_err(MemberReadError::Unavailable)
                },
            )
            .await?;
        decode("history-event-count", answer, Value::as_u64)
    }

    async fn history_event_count_since(
        &mut self,
        person_key: Option<String>,
        name: String,
        since: Option<i64>,
    ) -> wasmtime::Result<Result<u64, String>> {
        check_payload("the event name", &name)?;
        if let Some(key) = &person_key {
            check_payload("the person key", key)?;
        }
        let scope = self.scope("history-event-count-since")?;
        let events = scope.events.clone();
        // "Since the run started" is resolved here, so the journal records the instant the
        // count was taken from and the timeline shows it.
        let since = since.unwrap_or(scope.started_at.0);
        // Journaled as the same kind of step as `history-event-count` (a count of a person's
        // events); the request's `sinceMs` tells the two apart, so a replay that swaps one
        // call for the other diverges at this step.
        let request = json!({ "personKey": person_key, "name": name, "sinceMs": since });
        let answer = self
            .journaled_read(
                "history-event-count-since",
                StepKind::HistoryEventCount,
                request,
                async move {
                    events
                        .event_count(person_key.as_deref(), &name, Some(Timestamp(since)))
                        .await
                        .map(|n| json!(n))
                        .map_err(MemberReadError::Unavailable)
                },
            )
            .await?;
        decode("history-event-count-since", answer, Value::as_u64)
    }

    async fn history_journey(
        &mut self,
        person_key: Option<String>,
        journey: String,
    ) -> wasmtime::Result<Result<JourneyHistory, String>> {
        check_payload("the journey id", &journey)?;
        if let Some(key) = &person_key {
            check_payload("the person key", key)?;
        }
        let events = self.scope("history-journey")?.events.clone();
        let request = json!({ "personKey": person_key, "journey": journey });
        let answer = self
            .journaled_read(
                "history-journey",
                StepKind::HistoryJourney,
                request,
                async move {
                    events
                        .journey_history(person_key.as_deref(), &journey)
                        .await
                        .map(|h| {
                            json!({
                                "entries": h.entries,
                                "completed": h.completed,
                                "lastCompletedAt": h.last_completed_at.map(|t| t.0),
                            })
                        })
                        .map_err(MemberReadError::Unavailable)
                },
            )
            .await?;
        decode("history-journey", answer, |v| {
            Some(JourneyHistory {
                entries: v["entries"].as_u64()?,
                completed: v["completed"].as_u64()?,
                last_completed_at: optional_i64(&v["lastCompletedAt"])?,
            })
        })
    }

    async fn history_email(
        &mut self,
        to: Option<String>,
        template: String,
    ) -> wasmtime::Result<Result<EmailHistory, String>> {
        check_payload("the template key", &template)?;
        if let Some(to) = &to {
            check_payload("the address", to)?;
        }
        let scope = self.scope("history-email")?;
        let events = scope.events.clone();
        let address = match &to {
            Some(to) => crate::contacts::normalize_email(to),
            None => scope.person.email.clone(),
        };
        let request = json!({ "to": address, "template": template });
        let answer = self
            .journaled_read(
                "history-email",
                StepKind::HistoryEmail,
                request,
                async move {
                    let Some(address) = address else {
                        return Err(MemberReadError::Refused(
                            "the person has no email address and none was given".into(),
                        ));
                    };
                    events
                    .email_history(&address, &template)
                    .await
                    .map(|h| {
                        json!({ "count": h.count, "lastSentAt": h.last_sent_at.map(|t| t.0) })
                    })
                    .map_err(MemberReadError::Unavailable)
                },
            )
            .await?;
        decode("history-email", answer, |v| {
            Some(EmailHistory {
                count: v["count"].as_u64()?,
                last_sent_at: optional_i64(&v["lastSentAt"])?,
            })
        })
    }

    async fn is_subscribed(&mut self) -> wasmtime::Result<bool> {
        let scope = self.scope("is-subscribed")?;
        let (mail, key, email) = (
            scope.mail.clone(),
            scope.person.key.clone(),
            scope.person.email.clone(),
        );
        let answer = self
            .journaled_read(
                "is-subscribed",
                StepKind::IsSubscribed,
                Value::Null,
                async move {
                    mail.is_unsubscribed(&key, email.as_deref())
                        .await
                        .map(|unsubscribed| json!(!unsubscribed))
                        .map_err(MemberReadError::Unavailable)
                },
            )
            .await?;
        match decode("is-subscribed", answer, Value::as_bool)? {
            Ok(subscribed) => Ok(subscribed),
            Err(message) => Err(fault(format!(
                "journaled `is-subscribed` is an error: {message}"
            ))),
        }
    }

    async fn bucket_count(&mut self, bucket: String) -> wasmtime::Result<Result<u64, String>> {
        check_payload("the bucket id", &bucket)?;
        let request = json!({ "bucket": bucket });
        let reader = self.buckets("bucket-count")?;
        let answer = self
            .journaled_read("bucket-count", StepKind::BucketCount, request, async move {
                reader.count(&bucket).await.map(|n| json!(n))
            })
            .await?;
        decode("bucket-count", answer, Value::as_u64)
    }

    async fn bucket_has(
        &mut self,
        bucket: String,
        person_key: String,
    ) -> wasmtime::Result<Result<bool, String>> {
        check_payload("the bucket id", &bucket)?;
        check_payload("the person key", &person_key)?;
        let request = json!({ "bucket": bucket, "key": person_key });
        let reader = self.buckets("bucket-has")?;
        let answer = self
            .journaled_read("bucket-has", StepKind::BucketHas, request, async move {
                reader.has(&bucket, &person_key).await.map(|b| json!(b))
            })
            .await?;
        decode("bucket-has", answer, Value::as_bool)
    }

    async fn bucket_members(
        &mut self,
        bucket: String,
        page: MemberPageRequest,
    ) -> wasmtime::Result<Result<MemberPage, String>> {
        check_payload("the bucket id", &bucket)?;
        if let Some(cursor) = &page.cursor {
            check_payload("the cursor", cursor)?;
        }
        let request = json!({ "bucket": bucket, "limit": page.limit, "cursor": page.cursor });
        let page = crate::store::MemberPageRequest {
            limit: page.limit,
            cursor: page.cursor,
        };
        let reader = self.buckets("bucket-members")?;
        let answer = self
            .journaled_read(
                "bucket-members",
                StepKind::BucketMembers,
                request,
                async move { reader.members(&bucket, &page).await.map(page_to_json) },
            )
            .await?;
        decode("bucket-members", answer, page_from_json)
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        if lock(&self.journal).replay.is_replaying() {
            return Ok(());
        }
        if self.log_lines_left == 0 {
            return Ok(());
        }
        let message: String = message.chars().take(MAX_LOG_LINE).collect();
        let (run, journey) = self
            .scope
            .as_ref()
            .map(|s| (s.run_id.as_str(), s.journey_id.as_str()))
            .unwrap_or(("", "describe"));
        self.log_lines_left -= 1;
        self.log_bytes_left = self.log_bytes_left.saturating_sub(message.len());
        if self.log_bytes_left == 0 {
            self.log_lines_left = 0;
        }
        match level {
            LogLevel::Trace => tracing::trace!(target: "waymark::guest", run, journey, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "waymark::guest", run, journey, "{message}"),
            LogLevel::Info => tracing::info!(target: "waymark::guest", run, journey, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "waymark::guest", run, journey, "{message}"),
            LogLevel::Error => tracing::error!(target: "waymark::guest", run, journey, "{message}"),
        }
        if self.log_lines_left == 0 {
            tracing::warn!(
                target: "waymark::guest",
                run,
                journey,
                "this activation reached its log limit ({MAX_LOG_LINES} lines or \
                 {MAX_LOG_BYTES} bytes); its further lines are dropped"
            );
        }
        Ok(())
    }
}

/// `wasi:clocks` answered through the journal (wall and monotonic alike, in host-clock time).
struct JournaledClock(SharedJournal);

impl JournaledClock {
    fn read(&self, kind: StepKind) -> Duration {
        let mut journal = lock(&self.0);
        let value = journal
            .journaled(kind, Value::Null, |j, _| json!(j.clock.now().0))
            .ok()
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        Duration::from_millis(u64::try_from(value).unwrap_or(0))
    }
}

impl wasmtime_wasi::HostWallClock for JournaledClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.read(StepKind::WasiWallClock)
    }
}

impl wasmtime_wasi::HostMonotonicClock for JournaledClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        u64::try_from(self.read(StepKind::WasiMonotonicClock).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// `wasi:random` answered through the journal.
struct JournaledRandom(SharedJournal);

impl rand::TryRng for JournaledRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        let len = dest.len();
        let mut journal = lock(&self.0);
        let recorded = journal
            .journaled(StepKind::WasiRandom, json!({ "len": len }), |_, _| {
                let mut fresh = vec![0u8; len];
                rand::fill(&mut fresh[..]);
                json!(hex::encode(fresh))
            })
            .ok()
            .and_then(|v| v.as_str().and_then(|s| hex::decode(s).ok()));
        match recorded {
            Some(bytes) if bytes.len() == len => dest.copy_from_slice(&bytes),
            // Diverged (recorded on the journal, the activation fails) or corrupt: zeros.
            _ => dest.fill(0),
        }
        Ok(())
    }
}
