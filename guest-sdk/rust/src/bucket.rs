//! Bucket declarations: named sets of contacts the host keeps up to date, and the reactions
//! it runs when someone enters or leaves.

use crate::criteria::Criteria;
use crate::duration::{Duration, to_millis};
use crate::journey::EntryLimit;
use crate::module::Handler;
use crate::wit::types as wit;

/// When a dwell reaction runs, measured from the moment the person entered the bucket (for
/// people a backfill found, from when they first matched): [`after`] or [`every`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DwellSchedule {
    /// Once per membership.
    After(Duration),
    /// Repeatedly while the membership lasts; intervals missed while the host was down are
    /// coalesced into one run.
    Every(Duration),
}

impl DwellSchedule {
    /// `after-<ms>` / `every-<ms>`: part of the event name and the reaction's journey id.
    pub fn label(&self) -> String {
        match self {
            DwellSchedule::After(d) => format!("after-{}", to_millis(*d)),
            DwellSchedule::Every(d) => format!("every-{}", to_millis(*d)),
        }
    }

    fn millis(&self) -> u64 {
        match self {
            DwellSchedule::After(d) | DwellSchedule::Every(d) => to_millis(*d),
        }
    }
}

/// A dwell reaction that runs once per membership, `duration` after the person entered:
/// `bucket.on_dwell(after(days(3)), handler)`.
pub fn after(duration: Duration) -> DwellSchedule {
    DwellSchedule::After(duration)
}

/// A dwell reaction that runs every `duration` while the person stays in the bucket:
/// `bucket.on_dwell(every(days(1)), handler)`. Its trigger's `dwellCount` is the interval
/// index since entry (after an outage it jumps: one run, not one per missed interval).
pub fn every(duration: Duration) -> DwellSchedule {
    DwellSchedule::Every(duration)
}

/// The leave reasons the host reports (`reason` on `bucket:left:<id>`).
pub const LEAVE_REASONS: [&str; 3] = ["criteria", "maxDwell", "manual"];

/// Starts declaring a bucket with the given id (unique across the tenant's modules; no `:` or
/// whitespace).
///
/// The defaults are: name = id, computed (give it [`Bucket::criteria`]), enabled, entry limit
/// [`EntryLimit::Unlimited`], time-based inferred by the host (true when an event condition
/// has a window), no dwell bounds, no reactions.
///
/// ```
/// use waymark_guest::prelude::*;
/// # fn celebrate(_: &Ctx) -> JourneyResult { Ok(()) }
/// # fn win_back(_: &Ctx) -> JourneyResult { Ok(()) }
/// let b = bucket("power-users")
///     .name("Power users")
///     .criteria(event("feature.used").within(days(7)).at_least(5))
///     .max_dwell(days(30))
///     .on_enter(celebrate)
///     .first_entry_only()
///     .on_leave(win_back)
///     .leave_reasons(["criteria"]);
/// assert_eq!(b.enter_journey_id(), "bucket-power-users-on-enter");
/// ```
pub fn bucket(id: impl Into<String>) -> Bucket {
    Bucket {
        id: id.into(),
        name: None,
        description: None,
        enabled: true,
        manual: false,
        criteria: None,
        time_based: None,
        fast_expiry: false,
        min_dwell: None,
        max_dwell: None,
        entry_limit: EntryLimit::Unlimited,
        on_enter: None,
        first_entry_only: false,
        enter_exit_on: Vec::new(),
        on_leave: None,
        leave_reasons: None,
        on_dwell: Vec::new(),
    }
}

/// A bucket's metadata and reactions, built with [`bucket`] and listed in
/// [`module!`](crate::module) under `buckets`.
#[derive(Debug, Clone)]
#[must_use = "a bucket declaration does nothing until it is listed in `module!`"]
pub struct Bucket {
    id: String,
    name: Option<String>,
    description: Option<String>,
    enabled: bool,
    manual: bool,
    criteria: Option<Criteria>,
    time_based: Option<bool>,
    fast_expiry: bool,
    min_dwell: Option<Duration>,
    max_dwell: Option<Duration>,
    entry_limit: EntryLimit,
    on_enter: Option<Handler>,
    first_entry_only: bool,
    /// Events that end a person's live run of the enter reaction, with their conditions.
    enter_exit_on: Vec<(String, Option<Criteria>)>,
    on_leave: Option<Handler>,
    leave_reasons: Option<Vec<String>>,
    on_dwell: Vec<(DwellSchedule, Handler)>,
}

