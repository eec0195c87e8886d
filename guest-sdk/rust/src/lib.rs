//! # waymark-guest — write Waymark journeys in Rust
//!
//! A Waymark module is a WebAssembly component that declares journeys (durable, per-person
//! programs started by an event), buckets (named sets of contacts the host keeps up to date,
//! with reactions when someone enters or leaves) and the email templates they send. This crate
//! hides the WIT plumbing: you write plain handlers over a [`Ctx`] and list them, with their
//! metadata, in [`module!`].
//!
//! ```no_run
//! use waymark_guest::prelude::*;
//!
//! fn welcome(ctx: &Ctx) -> JourneyResult {
//!     ctx.send_email(email("welcome"))?; // to = the person's email by default
//!     ctx.sleep(days(2), "wait 2 days");
//!     // ctx.random() is journaled, so a replay takes the same branch.
//!     let variant = if ctx.random() % 2 == 0 { "tips-a" } else { "tips-b" };
//!     let plan = ctx.person().property_str("plan").unwrap_or("free");
//!     ctx.send_email(email(variant).var("plan", plan))?;
//!     Ok(())
//! }
//!
//! waymark_guest::module! {
//!     journeys: [
//!         journey("welcome-series").name("Welcome series").on("user.signed_up").once() => welcome,
//!     ],
//!     templates: [
//!         template("welcome")
//!             .subject("Welcome, {{ name | default('there') }}")
//!             .body("Hi {{ name | default('there') }}, thanks for signing up."),
//!         template("tips-a").subject("Three tips").body("Tip one: ..."),
//!         template("tips-b").subject("Getting more from {{ plan }}").body("..."),
//!     ],
//! }
//! ```
//!
//! ## Buckets
//!
//! A bucket's membership follows its [criteria](criteria) — conditions on the contact's
//! properties and on how often the person fired events, optionally within a window:
//!
//! ```no_run
//! use waymark_guest::prelude::*;
//!
//! fn welcome_power_user(ctx: &Ctx) -> JourneyResult {
//!     ctx.send_email(email("power-welcome"))?;
//!     Ok(())
//! }
//!
//! fn win_back(ctx: &Ctx) -> JourneyResult {
//!     ctx.sleep(days(3), "give them a moment");
//!     ctx.send_email(email("win-back"))?;
//!     Ok(())
//! }
//!
//! waymark_guest::module! {
//!     buckets: [
//!         bucket("power-users")
//!             .name("Power users")
//!             .criteria(all([
//!                 event("feature.used").within(days(7)).at_least(5),
//!                 prop("plan").is_in(["pro", "team"]),
//!             ]))
//!             .on_enter(welcome_power_user)
//!             .first_entry_only()
//!             .on_leave(win_back)
//!             .leave_reasons(["criteria"]),
//!         bucket("beta-testers").name("Beta testers").manual(),
//!     ],
//!     templates: [
//!         template("power-welcome").subject("You're a power user").body("..."),
//!         template("win-back").subject("We miss you").body("..."),
//!     ],
//! }
//! ```
//!
//! Reactions are journeys: the host runs `on_enter` on the `bucket:entered:<id>` event (whose
//! properties carry `isFirstEntry` and `entryCount`) and `on_leave` on `bucket:left:<id>`
//! (with `reason`), as journeys `bucket-<id>-on-enter` / `bucket-<id>-on-leave`. An enter
//! reaction that sleeps and follows up can stop when the person leaves the bucket:
//! [`Bucket::enter_until_left`] (or any exit rule with [`Bucket::enter_exit_on`]).
//!
//! Criteria kept as JSON in the documented schema become a [`Criteria`] with
//! [`Criteria::from_json`].
//!
//! Build it as a `cdylib` for `wasm32-wasip2` (`waymark build`, or
//! `cargo build --release --target wasm32-wasip2`); the result is a component ready to load.
//!
//! ## How a run executes
//!
//! The host never keeps a sleeping instance around. Each activation of a run calls your
//! handler **from the top**; every [`Ctx`] call that already happened in an earlier activation
//! returns its recorded result instantly (no second email, same `now()`, same `random()`), and
//! the first new call is performed and recorded. `ctx.sleep(..)` ends the activation; the next
//! one starts when the time has come. So handlers must be deterministic apart from what they
//! learn through `Ctx` — the sandbox has no clock, randomness, files or network of its own
//! (WASI clocks and random are journaled too).
//!
//! Returning `Err` fails the run with the error's message; a panic fails it as a trap (the
//! panic message is also logged to the host). [`testing::TestHost`] runs handlers natively in
//! your unit tests, and `module!` adds a `#[test]` that checks your declarations.

mod bucket;
pub mod criteria;
mod ctx;
mod duration;
mod email;
mod error;
pub mod history;
mod journey;
mod members;
mod module;
mod reaction;
pub mod testing;

