//! Test guest for the host's durable waits:
//!
//! - `reminder` (on `remind.me`): sleeps until the instant in the trigger's `at` property, then
//!   sends `reminder`.
//! - `big-order` (on `cart.created`): waits up to a day for an `order.paid` of at least 100 and
//!   sends `big-order` with its total, or `no-big-order` on timeout.
//! - `same-name` (on `ping`): waits an hour for the next `ping` (never the trigger itself) and
//!   sends `pong` or `no-pong`.
//! - `chatty` (on `chatter`): checkpoints forever, into the step cap.

use waymark_guest::prelude::*;

fn reminder(ctx: &Ctx) -> JourneyResult {
    let Some(at) = ctx.trigger().property_i64("at") else {
        bail!("remind.me needs an `at` (ms since the epoch)");
    };
    ctx.sleep_until(at, "until the reminder is due");
    ctx.send_email(email("reminder"))?;
    Ok(())
}

fn big_order(ctx: &Ctx) -> JourneyResult {
    ctx.checkpoint("cart created");
    match ctx.wait_for_where("order.paid", prop("total").gte(100), days(1)) {
        Some(order) => ctx.send_email(
            email("big-order").var("total", order.property("total").cloned().unwrap_or_default()),
        )?,
        None => ctx.send_email(email("no-big-order"))?,
    };
    Ok(())
}

fn same_name(ctx: &Ctx) -> JourneyResult {
    match ctx.wait_for("ping", hours(1)) {
        Some(_) => ctx.send_email(email("pong"))?,
        None => ctx.send_email(email("no-pong"))?,
    };
    Ok(())
}

fn chatty(ctx: &Ctx) -> JourneyResult {
    let mut round = 0u64;
    loop {
        round += 1;
        ctx.checkpoint(&format!("round {round}"));
    }
}

waymark_guest::module! {
    journeys: [
        journey("reminder").on("remind.me").unlimited() => reminder,
        journey("big-order").on("cart.created").unlimited() => big_order,
        journey("same-name").on("ping").once() => same_name,
        journey("chatty").on("chatter").unlimited() => chatty,
    ],
    templates: [
        template("reminder").subject("Reminder").body("It is time."),
        template("big-order").subject("Big order").body("Thanks for your order of {{ total }}."),
        template("no-big-order").subject("No big order").body("Still thinking?"),
        template("pong").subject("Pong").body("pong"),
        template("no-pong").subject("No pong").body("no pong"),
    ],
}
