//! Test guest: manual bucket `vip` ("VIPs"), changed only through the host's API
//! (`POST` / `DELETE /v1/buckets/vip/members/{key}`). Entering sends `vip-welcome` and, for
//! a person with the `concierge` property, `vip-check-in` a week later — unless they left the
//! bucket meanwhile: the enter reaction exits on `bucket:left:vip` (`enter_until_left`).
//! Leaving sends `vip-goodbye` naming the leave reason.

use waymark_guest::prelude::*;

fn welcome_vip(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("vip-welcome"))?;
    if ctx.person().property_bool("concierge") == Some(true) {
        ctx.sleep(days(7), "a week as a VIP");
        ctx.send_email(email("vip-check-in"))?;
    }
    Ok(())
}

fn goodbye_vip(ctx: &Ctx) -> JourneyResult {
    let reason = ctx.trigger().property_str("reason").unwrap_or("unknown");
    ctx.send_email(email("vip-goodbye").var("reason", reason))?;
    Ok(())
}

waymark_guest::module! {
    buckets: [
        bucket("vip")
            .name("VIPs")
            .manual()
            .on_enter(welcome_vip)
            .enter_until_left()
            .on_leave(goodbye_vip),
    ],
    templates: [
        template("vip-welcome").subject("Welcome to the VIP list, {{ key }}").body("You're in."),
        template("vip-check-in").subject("A week as a VIP, {{ key }}").body("How is it going?"),
        template("vip-goodbye")
            .subject("You left the VIP list ({{ reason }})")
            .body("Goodbye, {{ key }}."),
    ],
}
