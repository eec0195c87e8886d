//! A module's declarations (journeys with their handlers, buckets with their reactions,
//! templates): manifest assembly, validation and handler dispatch.

use crate::bucket::Bucket;
use crate::ctx::{Backend, Ctx, Event, Person};
use crate::error::{JourneyResult, render};
use crate::journey::{EntryLimit, Journey, Template};
use crate::wit::types as wit;
use std::collections::BTreeSet;

/// Longest id, name or trigger the host accepts.
pub(crate) const MAX_ID_LEN: usize = 200;

/// What the host refuses in a condition on an event's properties (a trigger filter, an exit
/// rule's `where`): structural problems, and any event condition. `field` names the
/// condition, as the host does.
pub(crate) fn event_filter_problems(condition: &crate::Criteria, field: &str) -> Vec<String> {
    let mut found = crate::criteria::shape_problems(condition, field);
    if let Some(event) = crate::criteria::first_event_leg(condition) {
        found.push(format!(
            "{field} may hold only property conditions (on the event's properties); event \
             condition {event:?} is not allowed"
        ));
    }
    found
}

/// A journey handler: straight-line code over a [`Ctx`].
pub type Handler = fn(&Ctx) -> JourneyResult;

/// Everything a module declares. [`module!`](crate::module) builds one (and exposes it as
/// `waymark_module()` in your crate, for tests); you rarely build one by hand.
#[derive(Clone, Default)]
pub struct Module {
    journeys: Vec<(Journey, Handler)>,
    buckets: Vec<Bucket>,
    templates: Vec<Template>,
}

impl Module {
    /// An empty module.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a journey and the handler that runs it.
    pub fn journey(mut self, journey: Journey, handler: Handler) -> Self {
        self.journeys.push((journey, handler));
        self
    }

    /// Adds a bucket (with its reactions, if any).
    pub fn bucket(mut self, bucket: Bucket) -> Self {
        self.buckets.push(bucket);
        self
    }

    /// Adds an email template.
    pub fn template(mut self, template: Template) -> Self {
        self.templates.push(template);
        self
    }

    /// The declared journeys, in order.
    pub fn journeys(&self) -> impl Iterator<Item = &Journey> {
        self.journeys.iter().map(|(j, _)| j)
    }

    /// The declared buckets, in order.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// The declared templates, in order.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The handler of journey `id`: a declared journey, or a bucket reaction
    /// (`bucket-<id>-on-enter` / `bucket-<id>-on-leave`).
    pub fn handler(&self, id: &str) -> Option<Handler> {
        self.journeys
            .iter()
            .find(|(j, _)| j.id() == id)
            .map(|(_, h)| *h)
            .or_else(|| {
                self.buckets
                    .iter()
                    .flat_map(Bucket::reactions)
                    .find(|(reaction, _)| reaction == id)
                    .map(|(_, h)| h)
            })
    }

    /// Every handler id `run` accepts: journey ids, then reaction journey ids.
    pub fn handler_ids(&self) -> Vec<String> {
        self.journeys()
            .map(|j| j.id().to_owned())
            .chain(
                self.buckets
                    .iter()
                    .flat_map(Bucket::reactions)
                    .map(|(id, _)| id),
            )
            .collect()
    }

