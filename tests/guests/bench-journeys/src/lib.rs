//! The journeys `tests/benches/journeys.rs` runs:
//!
//! - `burst` (on `bench.burst`): a checkpoint and a clock read, then done — one activation.
//! - `replay` (on `bench.replay`): `steps` checkpoints (a trigger property), a one-minute sleep,
//!   then done: the second activation replays every recorded step.
//! - `sleeper` (on `bench.sleep`): sleeps thirty days.

use waymark_guest::prelude::*;

fn burst(ctx: &Ctx) -> JourneyResult {
    ctx.checkpoint("start");
    ctx.now();
    Ok(())
}

fn replay(ctx: &Ctx) -> JourneyResult {
    let steps = ctx.trigger().property_i64("steps").unwrap_or(100);
    for _ in 0..steps {
        ctx.checkpoint("step");
    }
    ctx.sleep(minutes(1), "then replay");
    Ok(())
}

fn sleeper(ctx: &Ctx) -> JourneyResult {
    ctx.sleep(days(30), "a long sleep");
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("burst").on("bench.burst").unlimited() => burst,
        journey("replay").on("bench.replay").unlimited() => replay,
        journey("sleeper").on("bench.sleep").unlimited() => sleeper,
    ],
}
