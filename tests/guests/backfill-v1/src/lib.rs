//! Test guest: version 1 of the computed bucket `big-spenders` — at least three `purchase`
//! events and contact property `plan` = "pro" — whose leave reaction records the reason. The
//! backfill tests deploy it after the history was ingested (or from the start, for the
//! real-time comparison), then replace it with `backfill-v2`.

use waymark_guest::prelude::*;

fn left(ctx: &Ctx) -> JourneyResult {
    let reason = ctx.trigger().property_str("reason").unwrap_or("unknown");
    ctx.info(format!("{} left big-spenders ({reason})", ctx.person().key()));
    Ok(())
}

waymark_guest::module! {
    buckets: [
        bucket("big-spenders")
            .name("Big spenders")
            .criteria(all([event("purchase").at_least(3), prop("plan").eq("pro")]))
            .on_leave(left),
    ],
}
