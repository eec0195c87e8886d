//! Trial conversion: when a trial starts the person gets a welcome email, then the journey
//! waits up to three days for their first payment. If `order.paid` comes, they get a thank-you
//! (with the amount); if it does not, they get a "your trial is ending" nudge. Each person
//! enters once, ever, and `account.deleted` ends their run wherever it is.
//!
//! The wait is durable: the run is parked in the database, holding nothing in memory, and wakes
//! the moment the person's `order.paid` is ingested — or when the three days are up. Either way
//! the answer is journaled, so a replay takes the same branch and sends nothing twice.

use waymark_guest::prelude::*;

/// `trial.started` → welcome → wait ≤ 3 days for `order.paid` → thanks, or trial ending.
fn trial_conversion(ctx: &Ctx) -> JourneyResult {
    let plan = ctx.trigger().property_str("plan").unwrap_or("pro");
    ctx.send_email(email("trial-welcome").var("plan", plan))?;

    ctx.checkpoint("waiting for the first payment");
    match ctx.wait_for("order.paid", days(3)) {
        Some(order) => {
            let amount = order.property("amount").cloned().unwrap_or(Value::Null);
            ctx.send_email(email("trial-thanks").var("plan", plan).var("amount", amount))?;
            ctx.info(format!("{} converted", ctx.person().key()));
        }
        None => {
            ctx.send_email(email("trial-ending").var("plan", plan))?;
            ctx.info(format!("{} has not paid yet", ctx.person().key()));
        }
    }
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("trial-conversion")
            .name("Trial conversion")
            .on("trial.started")
            .once()
            .exit_on("account.deleted")
            => trial_conversion,
    ],
    templates: [
        template("trial-welcome")
            .subject("Your {{ plan }} trial has started")
            .body(WELCOME_BODY),
        template("trial-thanks")
            .subject("Thank you for upgrading to {{ plan }}!")
            .body(THANKS_BODY),
        template("trial-ending")
            .subject("{{ name | default('Hi') }}, your {{ plan }} trial is ending soon")
            .body(ENDING_BODY),
    ],
}

const WELCOME_BODY: &str = "\
Hi {{ name | default('there') }},

Your {{ plan }} trial is live. Everything is unlocked for the next two weeks: connect your
product, build a bucket, and send your first journey.

Reply to this email if anything gets in your way.

The Waymark team
";

const THANKS_BODY: &str = "\
Hi {{ name | default('there') }},

Thank you for your payment{% if amount %} of {{ amount }}{% endif %}: your {{ plan }} plan is
active. Nothing else to do — your journeys keep running.

The Waymark team
";

const ENDING_BODY: &str = "\
Hi {{ name | default('there') }},

Your {{ plan }} trial ends soon. Upgrade now to keep your buckets and journeys running without
a break.

The Waymark team
";
