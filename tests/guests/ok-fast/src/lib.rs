//! Test guest: journey `ok-fast` (trigger `test.ok_fast`) sends one email (template `ok`) and
//! completes, with no sleep: the well-behaved neighbour in isolation tests.

use waymark_guest::prelude::*;

fn ok_fast(ctx: &Ctx) -> JourneyResult {
    let id = ctx.send_email(email("ok"))?;
    ctx.info(format!("ok-fast sent {id}"));
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("ok-fast").name("OK, fast").on("test.ok_fast").unlimited() => ok_fast,
    ],
    templates: [
        template("ok").subject("All good, {{ key }}").body("This run sent one email and completed."),
    ],
}