pub use bucket::{Bucket, DwellSchedule, LEAVE_REASONS, after, bucket, every};
pub use criteria::{Criteria, CriteriaError, all, any, event, not, prop};
pub use ctx::{Ctx, EffectError, Event, Level, Person, TimestampMs};
pub use duration::{Duration, days, hours, millis, minutes, seconds, weeks};
pub use email::{Email, EmailId, SendEmailError, email};
pub use error::{Error, JourneyResult};
pub use history::{EmailHistory, HistoryError, JourneyHistory};
pub use journey::{EntryLimit, Journey, Template, journey, template};
pub use members::{BucketReadError, Member, MemberPage, MemberPageRequest};
pub use module::{Handler, Module};
pub use reaction::BucketTransition;
/// JSON values for properties and template vars (re-exported `serde_json`).
pub use serde_json as json;

/// Everything a module usually needs: `use waymark_guest::prelude::*;`.
pub mod prelude {
    pub use crate::bail;
    pub use crate::criteria::CountOp;
    pub use crate::{
        Bucket, BucketReadError, Criteria, Ctx, Duration, DwellSchedule, Email, EmailId,
        EntryLimit, Error, Event, JourneyResult, Level, Member, MemberPage, MemberPageRequest,
        Module, Person, SendEmailError, after, all, any, bucket, days, email, event, every, hours,
        journey, millis, minutes, not, prop, seconds, template, weeks,
    };
    pub use serde_json::{Map, Value, json};
}

/// The WIT interfaces, as the SDK sees them.
pub(crate) use __private::bindings::waymark::journey as wit;

/// Declares the module: its journeys, each with its handler, its buckets (with their
/// reaction handlers) and its email templates.
///
/// ```no_run
/// use waymark_guest::prelude::*;
/// # fn welcome(_: &Ctx) -> JourneyResult { Ok(()) }
/// # fn nudge(_: &Ctx) -> JourneyResult { Ok(()) }
/// # fn hello_pro(_: &Ctx) -> JourneyResult { Ok(()) }
/// waymark_guest::module! {
///     journeys: [
///         journey("welcome").on("user.signed_up") => welcome,
///         journey("nudge").on("trial.started").once_per(days(30)) => nudge,
///     ],
///     buckets: [
///         bucket("pro").criteria(prop("plan").eq("pro")).on_enter(hello_pro),
///     ],
///     templates: [
///         template("welcome").subject("Welcome!").body("Hi {{ name }}"),
///     ],
/// }
/// ```
///
/// The sections come in this order and each may be left out (a module needs a journey or a
/// bucket). Invoke it once per crate, at the crate root. It generates:
/// - `pub fn waymark_module() -> waymark_guest::Module` — the declarations, for your tests;
/// - the component's `describe` and `run` exports (dispatching on the journey id);
/// - a `#[test] waymark_module_is_valid` that runs [`Module::validate`].
#[macro_export]
macro_rules! module {
    (
        $( journeys: [ $( $journey:expr => $handler:expr ),* $(,)? ] $(,)? )?
        $( buckets: [ $( $bucket:expr ),* $(,)? ] $(,)? )?
        $( templates: [ $( $template:expr ),* $(,)? ] $(,)? )?
    ) => {
        /// This module's journeys, buckets and templates, as declared in
        /// `waymark_guest::module!`.
        pub fn waymark_module() -> $crate::Module {
            $crate::Module::new()
                $( $( .journey($journey, $handler) )* )?
                $( $( .bucket($bucket) )* )?
                $( $( .template($template) )* )?
        }

        #[doc(hidden)]
        struct __WaymarkModule;

        impl $crate::__private::bindings::Guest for __WaymarkModule {
            fn describe() -> $crate::__private::bindings::Manifest {
                $crate::__private::describe(&waymark_module())
            }

            fn run(
                invocation: $crate::__private::bindings::Invocation,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::__private::run(&waymark_module(), invocation)
            }
        }

        $crate::__private::export!(__WaymarkModule with_types_in $crate::__private::bindings);

        #[cfg(test)]
        #[test]
        fn waymark_module_is_valid() {
            if let ::core::result::Result::Err(problems) = waymark_module().validate() {
                ::core::panic!("invalid waymark module:\n{problems}");
            }
        }
    };
}

