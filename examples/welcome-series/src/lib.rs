//! Welcome series: a new user gets a welcome email at once, then — two days later — one of two
//! follow-ups, picked at random (an A/B test of two "getting started" emails). Each person
//! enters it once, ever.
//!
//! The coin flip uses `ctx.random()`, which the host journals: when the run wakes up after the
//! two-day sleep and replays from the top, it gets the same number and takes the same branch,
//! and the welcome email already sent is not sent again.

use waymark_guest::prelude::*;

/// `user.signed_up` → welcome → 2 days → tips (variant A) or a guided tour (variant B).
fn welcome_series(ctx: &Ctx) -> JourneyResult {
    let person = ctx.person();
    let plan = person.property_str("plan").unwrap_or("free");
    let signup_source = ctx.trigger().property_str("source").unwrap_or("direct");

    ctx.send_email(email("welcome").var("plan", plan))?;
    ctx.info(format!(
        "welcomed {} (plan {plan}, via {signup_source})",
        person.key()
    ));

    ctx.sleep(days(2), "wait 2 days before the follow-up");

    let variant = if ctx.random().is_multiple_of(2) {
        "tips-a"
    } else {
        "tour-b"
    };
    ctx.send_email(
        email(variant)
            .var("plan", plan)
            .var("variant", variant)
            .var("days_since_signup", 2),
    )?;
    ctx.info(format!("follow-up {variant} sent to {}", person.key()));
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("welcome-series")
            .name("Welcome series")
            .on("user.signed_up")
            .once()
            => welcome_series,
    ],
    templates: [
        template("welcome")
            .subject("Welcome to Waymark, {{ name | default('there') }}!")
            .body(WELCOME_BODY),
        template("tips-a")
            .subject("3 tips to get the most out of your {{ plan }} plan")
            .body(TIPS_A_BODY),
        template("tour-b")
            .subject("{{ name | default('Hey') }}, take the 5-minute tour")
            .body(TOUR_B_BODY),
    ],
}

const WELCOME_BODY: &str = "\
Hi {{ name | default('there') }},

Thanks for signing up — your {{ plan }} account is ready, and we're glad you're here.

Here's how to get going:
  1. Connect your product so events start flowing in.
  2. Create your first bucket of people you care about.
  3. Write a journey for them (or start from one of our examples).

If you have a question, just reply to this email: a real person reads every reply.

Welcome aboard,
The Waymark team

You are receiving this because {{ email }} signed up for Waymark.
";

const TIPS_A_BODY: &str = "\
Hi {{ name | default('there') }},

You've had Waymark for a couple of days now. Three things our happiest {{ plan }} customers do early:

  * Send every signup and purchase as an event — journeys can only react to what they can see.
  * Keep journeys short: one goal per journey, and an exit when the person converts.
  * Test subject lines. Small words make big differences.

Anything stuck? Reply and tell us; we read everything.

The Waymark team
";

const TOUR_B_BODY: &str = "\
Hi {{ name | default('there') }},

Most people find their feet faster with a short guided tour, so we made one: five minutes,
no slides, straight into your own {{ plan }} workspace.

  → Open Waymark and click \"Take the tour\" in the top bar.

By the end you'll have a live journey sending real email to a test contact.

See you inside,
The Waymark team
";

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::testing::{Step, TestHost};

    fn signup() -> (Person, Event) {
        (
            Person::new("user-42")
                .with_email("ada@example.com")
                .with_property("name", "Ada")
                .with_property("plan", "pro"),
            Event::new("user.signed_up").with_property("source", "ads"),
        )
    }

    #[test]
    fn even_random_sends_tips_a_after_two_days() {
        let (person, trigger) = signup();
        let run = TestHost::new().random_values([4]).run(
            &waymark_module(),
            "welcome-series",
            person,
            trigger,
        );
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.emails(), ["welcome", "tips-a"]);
        assert_eq!(run.slept(), days(2));
    }

    #[test]
    fn odd_random_sends_tour_b_with_the_plan() {
        let (person, trigger) = signup();
        let run = TestHost::new().random_values([7]).run(
            &waymark_module(),
            "welcome-series",
            person,
            trigger,
        );
        assert_eq!(run.emails(), ["welcome", "tour-b"]);
        let last = run.steps.iter().rev().find_map(|s| match s {
            Step::SendEmail { vars, .. } => Some(vars.clone()),
            _ => None,
        });
        assert_eq!(last.unwrap()["plan"], json!("pro"));
    }

    #[test]
    fn a_failed_welcome_fails_the_run() {
        let (person, trigger) = signup();
        let run = TestHost::new()
            .failing_template("welcome", "person has no email")
            .run(&waymark_module(), "welcome-series", person, trigger);
        assert!(run.result.unwrap_err().contains("person has no email"));
    }
}
