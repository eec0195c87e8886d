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

use std::time::Duration;
use waymark_guest::prelude::*;

fn panics(ctx: &Ctx) -> JourneyResult {
    let now = ctx.now();
    std::hint::black_box(now);
    panic!("boom: the journey panicked on purpose");
}

/// Each frame keeps a buffer alive across the call, so the recursion cannot be turned into
/// a loop.
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

waymark_guest::module! {
    journeys: [
        journey("panics").name("Panics").on("test.panics").unlimited() => panics,
        journey("overflows-stack").name("Overflows its stack").on("test.overflows_stack").unlimited()
            => overflows_stack,
        journey("sleeps-forever").name("Sleeps forever").on("test.sleeps_forever").unlimited()
            => sleeps_forever,
        journey("floods-log").name("Floods the log").on("test.floods_log").unlimited()
            => floods_log,
    ],
}
