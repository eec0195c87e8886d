//! Win-back: two buckets the host keeps up to date from the events your product sends, and
//! the emails their members get when they join or leave.
//!
//! * **Power users** — people who sent at least five `feature.used` events in the last seven
//!   days. Joining sends `power-user-welcome` (a "welcome back" on a second or later entry);
//!   leaving — their count within the window fell below five — sends `power-user-missed-you`.
//! * **Went dormant** — people who were active (`app.active`) at some point, but not in the
//!   last seven days. Joining sends `we-miss-you`; still dormant three days later, they get
//!   the `win-back-offer` (a dwell reaction: once per dormant spell).
//!
//! Buckets are declarative: the host evaluates their criteria natively whenever an event
//! that can change them arrives, and records every change of membership as an event
//! (`bucket:entered:<id>`, `bucket:left:<id>`). The reactions below are ordinary journeys
//! started by those events.
//!
//! What moves these buckets: an event arriving, and the clock. The count of `feature.used` is
//! re-checked whenever a `feature.used` arrives; the host's reconcile job (every minute by
//! default) does the time-driven half — a power user whose week went quiet leaves when their
//! count falls below five, someone with no `app.active` for seven days joins `went-dormant`,
//! and three days into that membership the dwell reaction runs. Their next `app.active` makes
//! them leave, and a later dormant spell is a new membership whose dwell runs again. In dev
//! mode, advancing the clock (`POST /v1/admin/clock/advance`) runs the job for the ticks it
//! passed over, so a demo needs no real waiting.

use waymark_guest::prelude::*;

/// How many uses of a feature within [`window`] make a power user.
const POWER_USES: u64 = 5;

/// The window both buckets look back over.
fn window() -> Duration {
    days(7)
}

/// Power users: at least five `feature.used` in the last seven days.
fn power_users() -> Criteria {
    event("feature.used").within(window()).at_least(POWER_USES)
}

/// Went dormant: did `app.active` at some point, and not in the last seven days.
fn went_dormant() -> Criteria {
    all([
        event("app.active").exists(),
        event("app.active").within(window()).not_exists(),
    ])
}

/// `bucket:entered:power-users` → the welcome email (or a welcome back).
fn welcome_power_user(ctx: &Ctx) -> JourneyResult {
    let entry_count = ctx.trigger().property_i64("entryCount").unwrap_or(1);
    ctx.send_email(email("power-user-welcome").var("entry_count", entry_count))?;
    ctx.info(format!(
        "{} became a power user (entry {entry_count})",
        ctx.person().key()
    ));
    Ok(())
}

/// `bucket:left:power-users` → we noticed you slowed down.
fn miss_power_user(ctx: &Ctx) -> JourneyResult {
    let reason = ctx.trigger().property_str("reason").unwrap_or("criteria");
    ctx.send_email(email("power-user-missed-you"))?;
    ctx.info(format!(
        "{} is no longer a power user ({reason})",
        ctx.person().key()
    ));
    Ok(())
}

/// `bucket:entered:went-dormant` → come back.
fn win_back(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("we-miss-you"))?;
    Ok(())
}

/// `bucket:dwell:went-dormant:after-259200000` (three days dormant) → an offer.
fn win_back_offer(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("win-back-offer"))?;
    ctx.info(format!("{} has been dormant for 10 days", ctx.person().key()));
    Ok(())
}

waymark_guest::module! {
    buckets: [
        bucket("went-dormant")
            .name("Went dormant")
            .description("Active at some point, but not in the last 7 days")
            .criteria(went_dormant())
            .on_enter(win_back)
            .on_dwell(after(days(3)), win_back_offer),
        bucket("power-users")
            .name("Power users")
            .description("Used a feature at least 5 times in the last 7 days")
            .criteria(power_users())
            .on_enter(welcome_power_user)
            .on_leave(miss_power_user),
    ],
    templates: [
        template("power-user-welcome")
            .subject("{% if entry_count > 1 %}Welcome back{% else %}You're a power user{% endif %}, {{ name | default('friend') }}!")
            .body(POWER_USER_WELCOME_BODY),
        template("power-user-missed-you")
            .subject("We missed you this week, {{ name | default('friend') }}")
            .body(POWER_USER_MISSED_YOU_BODY),
        template("we-miss-you")
            .subject("It's been a while, {{ name | default('friend') }}")
            .body(WE_MISS_YOU_BODY),
        template("win-back-offer")
            .subject("A month on us, {{ name | default('friend') }}")
            .body(WIN_BACK_OFFER_BODY),
    ],
}

const POWER_USER_WELCOME_BODY: &str = "\
Hi {{ name | default('there') }},

{% if entry_count > 1 %}You're back among our power users — that's {{ entry_count }} times now.{% else %}You've used Waymark five times this week: that makes you one of our power users.{% endif %}

Power users get early access to new features. Reply to this email if you'd like to try them.

The Waymark team

You are receiving this because {{ email }} uses Waymark.
";

