//! Test guest: journey `newsletter` (trigger `newsletter.requested`, unlimited, suppress
//! window one hour) asks whether the person still accepts email, then sends `news` (text and
//! HTML, with the unsubscribe link) whatever the answer — to the person, or to the trigger's
//! `to` property (a forward) — so the host's suppression shows.

use waymark_guest::prelude::*;

fn newsletter(ctx: &Ctx) -> JourneyResult {
    let subscribed = ctx.is_subscribed();
    let mut news = email("news").var("subscribed", subscribed);
    // A forward: the trigger may name another recipient.
    if let Some(to) = ctx.trigger().property_str("to") {
        news = news.to(to);
    }
    ctx.send_email(news)?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("newsletter").on("newsletter.requested").unlimited().suppress(hours(1)) => newsletter,
    ],
    templates: [
        template("news")
            .subject("News for {{ name | default(key) }}")
            .body("Hello {{ name | default(key) }}.\n\nUnsubscribe: {{ unsubscribe_url }}\n")
            .html("<p>Hello {{ name | default(key) }}</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"),
    ],
}
