//! Test guest: journey `steps` (trigger `test.steps`), version 1:
//! step 0 send `step-one` → step 1 sleep 1 day → step 2 send `step-two` → done.
//! `steps-v2` declares the same journey with the sleep first, so replaying a v1 journal with
//! v2 diverges at step 0 (journal: send-email, v2: sleep).

use waymark_guest::prelude::*;

fn steps(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("step-one").var("version", 1))?;
    ctx.sleep(days(1), "one day");
    ctx.send_email(email("step-two").var("version", 1))?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("steps").name("Steps (v1)").on("test.steps").unlimited() => steps,
    ],
    templates: [
        template("step-one").subject("Step one (v{{ version }})").body("Hello {{ key }}, this is step one."),
        template("step-two").subject("Step two (v{{ version }})").body("Hello {{ key }}, this is step two."),
    ],
}