    /// Checks what the host refuses when it loads the module: an empty module, empty, overlong
    /// or duplicate ids and keys, journeys without a trigger, zero-length entry periods,
    /// trigger filters and exit conditions that are not property conditions, buckets without
    /// criteria (or manual ones with), criteria the host would refuse (empty composites, zero
    /// windows, no positive condition, …), reaction ids that collide with journey ids.
    /// Returns every problem found, one per line, each naming the field. `module!` runs this
    /// as a `#[test]` in your crate.
    ///
    /// The host and this check agree case by case: both run the shared cases of
    /// `tests/validity_cases.json` in this crate. (What only the host can check — that
    /// templates parse, that ids are unique across the tenant's other modules — is left to
    /// it.)
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.journeys.is_empty() && self.buckets.is_empty() {
            problems.push("a module must declare at least one journey or bucket".to_owned());
        }
        let mut ids = BTreeSet::new();
        for (i, (j, _)) in self.journeys.iter().enumerate() {
            let at = format!("journeys[{i}] ({:?})", j.id());
            if j.id().trim().is_empty() {
                problems.push(format!("{at}: id is empty"));
            } else if !ids.insert(j.id()) {
                problems.push(format!("{at}: id is declared more than once"));
            }
            if j.trigger().trim().is_empty() {
                problems.push(format!("{at}: trigger is empty; add .on(\"event.name\")"));
            }
            if j.display_name().trim().is_empty() {
                problems.push(format!("{at}: name is empty"));
            }
            for (field, value) in [
                ("id", j.id()),
                ("name", j.display_name()),
                ("trigger", j.trigger()),
            ] {
                if value.len() > MAX_ID_LEN {
                    problems.push(format!(
                        "{at}: {field} is longer than {MAX_ID_LEN} characters"
                    ));
                }
            }
            if let Some(condition) = j.trigger_condition() {
                problems.extend(
                    event_filter_problems(condition, "trigger-where")
                        .into_iter()
                        .map(|p| format!("{at}: {p}")),
                );
            }
            for (r, condition) in j.exit_conditions().enumerate() {
                if let Some(condition) = condition {
                    problems.extend(
                        event_filter_problems(condition, &format!("exit-on[{r}].where"))
                            .into_iter()
                            .map(|p| format!("{at}: {p}")),
                    );
                }
            }
            if let EntryLimit::OncePer(period) = j.limit()
                && period.as_millis() == 0
            {
                problems.push(format!(
                    "{at}: entry_limit once_per needs a period above zero"
                ));
            }
            if j.exit_events().any(|event| event.trim().is_empty()) {
                problems.push(format!("{at}: an exit_on event name is empty"));
            }
        }
        let mut bucket_ids = BTreeSet::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let at = format!("buckets[{i}] ({:?})", b.id());
            if !b.id().trim().is_empty() && !bucket_ids.insert(b.id()) {
                problems.push(format!("{at}: id is declared more than once"));
            }
            problems.extend(b.problems().into_iter().map(|p| format!("{at}: {p}")));
            for (reaction, _) in b.reactions() {
                if ids.contains(reaction.as_str()) {
                    problems.push(format!(
                        "{at}: reaction journey id {reaction:?} collides with a journey id"
                    ));
                }
            }
        }
        let mut keys = BTreeSet::new();
        for (i, t) in self.templates.iter().enumerate() {
            let at = format!("templates[{i}] ({:?})", t.key());
            if t.key().trim().is_empty() {
                problems.push(format!("{at}: key is empty"));
            } else if !keys.insert(t.key()) {
                problems.push(format!("{at}: key is declared more than once"));
            }
            if t.subject_source().trim().is_empty() {
                problems.push(format!("{at}: subject is empty"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The manifest `describe` returns.
    pub(crate) fn manifest(&self) -> wit::Manifest {
        wit::Manifest {
            journeys: self
                .journeys
                .iter()
                .map(|(j, _)| j.to_wit())
                .chain(self.buckets.iter().flat_map(Bucket::reaction_journeys))
                .collect(),
            templates: self.templates.iter().map(Template::to_wit).collect(),
            buckets: self.buckets.iter().map(Bucket::to_wit).collect(),
        }
    }

    /// Runs handler `invocation.handler`; `Err` is the message the `run` export returns.
    pub(crate) fn run(
        &self,
        invocation: wit::Invocation,
        backend: Box<dyn Backend>,
    ) -> Result<(), String> {
        let wit::Invocation {
            handler,
            run_id,
            person,
            trigger,
        } = invocation;
        let person = Person::from_parts(person.key, person.email, &person.properties_json)?;
        let trigger =
            Event::from_parts(trigger.name, trigger.occurred_at, &trigger.properties_json)?;
        self.dispatch(handler, run_id, person, trigger, backend)
    }

    pub(crate) fn dispatch(
        &self,
        journey: String,
        run_id: String,
        person: Person,
        trigger: Event,
        backend: Box<dyn Backend>,
    ) -> Result<(), String> {
        let Some(handler) = self.handler(&journey) else {
            return Err(self.unknown_handler(&journey));
        };
        let ctx = Ctx::new(journey, run_id, person, trigger, backend);
        handler(&ctx).map_err(|e| render(&*e))
    }

    fn unknown_handler(&self, id: &str) -> String {
        let known: Vec<String> = self
            .handler_ids()
            .iter()
            .map(|id| format!("{id:?}"))
            .collect();
        if known.is_empty() {
            format!("unknown handler {id:?}: this module declares no journeys")
        } else {
            format!(
                "unknown handler {id:?}: this module's journeys are {}",
                known.join(", ")
            )
        }
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("journeys", &self.journeys().collect::<Vec<_>>())
            .field("buckets", &self.buckets)
            .field("templates", &self.templates)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn noop(_: &Ctx) -> JourneyResult {
        Ok(())
    }

    fn fails(ctx: &Ctx) -> JourneyResult {
        Err(format!("no luck for {}", ctx.person().key()).into())
    }

    fn sample() -> Module {
        Module::new()
            .journey(
                journey("welcome")
                    .name("Welcome series")
                    .on("user.signed_up")
                    .once(),
                noop,
            )
            .journey(journey("weekly").on("digest.due").once_per(days(7)), fails)
            .journey(journey("any").on("ping").unlimited().disabled(), noop)
            .template(template("welcome").subject("Hi {{ name }}").body("Body"))
    }

    #[test]
    fn manifest_carries_every_declaration() {
        let m = sample().manifest();
        assert_eq!(
            m.journeys,
            vec![
                wit::JourneyDef {
                    id: "welcome".into(),
                    name: "Welcome series".into(),
                    trigger: "user.signed_up".into(),
                    trigger_where: None,
                    exit_on: vec![],
                    entry_limit: wit::EntryLimit::Once,
                    enabled: true,
                    suppress: 0,
                },
                wit::JourneyDef {
                    id: "weekly".into(),
                    name: "weekly".into(),
                    trigger: "digest.due".into(),
                    trigger_where: None,
                    exit_on: vec![],
                    entry_limit: wit::EntryLimit::OncePer(604_800_000),
                    enabled: true,
                    suppress: 0,
                },
                wit::JourneyDef {
                    id: "any".into(),
                    name: "any".into(),
                    trigger: "ping".into(),
                    trigger_where: None,
                    exit_on: vec![],
                    entry_limit: wit::EntryLimit::Unlimited,
                    enabled: false,
                    suppress: 0,
                },
            ]
        );
        assert_eq!(
            m.templates,
            vec![wit::TemplateDef {
                key: "welcome".into(),
                subject: "Hi {{ name }}".into(),
                body: "Body".into(),
                html: None,
            }]
        );
    }

    #[test]
    fn a_trigger_filter_and_exit_rules_travel_as_criteria_json() {
        let j = journey("trial")
            .on("trial.started")
            .where_(prop("plan").eq("pro"))
            .exit_on("account.deleted")
            .exit_on_where("order.paid", prop("amount").gt(0));
        let m = Module::new().journey(j, noop).manifest();
        let def = &m.journeys[0];
        assert_eq!(
            def.trigger_where.as_deref(),
            Some(r#"{"operator":"eq","property":"plan","type":"property","value":"pro"}"#)
        );
        assert_eq!(
            def.exit_on,
            vec![
                wit::ExitRule {
                    event: "account.deleted".into(),
                    where_: None,
                },
                wit::ExitRule {
                    event: "order.paid".into(),
                    where_: Some(
                        r#"{"operator":"gt","property":"amount","type":"property","value":0}"#
                            .into()
                    ),
                },
            ]
        );
        let bad = Module::new().journey(journey("x").on("y").exit_on(" "), noop);
        assert_eq!(
            bad.validate().unwrap_err(),
            "journeys[0] (\"x\"): an exit_on event name is empty"
        );
    }

    #[test]
    fn default_entry_limit_is_once() {
        assert_eq!(journey("x").on("y").limit(), EntryLimit::Once);
    }

    #[test]
    fn valid_module_validates() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn validation_names_each_field() {
        let m = Module::new()
            .journey(journey("a"), noop)
            .journey(journey("a").on("x"), noop)
            .journey(journey("b").on("x").once_per(millis(0)), noop)
            .template(template("t").subject("s"))
            .template(template("t"));
        let err = m.validate().unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            vec![
                "journeys[0] (\"a\"): trigger is empty; add .on(\"event.name\")",
                "journeys[1] (\"a\"): id is declared more than once",
                "journeys[2] (\"b\"): entry_limit once_per needs a period above zero",
                "templates[1] (\"t\"): key is declared more than once",
                "templates[1] (\"t\"): subject is empty",
            ]
        );
    }

    #[test]
    fn unknown_handler_is_named() {
        let run = crate::testing::TestHost::new().run(
            &sample(),
            "nope",
            Person::new("u1"),
            Event::new("user.signed_up"),
        );
        assert_eq!(
            run.result,
            Err(
                "unknown handler \"nope\": this module's journeys are \"welcome\", \"weekly\", \"any\""
                    .into()
            )
        );
        let empty = crate::testing::TestHost::new().run(
            &Module::new(),
            "nope",
            Person::new("u1"),
            Event::new("x"),
        );
        assert_eq!(
            empty.result,
            Err("unknown handler \"nope\": this module declares no journeys".into())
        );
    }

    #[test]
    fn handler_errors_become_the_run_error() {
        let run = crate::testing::TestHost::new().run(
            &sample(),
            "weekly",
            Person::new("u7"),
            Event::new("digest.due"),
        );
        assert_eq!(run.result, Err("no luck for u7".into()));
    }

    #[test]
    fn invocation_json_is_parsed_or_refused() {
        let inv = |props: &str| wit::Invocation {
            handler: "welcome".into(),
            run_id: "r1".into(),
            person: wit::Person {
                key: "u1".into(),
                email: None,
                properties_json: props.into(),
            },
            trigger: wit::Event {
                name: "user.signed_up".into(),
                occurred_at: 5,
                properties_json: "{}".into(),
            },
        };
        let host = crate::testing::TestHost::new();
        assert_eq!(
            sample().run(inv(r#"{"plan":"pro"}"#), host.backend()),
            Ok(())
        );
        assert_eq!(
            sample().run(inv("42"), host.backend()),
            Err("person properties must be a JSON object, got a number".into())
        );
    }
}
