//! Test guest: journey `spin-forever` (trigger `test.spin_forever`) logs once, then spins
//! forever. The host must stop it with its CPU budget (epoch deadline) and fail only this run.

use waymark_guest::prelude::*;

fn spin_forever(ctx: &Ctx) -> JourneyResult {
    ctx.info("spinning forever");
    let mut counter: u64 = 0;
    loop {
        // black_box keeps the optimizer from proving the loop useless.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

waymark_guest::module! {
    journeys: [
        journey("spin-forever").name("Spin forever").on("test.spin_forever").unlimited()
            => spin_forever,
    ],
}
