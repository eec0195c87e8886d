//! Test guest: journey `panics` (trigger `test.panics`) reads the clock (one journaled step),
//! then panics. The run must fail as a trap, with the message in the host log.

use waymark_guest::prelude::*;

fn panics(ctx: &Ctx) -> JourneyResult {
    let now = ctx.now();
    std::hint::black_box(now);
    panic!("boom: the journey panicked on purpose");
}

waymark_guest::module! {
    journeys: [
        journey("panics").name("Panics").on("test.panics").unlimited() => panics,
    ],
}
