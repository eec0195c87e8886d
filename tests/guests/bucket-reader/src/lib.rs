//! Test guest: journey `census` (on `test.census`) reads the manual bucket `vip` before and
//! after a one-day sleep and emails what it saw, so a test can tell a replayed (journaled)
//! answer from a fresh one. Reading an unknown bucket is reported, not fatal.

use waymark_guest::prelude::*;

fn census(ctx: &Ctx) -> JourneyResult {
    let before = ctx.bucket_count("vip")?;
    let member = ctx.bucket_has("vip", ctx.person().key())?;
    let page = ctx.bucket_members("vip", MemberPageRequest::first().limit(2))?;
    let first: Vec<&str> = page.members.iter().map(|m| m.key.as_str()).collect();
    ctx.sleep(days(1), "a day later");
    let after = ctx.bucket_count("vip")?;
    let unknown = match ctx.bucket_count("no-such-bucket") {
        Ok(n) => format!("counted {n}"),
        Err(e) => e.reason().to_owned(),
    };
    ctx.send_email(
        email("census")
            .var("before", before)
            .var("after", after)
            .var("member", member)
            .var("first", first.join(","))
            .var("more", page.next_cursor.is_some())
            .var("unknown", unknown),
    )?;
    Ok(())
}

waymark_guest::module! {
    journeys: [journey("census").on("test.census").unlimited() => census],
    buckets: [bucket("vip").name("VIPs").manual()],
    templates: [
        template("census").subject("census").body(
            "before={{ before }} after={{ after }} member={{ member }} first={{ first }} \
             more={{ more }} unknown={{ unknown }}"
        ),
    ],
}
