//! Test guest: journeys that misbehave, each failing only its own run with a clear reason.
//!
//! - `panics` (trigger `test.panics`) reads the clock (one journaled step), then panics: the
//!   run fails as a trap, with the message.
//! - `overflows-stack` (`test.overflows_stack`) recurses without end: its stack runs off the
//!   start of its linear memory, and the reason says so.
//! - `sleeps-forever` (`test.sleeps_forever`) sleeps for `u64::MAX` milliseconds: refused,
//!   naming the maximum sleep.
//! - `floods-log` (`test.floods_log`) writes 100,000 log lines: the host keeps the first few
//!   hundred and says it dropped the rest; the run completes.
//! - `huge-argument` (`test.huge_argument`) sends an email whose template key is 8 MB: the
//!   host measures it in the guest's memory and refuses it, naming the cap, without copying it.

use std::time::Duration;
use waymark_guest::prelude::*;

fn panics(ctx: &Ctx) -> JourneyResult {
    let now = ctx.now();
    std::hint::black_box(now);
    panic!("boom: the journey panicked on purpose");
}

/// Each frame keeps a buffer alive across the call, so the recursion cannot be turned into
/// a loop.
#[allow(unconditional_recursion)] // the point: it recurses until the stack runs out
fn descend(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    descend(depth + 1) + frame[(depth % 64) as usize]
}

fn overflows_stack(_: &Ctx) -> JourneyResult {
    std::hint::black_box(descend(0));
    Ok(())
}

fn sleeps_forever(ctx: &Ctx) -> JourneyResult {
    ctx.sleep(Duration::from_millis(u64::MAX), "forever");
    Ok(())
}

fn floods_log(ctx: &Ctx) -> JourneyResult {
    for line in 0..100_000 {
        ctx.info(format!("flood line {line}"));
    }
    Ok(())
}

fn huge_argument(ctx: &Ctx) -> JourneyResult {
    let key = "k".repeat(8 << 20);
    ctx.send_email(email(&key))?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("panics").name("Panics").on("test.panics").unlimited() => panics,
        journey("overflows-stack").name("Overflows its stack").on("test.overflows_stack").unlimited()
            => overflows_stack,
        journey("sleeps-forever").name("Sleeps forever").on("test.sleeps_forever").unlimited()
            => sleeps_forever,
        journey("floods-log").name("Floods the log").on("test.floods_log").unlimited()
            => floods_log,
        journey("huge-argument").name("Passes a huge argument").on("test.huge_argument").unlimited()
            => huge_argument,
    ],
}
