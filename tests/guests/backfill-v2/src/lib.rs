//! Test guest: version 2 of the computed bucket `big-spenders` (see `backfill-v1`), with
//! changed criteria — at least five `purchase` events and `plan` "pro" or "team" — so a
//! re-evaluation makes v1 members with three or four purchases leave and team-plan buyers
//! join.

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
            .criteria(all([
                event("purchase").at_least(5),
                prop("plan").is_in(["pro", "team"]),
            ]))
            .on_leave(left),
    ],
}
