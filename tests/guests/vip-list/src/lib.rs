//! Test guest: manual bucket `vip` ("VIPs"), changed only through the host's API
//! (`POST` / `DELETE /v1/buckets/vip/members/{key}`). Entering sends `vip-welcome`, leaving
//! sends `vip-goodbye` naming the leave reason.

use waymark_guest::prelude::*;

fn welcome_vip(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(email("vip-welcome"))?;
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
            .on_leave(goodbye_vip),
    ],
    templates: [
        template("vip-welcome").subject("Welcome to the VIP list, {{ key }}").body("You're in."),
        template("vip-goodbye")
            .subject("You left the VIP list ({{ reason }})")
            .body("Goodbye, {{ key }}."),
    ],
}