impl Bucket {
    /// Display name (the `bucketName` of transition events). Defaults to the id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A description, for display only.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Who belongs: the bucket is computed from these criteria.
    pub fn criteria(mut self, criteria: Criteria) -> Self {
        self.criteria = Some(criteria);
        self
    }

    /// Membership is changed only through the host's API, never evaluated; a manual bucket
    /// has no criteria.
    pub fn manual(mut self) -> Self {
        self.manual = true;
        self
    }

    /// Whether the bucket is evaluated and emits transitions (default `true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Same as `.enabled(false)`.
    pub fn disabled(self) -> Self {
        self.enabled(false)
    }

    /// Whether the clock alone can change membership, so the host re-checks members
    /// periodically. Left out, the host infers it: true when an event condition has a
    /// window.
    pub fn time_based(mut self, time_based: bool) -> Self {
        self.time_based = Some(time_based);
        self
    }

    /// Re-check a new member for leaving as soon as possible after they join.
    pub fn fast_expiry(mut self) -> Self {
        self.fast_expiry = true;
        self
    }

    /// A leave waits until the membership is at least this old (anti-flap).
    pub fn min_dwell(mut self, dwell: Duration) -> Self {
        self.min_dwell = Some(dwell);
        self
    }

    /// Members leave (reason `"maxDwell"`) this long after they entered, whatever the
    /// criteria say. At least the min dwell.
    pub fn max_dwell(mut self, dwell: Duration) -> Self {
        self.max_dwell = Some(dwell);
        self
    }

    /// How often one person's entry emits `bucket:entered` (membership is recorded
    /// regardless). For buckets, [`EntryLimit::OncePer`]'s period is measured from the
    /// person's most recent prior leave. Default [`EntryLimit::Unlimited`].
    pub fn entry_limit(mut self, limit: EntryLimit) -> Self {
        self.entry_limit = limit;
        self
    }

    /// `.entry_limit(EntryLimit::Once)`.
    pub fn once(self) -> Self {
        self.entry_limit(EntryLimit::Once)
    }

    /// `.entry_limit(EntryLimit::OncePer(period))`.
    pub fn once_per(self, period: Duration) -> Self {
        self.entry_limit(EntryLimit::OncePer(period))
    }

    /// `.entry_limit(EntryLimit::Unlimited)` (the default).
    pub fn unlimited(self) -> Self {
        self.entry_limit(EntryLimit::Unlimited)
    }

    /// Runs `handler` (a journey handler, same [`Ctx`](crate::Ctx)) when someone enters. Its
    /// trigger event is `bucket:entered:<id>`, with `isFirstEntry` and `entryCount`
    /// properties. A person has at most one live run of it at a time.
    pub fn on_enter(mut self, handler: Handler) -> Self {
        self.on_enter = Some(handler);
        self
    }

    /// Runs the enter reaction only on a person's first entry.
    pub fn first_entry_only(mut self) -> Self {
        self.first_entry_only = true;
        self
    }

    /// Ends a person's live run of the enter reaction (status `exited`) when they fire
    /// `event`, e.g. `"account.deleted"`. Repeatable. See [`Bucket::enter_until_left`] for
    /// the common case.
    pub fn enter_exit_on(mut self, event: impl Into<String>) -> Self {
        self.enter_exit_on.push((event.into(), None));
        self
    }

    /// Like [`Bucket::enter_exit_on`], only when `condition` holds on that event's
    /// properties (property conditions, as in a journey's `exit_on_where`).
    pub fn enter_exit_on_where(mut self, event: impl Into<String>, condition: Criteria) -> Self {
        self.enter_exit_on.push((event.into(), Some(condition)));
        self
    }

