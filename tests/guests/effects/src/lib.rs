//! Test guest for journey effects and history reads:
//!
//! - `convert` (on `purchase.made`): marks the person a customer (`update-contact`), emits
//!   `customer.converted` for them and, when the purchase names a `referrer`, emits
//!   `referral.rewarded` for the referrer (a new person if unknown), then sleeps a day.
//! - `reward` (on `referral.rewarded`): emails the referrer — so an emitted event starts
//!   journeys like any other.
//! - `recap` (on `recap.requested`): reads the person's history — purchases, runs of
//!   `convert`, earlier recap emails — and emails it to them.

use waymark_guest::prelude::*;

fn convert(ctx: &Ctx) -> JourneyResult {
    let total = ctx.trigger().property("total").cloned().unwrap_or(Value::Null);
    ctx.update_contact(json!({ "customer": true, "lastOrderTotal": total, "trial": null }))?;
    ctx.emit("customer.converted", json!({ "total": total }))?;
    if let Some(referrer) = ctx.trigger().property_str("referrer") {
        ctx.emit_for(referrer, "referral.rewarded", json!({ "referred": ctx.person().key() }))?;
    }
    ctx.sleep(days(1), "cool down");
    Ok(())
}

fn reward(ctx: &Ctx) -> JourneyResult {
    let referred = ctx.trigger().property_str("referred").unwrap_or("someone");
    ctx.send_email(email("reward").to("referrals@example.com").var("referred", referred))?;
    Ok(())
}

fn recap(ctx: &Ctx) -> JourneyResult {
    let purchases = ctx.count_events("purchase.made", None)?;
    let recent = ctx.count_events("purchase.made", Some(hours(1)))?;
    let conversions = ctx.journey_history("convert")?;
    let recaps = ctx.email_history("recap")?;
    ctx.send_email(
        email("recap")
            .var("purchases", purchases)
            .var("recent", recent)
            .var("converts", conversions.entries)
            .var("completed", conversions.completed)
            .var("recaps", recaps.count),
    )?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("convert").on("purchase.made").unlimited() => convert,
        journey("reward").on("referral.rewarded").unlimited() => reward,
        journey("recap").on("recap.requested").unlimited() => recap,
    ],
    templates: [
        template("reward").subject("Reward for {{ key }}").body("{{ referred }} bought."),
        template("recap")
            .subject("Your recap")
            .body("purchases={{ purchases }} recent={{ recent }} converts={{ converts }} completed={{ completed }} recaps={{ recaps }}"),
    ],
}
