//! Test guest: journey `steps` (trigger `test.steps`), version 3: `steps-v1` with a step
//! appended after the sleep — step 0 send `step-one` → step 1 sleep 1 day → step 2 send
//! `step-two` → step 3 send `step-three` → done. A v1 run's journal replays cleanly against
//! it, so a verified upgrade moves v1 runs to it.

use waymark_guest::prelude::*;

fn steps(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("step-one").var("version", 1))?;
    ctx.sleep(days(1), "one day");
    ctx.send_email(email("step-two").var("version", 3))?;
    ctx.send_email(email("step-three").var("version", 3))?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("steps").name("Steps (v3)").on("test.steps").unlimited() => steps,
    ],
    templates: [
        template("step-one").subject("Step one (v{{ version }})").body("Hello {{ key }}, this is step one."),
        template("step-two").subject("Step two (v{{ version }})").body("Hello {{ key }}, this is step two."),
        template("step-three").subject("Step three (v{{ version }})").body("Hello {{ key }}, this is step three."),
    ],
}