    /// Ends a person's live run of the enter reaction when they leave this bucket (its
    /// `bucket:left:<id>` event, any reason): a reaction that sleeps and follows up stops
    /// following up someone who no longer belongs.
    ///
    /// ```
    /// use waymark_guest::prelude::*;
    /// # fn nurture(_: &Ctx) -> JourneyResult { Ok(()) }
    /// let b = bucket("trialists")
    ///     .criteria(event("trial.started").exists())
    ///     .on_enter(nurture)
    ///     .enter_until_left();
    /// let journey = &waymark_guest::testing::describe(&Module::new().bucket(b))["journeys"][0];
    /// assert_eq!(journey["exitOn"][0]["event"], "bucket:left:trialists");
    /// ```
    pub fn enter_until_left(self) -> Self {
        let left = format!("bucket:left:{}", self.id);
        self.enter_exit_on(left)
    }

    /// Runs `handler` when someone leaves. Its trigger event is `bucket:left:<id>`, with a
    /// `reason` property (one of [`LEAVE_REASONS`]).
    pub fn on_leave(mut self, handler: Handler) -> Self {
        self.on_leave = Some(handler);
        self
    }

    /// Runs the leave reaction only for these reasons (of [`LEAVE_REASONS`]).
    pub fn leave_reasons<S: Into<String>>(mut self, reasons: impl IntoIterator<Item = S>) -> Self {
        self.leave_reasons = Some(reasons.into_iter().map(Into::into).collect());
        self
    }

    /// Runs `handler` when someone has been in the bucket for a while, by `schedule`
    /// ([`after`] once per membership, or [`every`] interval). Its trigger event is
    /// `bucket:dwell:<id>:<label>`, with a `dwellCount` property; the host's reconcile job
    /// emits it. Someone who leaves and joins again starts a new membership, so an `after`
    /// reaction runs again. A bucket may have several, with different schedules.
    pub fn on_dwell(mut self, schedule: DwellSchedule, handler: Handler) -> Self {
        self.on_dwell.push((schedule, handler));
        self
    }

    /// The journey id (and handler id) of a dwell reaction:
    /// `bucket-<id>-on-dwell-<label>`, e.g. `bucket-went-dormant-on-dwell-after-259200000`.
    pub fn dwell_journey_id(&self, schedule: DwellSchedule) -> String {
        format!("bucket-{}-on-dwell-{}", self.id, schedule.label())
    }

    /// The bucket id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name (the id unless [`Bucket::name`] set one).
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// The criteria, if any.
    pub fn declared_criteria(&self) -> Option<&Criteria> {
        self.criteria.as_ref()
    }

    /// Whether the bucket is manual.
    pub fn is_manual(&self) -> bool {
        self.manual
    }

    /// Whether the bucket is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The journey id (and handler id) of the enter reaction: `bucket-<id>-on-enter`. Run it
    /// in tests with [`TestHost::run`](crate::testing::TestHost::run).
    pub fn enter_journey_id(&self) -> String {
        format!("bucket-{}-on-enter", self.id)
    }

    /// The journey id (and handler id) of the leave reaction: `bucket-<id>-on-leave`.
    pub fn leave_journey_id(&self) -> String {
        format!("bucket-{}-on-leave", self.id)
    }

