//! Journey and template declarations: what `describe` tells the host.

use crate::criteria::Criteria;
use crate::duration::{Duration, to_millis};
use crate::wit::types as wit;

/// How often one person may enter a journey. Whatever the limit, a person has at most one
/// live run of a journey at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryLimit {
    /// At most one run per person, ever.
    Once,
    /// At most one run per person per period, counted from the start of their latest run.
    OncePer(Duration),
    /// As many runs as triggers (one live at a time).
    Unlimited,
}

impl EntryLimit {
    pub(crate) fn to_wit(self) -> wit::EntryLimit {
        match self {
            EntryLimit::Once => wit::EntryLimit::Once,
            EntryLimit::OncePer(period) => wit::EntryLimit::OncePer(to_millis(period)),
            EntryLimit::Unlimited => wit::EntryLimit::Unlimited,
        }
    }
}

/// Starts declaring a journey with the given id (unique within the module).
///
/// The defaults are: name = id, entry limit [`EntryLimit::Once`], enabled, every trigger event
/// (no `where_`), no exit events. A trigger is required: set it with [`Journey::on`].
///
/// ```
/// use waymark_guest::prelude::*;
/// let j = journey("trial-nudge")
///     .name("Trial nudge")
///     .on("trial.started")
///     .where_(prop("plan").is_in(["pro", "team"]))
///     .once_per(days(30))
///     .exit_on("account.deleted")
///     .exit_on_where("order.paid", prop("amount").gt(0));
/// assert_eq!(j.limit(), EntryLimit::OncePer(days(30)));
/// assert_eq!(j.display_name(), "Trial nudge");
/// assert_eq!(j.exit_events().collect::<Vec<_>>(), ["account.deleted", "order.paid"]);
/// ```
pub fn journey(id: impl Into<String>) -> Journey {
    Journey {
        id: id.into(),
        name: None,
        trigger: String::new(),
        trigger_where: None,
        exit_on: Vec::new(),
        entry_limit: EntryLimit::Once,
        enabled: true,
        suppress: Duration::ZERO,
    }
}

/// A journey's metadata, built with [`journey`]. Paired with its handler in
/// [`module!`](crate::module).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a journey declaration does nothing until it is listed in `module!`"]
pub struct Journey {
    id: String,
    name: Option<String>,
    trigger: String,
    trigger_where: Option<Criteria>,
    exit_on: Vec<(String, Option<Criteria>)>,
    entry_limit: EntryLimit,
    enabled: bool,
    suppress: Duration,
}

impl Journey {
    /// Display name shown in the host's UI and API. Defaults to the id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The event that starts a run (exact name match), e.g. `"user.signed_up"`.
    pub fn on(mut self, event: impl Into<String>) -> Self {
        self.trigger = event.into();
        self
    }

    /// Starts a run only when `condition` holds on the trigger event's properties (not the
    /// contact's): build it with [`prop`](crate::criteria::prop), [`all`](crate::criteria::all),
    /// [`any`](crate::criteria::any) and [`not`](crate::criteria::not); event conditions are
    /// refused by the host. A trigger it does not hold for is skipped as
    /// `trigger_conditions_not_met`. Calling it again replaces the condition.
    pub fn where_(mut self, condition: Criteria) -> Self {
        self.trigger_where = Some(condition);
        self
    }

    /// The person's live run of this journey ends (status `exited`) when they fire `event`,
    /// e.g. `"account.deleted"` or a bucket's `"bucket:left:<id>"`. Repeatable.
    pub fn exit_on(mut self, event: impl Into<String>) -> Self {
        self.exit_on.push((event.into(), None));
        self
    }

    /// Like [`Journey::exit_on`], only when `condition` holds on that event's properties.
    pub fn exit_on_where(mut self, event: impl Into<String>, condition: Criteria) -> Self {
        self.exit_on.push((event.into(), Some(condition)));
        self
    }

    /// A person enters this journey at most once, ever (the default).
    pub fn once(self) -> Self {
        self.entry_limit(EntryLimit::Once)
    }

    /// A person enters at most once per `period`, counted from the start of their latest run.
    pub fn once_per(self, period: Duration) -> Self {
        self.entry_limit(EntryLimit::OncePer(period))
    }

    /// Every trigger starts a run, as long as the person has no live run of this journey.
    pub fn unlimited(self) -> Self {
        self.entry_limit(EntryLimit::Unlimited)
    }

    /// Sets the entry limit explicitly.
    pub fn entry_limit(mut self, limit: EntryLimit) -> Self {
        self.entry_limit = limit;
        self
    }