/// Implementation details used by [`module!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use crate::ctx::{Backend, Event, Level, TimestampMs};
    use crate::members::{Member, MemberPage, MemberPageRequest};
    use crate::module::Module;

    #[allow(missing_docs, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "journey-module",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "$crate::__private::bindings",
            additional_derives: [PartialEq, Eq],
        });
    }

    pub use bindings::export;
    use bindings::waymark::journey::{context, types};

    /// The `describe` export.
    pub fn describe(module: &Module) -> bindings::Manifest {
        module.manifest()
    }

    /// The `run` export.
    pub fn run(module: &Module, invocation: bindings::Invocation) -> Result<(), String> {
        install_panic_hook();
        module.run(invocation, Box::new(WitBackend))
    }

    /// Reports panics through the host log too (stderr may go nowhere), then as usual.
    fn install_panic_hook() {
        #[cfg(target_arch = "wasm32")]
        {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let previous = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    context::log(types::LogLevel::Error, &format!("journey panicked: {info}"));
                    previous(info);
                }));
            });
        }
    }

    /// The real host: the WIT `context` imports.
    struct WitBackend;

    impl Backend for WitBackend {
        fn now(&self) -> TimestampMs {
            context::now()
        }

        fn random(&self) -> u64 {
            context::random()
        }

        fn sleep(&self, duration_ms: u64, label: Option<&str>) {
            context::sleep(duration_ms, label);
        }

        fn sleep_until(&self, at: TimestampMs, label: Option<&str>) {
            context::sleep_until(at, label);
        }

        fn wait_for_event(
            &self,
            name: &str,
            where_json: Option<&str>,
            timeout_ms: u64,
            label: Option<&str>,
        ) -> Result<Option<Event>, String> {
            match context::wait_for_event(name, where_json, timeout_ms, label)? {
                None => Ok(None),
                Some(event) => {
                    Event::from_parts(event.name, event.occurred_at, &event.properties_json)
                        .map(Some)
                }
            }
        }

        fn checkpoint(&self, label: &str) {
            context::checkpoint(label);
        }

        fn trigger(
            &self,
            name: &str,
            person_key: Option<&str>,
            properties_json: &str,
        ) -> Result<(), String> {
            context::trigger(name, person_key, properties_json)
        }

        fn update_contact(&self, properties_json: &str) -> Result<(), String> {
            context::update_contact(properties_json)
        }

        fn history_event_count(
            &self,
            person_key: Option<&str>,
            name: &str,
            within_ms: Option<u64>,
        ) -> Result<u64, String> {
            context::history_event_count(person_key, name, within_ms)
        }

        fn history_event_count_since(
            &self,
            person_key: Option<&str>,
            name: &str,
            since: Option<TimestampMs>,
        ) -> Result<u64, String> {
            context::history_event_count_since(person_key, name, since)
        }

        fn history_journey(
            &self,
            person_key: Option<&str>,
            journey: &str,
        ) -> Result<crate::history::JourneyHistory, String> {
            context::history_journey(person_key, journey).map(|h| crate::history::JourneyHistory {
                entries: h.entries,
                completed: h.completed,
                last_completed_at: h.last_completed_at,
            })
        }

        fn history_email(
            &self,
            to: Option<&str>,
            template: &str,
        ) -> Result<crate::history::EmailHistory, String> {
            context::history_email(to, template).map(|h| crate::history::EmailHistory {
                count: h.count,
                last_sent_at: h.last_sent_at,
            })
        }

        fn send_email(
            &self,
            template: &str,
            to: Option<&str>,
            vars_json: &str,
        ) -> Result<String, String> {
            context::send_email(&types::Email {
                template: template.to_owned(),
                to: to.map(str::to_owned),
                vars_json: vars_json.to_owned(),
            })
        }

        fn log(&self, level: Level, message: &str) {
            let level = match level {
                Level::Trace => types::LogLevel::Trace,
                Level::Debug => types::LogLevel::Debug,
                Level::Info => types::LogLevel::Info,
                Level::Warn => types::LogLevel::Warn,
                Level::Error => types::LogLevel::Error,
            };
            context::log(level, message);
        }

        fn is_subscribed(&self) -> bool {
            context::is_subscribed()
        }

        fn bucket_count(&self, bucket: &str) -> Result<u64, String> {
            context::bucket_count(bucket)
        }

        fn bucket_has(&self, bucket: &str, person_key: &str) -> Result<bool, String> {
            context::bucket_has(bucket, person_key)
        }

        fn bucket_members(
            &self,
            bucket: &str,
            page: &MemberPageRequest,
        ) -> Result<MemberPage, String> {
            let request = types::MemberPageRequest {
                limit: page.requested_limit(),
                cursor: page.cursor().map(str::to_owned),
            };
            context::bucket_members(bucket, &request).map(|page| MemberPage {
                members: page
                    .members
                    .into_iter()
                    .map(|m| Member {
                        key: m.key,
                        email: m.email,
                        entered_at: m.entered_at,
                        entry_count: m.entry_count,
                    })
                    .collect(),
                next_cursor: page.next_cursor,
                total: page.total,
            })
        }
    }
}
