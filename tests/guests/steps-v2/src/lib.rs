//! Test guest: journey `steps` (trigger `test.steps`), version 2:
//! step 0 sleep 1 day → step 1 send `step-one` → step 2 send `step-two` → done.
//! Same id and trigger as `steps-v1`, whose journal starts with a send-email: replaying it
//! with this version diverges at step 0.

use waymark_guest::prelude::*;

fn steps(ctx: &Ctx) -> JourneyResult {
    ctx.sleep(days(1), "one day");
    ctx.send_email(email("step-one").var("version", 2))?;
    ctx.send_email(email("step-two").var("version", 2))?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("steps").name("Steps (v2)").on("test.steps").unlimited() => steps,
    ],
    templates: [
        template("step-one").subject("Step one (v{{ version }})").body("Hello {{ key }}, this is step one."),
        template("step-two").subject("Step two (v{{ version }})").body("Hello {{ key }}, this is step two."),
    ],
}