    /// Starts no new runs; runs already started continue. Same as `.enabled(false)`.
    pub fn disabled(self) -> Self {
        self.enabled(false)
    }

    /// Whether the journey starts new runs (default `true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The least time between two emails this journey sends to one address, across all its
    /// runs: a send within the window is recorded as suppressed and not delivered. Zero (the
    /// default) disables it.
    ///
    /// ```
    /// use waymark_guest::prelude::*;
    /// let j = journey("nudges").on("cart.abandoned").unlimited().suppress(hours(12));
    /// assert_eq!(j.suppress_window(), hours(12));
    /// ```
    pub fn suppress(mut self, window: Duration) -> Self {
        self.suppress = window;
        self
    }

    /// The suppress window (zero: none).
    pub fn suppress_window(&self) -> Duration {
        self.suppress
    }

    /// The journey id (the handler id the host runs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name (the id unless [`Journey::name`] set one).
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// The trigger event name (empty until [`Journey::on`] is called).
    pub fn trigger(&self) -> &str {
        &self.trigger
    }

    /// The condition on the trigger event's properties, if any.
    pub fn trigger_condition(&self) -> Option<&Criteria> {
        self.trigger_where.as_ref()
    }

    /// The names of the events that end a live run, in declaration order.
    pub fn exit_events(&self) -> impl Iterator<Item = &str> {
        self.exit_on.iter().map(|(event, _)| event.as_str())
    }

    /// The condition of each exit rule, in order (`None` for a plain [`Journey::exit_on`]).
    pub(crate) fn exit_conditions(&self) -> impl Iterator<Item = Option<&Criteria>> {
        self.exit_on.iter().map(|(_, c)| c.as_ref())
    }

    /// The entry limit.
    pub fn limit(&self) -> EntryLimit {
        self.entry_limit
    }

    /// Whether the journey starts new runs.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn to_wit(&self) -> wit::JourneyDef {
        wit::JourneyDef {
            id: self.id.clone(),
            name: self.display_name().to_owned(),
            trigger: self.trigger.clone(),
            trigger_where: self.trigger_where.as_ref().map(Criteria::to_json_string),
            exit_on: self
                .exit_on
                .iter()
                .map(|(event, condition)| wit::ExitRule {
                    event: event.clone(),
                    where_: condition.as_ref().map(Criteria::to_json_string),
                })
                .collect(),
            entry_limit: self.entry_limit.to_wit(),
            enabled: self.enabled,
            suppress: to_millis(self.suppress),
        }
    }
}

/// Starts declaring an email template with the given key (what [`email`](crate::email)
/// refers to).
///
/// Subject, body and HTML body are [minijinja](https://docs.rs/minijinja) templates, rendered
/// by the host with the person's properties, `email`, `key` and `unsubscribe_url` (the
/// person's signed unsubscribe link), overlaid by the send's vars. The HTML body is rendered
/// with HTML escaping; with one, the email carries both (multipart/alternative). A template
/// of the same key that the tenant stores through the API (`PUT /v1/templates/{key}`) takes
/// precedence over the module's.
///
/// ```
/// use waymark_guest::prelude::*;
/// let t = template("welcome")
///     .subject("Welcome, {{ name | default('there') }}")
///     .body("Hi {{ name | default('there') }},\n\nthanks for signing up.")
///     .html("<p>Hi {{ name | default('there') }}!</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>");
/// assert_eq!(t.key(), "welcome");
/// assert!(t.html_source().is_some());
/// ```
pub fn template(key: impl Into<String>) -> Template {
    Template {
        key: key.into(),
        subject: String::new(),
        body: String::new(),
        html: None,
    }
}

/// An email template shipped by the module, built with [`template`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a template declaration does nothing until it is listed in `module!`"]
pub struct Template {
    key: String,
    subject: String,
    body: String,
    html: Option<String>,
}

impl Template {
    /// The subject line (a minijinja template).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// The plain-text body (a minijinja template).
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The HTML body (a minijinja template, rendered with HTML escaping).
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    /// The template key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subject template.
    pub fn subject_source(&self) -> &str {
        &self.subject
    }

    /// The body template.
    pub fn body_source(&self) -> &str {
        &self.body
    }

    /// The HTML body template, if any.
    pub fn html_source(&self) -> Option<&str> {
        self.html.as_deref()
    }

    pub(crate) fn to_wit(&self) -> wit::TemplateDef {
        wit::TemplateDef {
            key: self.key.clone(),
            subject: self.subject.clone(),
            body: self.body.clone(),
            html: self.html.clone(),
        }
    }
}
