//! Test guest for the enrollment guards, `exitOn` and the journey admin routes.
//!
//! * `trial` on `trial.started`, once, only when the event's `plan` is `pro` or `team`; it
//!   exits on `account.deleted`, on `order.paid` with an `amount` above 0, and when the person
//!   enters the manual bucket `blocked`. Emails `trial-welcome`, sleeps 3 days, emails
//!   `trial-ending`.
//! * `dormant` on `trial.started`, declared disabled: every trigger is skipped.
//! * `digest` on `digest.due`, once per day: sleeps an hour, emails `digest`.
//! * `ping` on `ping`, unlimited: sleeps a day, emails `pong`.
//! * the manual bucket `blocked`, whose enter reaction (`bucket-blocked-on-enter`) does
//!   nothing: a journey that cannot be enrolled into.

use waymark_guest::prelude::*;

fn trial(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("trial-welcome"))?;
    ctx.sleep(days(3), "three days of trial");
    ctx.send_email(email("trial-ending"))?;
    Ok(())
}

fn dormant(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("pong"))?;
    Ok(())
}

fn digest(ctx: &Ctx) -> JourneyResult {
    ctx.sleep(hours(1), "gather the digest");
    ctx.send_email(email("digest"))?;
    Ok(())
}

fn blocked(_: &Ctx) -> JourneyResult {
    Ok(())
}

fn ping(ctx: &Ctx) -> JourneyResult {
    ctx.sleep(days(1), "a day later");
    ctx.send_email(email("pong"))?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("trial")
            .name("Trial")
            .on("trial.started")
            .where_(prop("plan").is_in(["pro", "team"]))
            .once()
            .exit_on("account.deleted")
            .exit_on_where("order.paid", prop("amount").gt(0))
            .exit_on("bucket:entered:blocked") => trial,
        journey("dormant").on("trial.started").unlimited().disabled() => dormant,
        journey("digest").on("digest.due").once_per(days(1)) => digest,
        journey("ping").on("ping").unlimited() => ping,
    ],
    buckets: [
        bucket("blocked").name("Blocked").manual().on_enter(blocked),
    ],
    templates: [
        template("trial-welcome").subject("Welcome to your trial").body("Hi {{ key }}."),
        template("trial-ending").subject("Your trial is ending").body("Hi {{ key }}."),
        template("digest").subject("Your digest").body("Digest."),
        template("pong").subject("Pong").body("Pong."),
    ],
}