    /// The reactions as `(journey id, handler)`.
    pub(crate) fn reactions(&self) -> impl Iterator<Item = (String, Handler)> + '_ {
        self.on_enter
            .map(|h| (self.enter_journey_id(), h))
            .into_iter()
            .chain(self.on_leave.map(|h| (self.leave_journey_id(), h)))
            .chain(
                self.on_dwell
                    .iter()
                    .map(|(s, h)| (self.dwell_journey_id(*s), *h)),
            )
    }

    /// Problems the host would refuse, each naming the field.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut found = Vec::new();
        if self.id.trim().is_empty() {
            found.push("id is empty".to_owned());
        } else if self
            .id
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            found.push("id must not contain ':' or whitespace".to_owned());
        }
        if self.display_name().trim().is_empty() {
            found.push("name is empty".to_owned());
        }
        for (field, value) in [("id", self.id.as_str()), ("name", self.display_name())] {
            if value.len() > crate::module::MAX_ID_LEN {
                found.push(format!(
                    "{field} is longer than {} characters",
                    crate::module::MAX_ID_LEN
                ));
            }
        }
        match (self.manual, &self.criteria) {
            (true, Some(_)) => found.push("a manual bucket must not have criteria".to_owned()),
            (false, None) => found.push(
                "criteria are required for a computed bucket; add .criteria(..) or declare the \
                 bucket .manual()"
                    .to_owned(),
            ),
            (false, Some(c)) => found.extend(crate::criteria::problems(c)),
            (true, None) => {}
        }
        for (field, dwell) in [("min_dwell", self.min_dwell), ("max_dwell", self.max_dwell)] {
            if dwell.is_some_and(|d| to_millis(d) == 0) {
                found.push(format!("{field} must be above zero"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_dwell, self.max_dwell)
            && max < min
        {
            found.push("max_dwell must not be below min_dwell".to_owned());
        }
        if let EntryLimit::OncePer(period) = self.entry_limit
            && to_millis(period) == 0
        {
            found.push("entry_limit once_per needs a period above zero".to_owned());
        }
        if self.first_entry_only && self.on_enter.is_none() {
            found.push("first_entry_only() without on_enter(..)".to_owned());
        }
        if !self.enter_exit_on.is_empty() && self.on_enter.is_none() {
            found.push("enter_exit_on(..) without on_enter(..)".to_owned());
        }
        for (r, (event, condition)) in self.enter_exit_on.iter().enumerate() {
            if event.trim().is_empty() {
                found.push("an enter_exit_on event name is empty".to_owned());
            }
            if let Some(condition) = condition {
                found.extend(crate::module::event_filter_problems(
                    condition,
                    &format!("exit-on[{r}].where"),
                ));
            }
        }
        if let Some(reasons) = &self.leave_reasons {
            if self.on_leave.is_none() {
                found.push("leave_reasons(..) without on_leave(..)".to_owned());
            }
            if reasons.is_empty() {
                found.push("leave_reasons is empty; leave it out for every reason".to_owned());
            }
            for r in reasons {
                if !LEAVE_REASONS.contains(&r.as_str()) {
                    found.push(format!(
                        "leave reason {r:?} is not a leave reason (one of {})",
                        LEAVE_REASONS.join(", ")
                    ));
                }
            }
        }
        for (i, (schedule, _)) in self.on_dwell.iter().enumerate() {
            if schedule.millis() == 0 {
                found.push(format!("on_dwell schedule {} is zero", schedule.label()));
            }
            if self.on_dwell[..i].iter().any(|(s, _)| s == schedule) {
                found.push(format!("a second on_dwell({})", schedule.label()));
            }
        }
        found
    }

    /// The journey-defs that declare this bucket's reaction journeys, when a reaction needs
    /// more than its reaction-def says: the enter reaction's exit rules. The host gives a
    /// reaction the exit rules of a declared journey with the reaction's journey id (same
    /// trigger, entry limit unlimited, no trigger filter).
    pub(crate) fn reaction_journeys(&self) -> Vec<wit::JourneyDef> {
        if self.on_enter.is_none() || self.enter_exit_on.is_empty() {
            return Vec::new();
        }
        vec![wit::JourneyDef {
            id: self.enter_journey_id(),
            name: format!("{} \u{2014} on enter", self.display_name()),
            trigger: format!("bucket:entered:{}", self.id),
            trigger_where: None,
            exit_on: self
                .enter_exit_on
                .iter()
                .map(|(event, condition)| wit::ExitRule {
                    event: event.clone(),
                    where_: condition.as_ref().map(Criteria::to_json_string),
                })
                .collect(),
            entry_limit: wit::EntryLimit::Unlimited,
            enabled: self.enabled,
            suppress: 0,
        }]
    }

    pub(crate) fn to_wit(&self) -> wit::BucketDef {
        let mut reactions = Vec::new();
        if self.on_enter.is_some() {
            let id = self.enter_journey_id();
            reactions.push(wit::ReactionDef {
                handler: id.clone(),
                journey_id: id,
                on: wit::ReactionOn::Enter(wit::EnterOptions {
                    first_entry_only: self.first_entry_only,
                }),
            });
        }
        if self.on_leave.is_some() {
            let id = self.leave_journey_id();
            reactions.push(wit::ReactionDef {
                handler: id.clone(),
                journey_id: id,
                on: wit::ReactionOn::Leave(wit::LeaveOptions {
                    reasons: self.leave_reasons.clone(),
                }),
            });
        }
        for (schedule, _) in &self.on_dwell {
            let id = self.dwell_journey_id(*schedule);
            let (after_ms, every_ms) = match schedule {
                DwellSchedule::After(d) => (Some(to_millis(*d)), None),
                DwellSchedule::Every(d) => (None, Some(to_millis(*d))),
            };
            reactions.push(wit::ReactionDef {
                handler: id.clone(),
                journey_id: id,
                on: wit::ReactionOn::Dwell(wit::DwellOptions { after_ms, every_ms }),
            });
        }
        wit::BucketDef {
            id: self.id.clone(),
            name: self.display_name().to_owned(),
            description: self.description.clone(),
            enabled: self.enabled,
            kind: if self.manual {
                wit::BucketKind::Manual
            } else {
                wit::BucketKind::Computed
            },
            criteria_json: self.criteria.as_ref().map(Criteria::to_json_string),
            time_based: self.time_based,
            fast_expiry: self.fast_expiry,
            min_dwell_ms: self.min_dwell.map(to_millis),
            max_dwell_ms: self.max_dwell.map(to_millis),
            entry_limit: self.entry_limit.to_wit(),
            reactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::{TestHost, describe};

    fn greet(ctx: &Ctx) -> JourneyResult {
        ctx.send_email(email("greet"))?;
        Ok(())
    }

    fn farewell(ctx: &Ctx) -> JourneyResult {
        let reason = ctx
            .trigger()
            .property_str("reason")
            .unwrap_or("?")
            .to_owned();
        ctx.send_email(email("farewell").var("reason", reason))?;
        Ok(())
    }

    fn noop(_: &Ctx) -> JourneyResult {
        Ok(())
    }

    fn module() -> Module {
        Module::new()
            .journey(journey("welcome").on("user.signed_up"), noop)
            .bucket(
                bucket("power-users")
                    .name("Power users")
                    .description("Used a feature five times this week")
                    .criteria(event("feature.used").within(days(7)).at_least(5))
                    .time_based(true)
                    .fast_expiry()
                    .min_dwell(hours(1))
                    .max_dwell(days(30))
                    .once_per(days(14))
                    .on_enter(greet)
                    .first_entry_only()
                    .on_leave(farewell)
                    .leave_reasons(["criteria", "maxDwell"]),
            )
            .bucket(bucket("beta").manual().disabled())
    }

    #[test]
    fn given_a_bucket_with_every_option_when_described_then_the_manifest_carries_them_all() {
        let manifest = describe(&module());
        assert_eq!(
            manifest["buckets"][0],
            json!({
                "id": "power-users",
                "name": "Power users",
                "description": "Used a feature five times this week",
                "enabled": true,
                "kind": "computed",
                "criteria": {"type": "event", "event": "feature.used", "check": "count",
                             "operator": "gte", "value": 5, "withinMs": 604_800_000},
                "timeBased": true,
                "fastExpiry": true,
                "minDwellMs": 3_600_000,
                "maxDwellMs": 2_592_000_000_u64,
                "entryLimit": {"oncePer": 1_209_600_000},
                "reactions": [
                    {"journeyId": "bucket-power-users-on-enter",
                     "handler": "bucket-power-users-on-enter",
                     "on": {"enter": {"firstEntryOnly": true}}},
                    {"journeyId": "bucket-power-users-on-leave",
                     "handler": "bucket-power-users-on-leave",
                     "on": {"leave": {"reasons": ["criteria", "maxDwell"]}}},
                ],
            })
        );
        assert_eq!(
            manifest["buckets"][1],
            json!({
                "id": "beta", "name": "beta", "description": null, "enabled": false,
                "kind": "manual", "criteria": null, "timeBased": null, "fastExpiry": false,
                "minDwellMs": null, "maxDwellMs": null, "entryLimit": "unlimited",
                "reactions": [],
            })
        );
        assert_eq!(manifest["journeys"][0]["id"], json!("welcome"));
        assert_eq!(module().validate(), Ok(()));
    }

    #[test]
    fn given_reaction_handlers_when_run_by_journey_id_then_the_right_handler_runs() {
        let m = module();
        let run = TestHost::new().run(
            &m,
            "bucket-power-users-on-leave",
            Person::new("u1").with_email("u1@example.com"),
            Event::new("bucket:left:power-users").with_property("reason", "maxDwell"),
        );
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["farewell"]);
        let run = TestHost::new().run(
            &m,
            "bucket-power-users-on-enter",
            Person::new("u1"),
            Event::new("bucket:entered:power-users"),
        );
        assert_eq!(run.emails(), ["greet"]);
        let err = TestHost::new()
            .run(
                &m,
                "bucket-beta-on-enter",
                Person::new("u1"),
                Event::new("x"),
            )
            .result
            .unwrap_err();
        assert_eq!(
            err,
            "unknown handler \"bucket-beta-on-enter\": this module's journeys are \"welcome\", \
             \"bucket-power-users-on-enter\", \"bucket-power-users-on-leave\""
        );
    }

    #[test]
    fn given_an_enter_reaction_with_exit_rules_when_described_then_a_journey_of_its_id_declares_them()
     {
        let m = Module::new().bucket(
            bucket("trialists")
                .name("Trialists")
                .criteria(event("trial.started").exists())
                .on_enter(greet)
                .first_entry_only()
                .enter_until_left()
                .enter_exit_on_where("order.paid", prop("amount").gt(0)),
        );
        assert_eq!(m.validate(), Ok(()));
        let manifest = describe(&m);
        assert_eq!(
            manifest["journeys"],
            json!([{
                "id": "bucket-trialists-on-enter",
                "name": "Trialists \u{2014} on enter",
                "trigger": "bucket:entered:trialists",
                "triggerWhere": null,
                "exitOn": [
                    {"event": "bucket:left:trialists", "where": null},
                    {"event": "order.paid", "where":
                        {"type": "property", "property": "amount", "operator": "gt", "value": 0}},
                ],
                "entryLimit": "unlimited",
                "enabled": true,
                "suppressMs": 0,
            }])
        );
        // The reaction itself is declared as before, with its filter option.
        assert_eq!(
            manifest["buckets"][0]["reactions"][0]["on"],
            json!({"enter": {"firstEntryOnly": true}})
        );
        // Exit rules without an enter reaction are a mistake.
        let stray =
            Module::new().bucket(bucket("b").criteria(event("x").exists()).enter_until_left());
        assert_eq!(
            stray.validate().unwrap_err(),
            "buckets[0] (\"b\"): enter_exit_on(..) without on_enter(..)"
        );
    }

    #[test]
    fn given_bucket_mistakes_when_validated_then_each_is_reported_naming_the_bucket() {
        let m = Module::new()
            .journey(journey("bucket-a-on-enter").on("x"), noop)
            .bucket(bucket("a").criteria(event("x").exists()).on_enter(noop))
            .bucket(bucket("b"))
            .bucket(bucket("c").manual().criteria(prop("p").exists()))
            .bucket(
                bucket("d:e")
                    .criteria(all([]))
                    .first_entry_only()
                    .leave_reasons(["max_dwell"]),
            )
            .bucket(
                bucket("f")
                    .criteria(event("x").within(Duration::ZERO).exists())
                    .min_dwell(days(2))
                    .max_dwell(days(1)),
            )
            .bucket(bucket("a").manual());
        let problems = m.validate().unwrap_err();
        let expected = [
            "buckets[0] (\"a\"): reaction journey id \"bucket-a-on-enter\" collides with a journey id",
            "buckets[1] (\"b\"): criteria are required for a computed bucket; add .criteria(..) or declare the bucket .manual()",
            "buckets[2] (\"c\"): a manual bucket must not have criteria",
            "buckets[3] (\"d:e\"): id must not contain ':' or whitespace",
            "buckets[3] (\"d:e\"): criteria.conditions must not be empty",
            "buckets[3] (\"d:e\"): first_entry_only() without on_enter(..)",
            "buckets[3] (\"d:e\"): leave_reasons(..) without on_leave(..)",
            "buckets[3] (\"d:e\"): leave reason \"max_dwell\" is not a leave reason (one of criteria, maxDwell, manual)",
            "buckets[4] (\"f\"): criteria.withinMs must be above zero",
            "buckets[4] (\"f\"): max_dwell must not be below min_dwell",
            "buckets[5] (\"a\"): id is declared more than once",
        ];
        for line in expected {
            assert!(
                problems.lines().any(|l| l == line),
                "missing {line:?} in:\n{problems}"
            );
        }
        assert_eq!(problems.lines().count(), expected.len(), "{problems}");
    }
}
