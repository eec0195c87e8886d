//! Test guest: a module whose `describe` never returns (in wasm only, so its native manifest
//! test still runs). Deploying it must be refused once its CPU budget runs out.

use waymark_guest::prelude::*;

fn journey_name() -> &'static str {
    if cfg!(target_family = "wasm") {
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
    "Describe spins"
}

fn never(_: &Ctx) -> JourneyResult {
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("describe-spins").name(journey_name()).on("test.never").unlimited() => never,
    ],
}
