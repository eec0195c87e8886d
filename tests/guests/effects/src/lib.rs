//! Test guest for journey effects and history reads:
//!
//! - `convert` (on `purchase.made`): marks the person a customer (`update-contact`), emits
//!   `customer.converted` for them and, when the purchase names a `referrer`, emits
//!   `referral.rewarded` for the referrer (a new person if unknown), then sleeps a day.
//! - `reward` (on `referral.rewarded`): emails the referrer — so an emitted event starts
//!   journeys like any other.
//! - `recap` (on `recap.requested`): reads the person's history — purchases, runs of
//!   `convert`, earlier recap emails — and emails it to them.
//! - `tally` (on `tally.started`): a day later counts the person's `feature.used` events since
//!   the run started, of all time and since that moment (`history-event-count-since`), then
//!   an hour later emails the counts — answered from the journal on that replay.

use waymark_guest::prelude::*;

fn convert(ctx: &Ctx) -> JourneyResult {
    let total = ctx
        .trigger()
        .property("total")
        .cloned()
        .unwrap_or(Value::Null);
    ctx.update_contact(json!({ "customer": true, "lastOrderTotal": total, "trial": null }))?;
    ctx.emit("customer.converted", json!({ "total": total }))?;
    if let Some(referrer) = ctx.trigger().property_str("referrer") {
        ctx.emit_for(
            referrer,
            "referral.rewarded",
            json!({ "referred": ctx.person().key() }),
        )?;
    }
    ctx.sleep(days(1), "cool down");
    Ok(())
}

fn reward(ctx: &Ctx) -> JourneyResult {
    let referred = ctx.trigger().property_str("referred").unwrap_or("someone");
    ctx.send_email(
        email("reward")
            .to("referrals@example.com")
            .var("referred", referred),
    )?;
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

fn tally(ctx: &Ctx) -> JourneyResult {
    ctx.sleep(days(1), "a day of use");
    let since_start = ctx.count_events_since_start("feature.used")?;
    let all_time = ctx.count_events("feature.used", None)?;
    let since_now = ctx.count_events_since("feature.used", ctx.now())?;
    ctx.sleep(hours(1), "then report");
    ctx.send_email(
        email("tally")
            .var("since_start", since_start)
            .var("all_time", all_time)
            .var("since_now", since_now),
    )?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("convert").on("purchase.made").unlimited() => convert,
        journey("reward").on("referral.rewarded").unlimited() => reward,
        journey("recap").on("recap.requested").unlimited() => recap,
        journey("tally").on("tally.started").unlimited() => tally,
    ],
    templates: [
        template("reward").subject("Reward for {{ key }}").body("{{ referred }} bought."),
        template("recap")
            .subject("Your recap")
            .body("purchases={{ purchases }} recent={{ recent }} converts={{ converts }} completed={{ completed }} recaps={{ recaps }}"),
        template("tally")
            .subject("Your tally")
            .body("since_start={{ since_start }} all_time={{ all_time }} since_now={{ since_now }}"),
    ],
}