const POWER_USER_MISSED_YOU_BODY: &str = "\
Hi {{ name | default('there') }},

You were one of our most active users, and this week has been quieter. If something got in
your way, reply and tell us — a real person reads every reply.

The Waymark team

You are receiving this because {{ email }} uses Waymark.
";

const WE_MISS_YOU_BODY: &str = "\
Hi {{ name | default('there') }},

We haven't seen you in a week. Everything you set up is still where you left it.

The Waymark team

You are receiving this because {{ email }} uses Waymark.
";

const WIN_BACK_OFFER_BODY: &str = "\
Hi {{ name | default('there') }},

It's been ten days. Come back this week and your next month is on us — just log in.

The Waymark team

You are receiving this because {{ email }} uses Waymark.
";

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::testing::{Step, TestHost, describe};

    #[test]
    fn the_manifest_declares_both_buckets_with_their_criteria_and_reactions() {
        let manifest = describe(&waymark_module());

        assert_eq!(manifest["journeys"], json!([]));
        let buckets = manifest["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 2);

        let dormant = &buckets[0];
        assert_eq!(dormant["id"], "went-dormant");
        assert_eq!(dormant["name"], "Went dormant");
        assert_eq!(dormant["kind"], "computed");
        assert_eq!(dormant["enabled"], true);
        assert_eq!(
            dormant["criteria"],
            json!({"type": "all", "conditions": [
                {"type": "event", "event": "app.active", "check": "exists"},
                {"type": "event", "event": "app.active", "check": "not_exists",
                 "withinMs": 604_800_000},
            ]})
        );
        assert_eq!(
            dormant["reactions"],
            json!([{"journeyId": "bucket-went-dormant-on-enter",
                    "handler": "bucket-went-dormant-on-enter",
                    "on": {"enter": {"firstEntryOnly": false}}},
                   {"journeyId": "bucket-went-dormant-on-dwell-after-259200000",
                    "handler": "bucket-went-dormant-on-dwell-after-259200000",
                    "on": {"dwell": {"afterMs": 259_200_000, "everyMs": null}}}])
        );

        let power = &buckets[1];
        assert_eq!(power["id"], "power-users");
        assert_eq!(power["name"], "Power users");
        assert_eq!(power["kind"], "computed");
        assert_eq!(power["entryLimit"], "unlimited");
        assert_eq!(
            power["criteria"],
            json!({"type": "event", "event": "feature.used", "check": "count",
                   "operator": "gte", "value": 5, "withinMs": 604_800_000})
        );
        assert_eq!(
            power["reactions"],
            json!([
                {"journeyId": "bucket-power-users-on-enter",
                 "handler": "bucket-power-users-on-enter",
                 "on": {"enter": {"firstEntryOnly": false}}},
                {"journeyId": "bucket-power-users-on-leave",
                 "handler": "bucket-power-users-on-leave",
                 "on": {"leave": {"reasons": null}}},
            ])
        );

        let templates: Vec<&str> = manifest["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            templates,
            [
                "power-user-welcome",
                "power-user-missed-you",
                "we-miss-you",
                "win-back-offer"
            ]
        );
    }

    fn ada() -> Person {
        Person::new("ada")
            .with_email("ada@example.com")
            .with_property("name", "Ada")
    }

    #[test]
    fn entering_power_users_sends_the_welcome_with_the_entry_count() {
        let entered = Event::new("bucket:entered:power-users")
            .with_property("entryCount", 2)
            .with_property("isFirstEntry", false);

        let run = TestHost::new().run(
            &waymark_module(),
            "bucket-power-users-on-enter",
            ada(),
            entered,
        );

        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["power-user-welcome"]);
        match &run.steps[0] {
            Step::SendEmail { vars, .. } => assert_eq!(vars["entry_count"], json!(2)),
            other => panic!("expected the welcome email first, got {other:?}"),
        }
    }

    #[test]
    fn three_days_dormant_sends_the_win_back_offer() {
        let dwell = Event::new("bucket:dwell:went-dormant:after-259200000")
            .with_property("transition", "dwell")
            .with_property("dwellCount", 1);

        let run = TestHost::new().run(
            &waymark_module(),
            "bucket-went-dormant-on-dwell-after-259200000",
            ada(),
            dwell,
        );

        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["win-back-offer"]);
    }

    #[test]
    fn leaving_power_users_sends_the_missed_you_email() {
        let left = Event::new("bucket:left:power-users").with_property("reason", "criteria");

        let run = TestHost::new().run(
            &waymark_module(),
            "bucket-power-users-on-leave",
            ada(),
            left,
        );

        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["power-user-missed-you"]);
    }

    #[test]
    fn going_dormant_sends_the_win_back_email() {
        let run = TestHost::new().run(
            &waymark_module(),
            "bucket-went-dormant-on-enter",
            ada(),
            Event::new("bucket:entered:went-dormant"),
        );

        assert_eq!(run.emails(), ["we-miss-you"]);
    }
}
