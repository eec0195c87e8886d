//! Test guest: a module whose `describe` panics (in wasm only, so its native manifest test
//! still runs). Deploying it must be refused with the panic's message, and at boot it must be
//! skipped while the other modules are served.

use waymark_guest::prelude::*;

fn journey_name() -> &'static str {
    if cfg!(target_family = "wasm") {
        panic!("describe panicked on purpose");
    }
    "Describe panics"
}

fn never(_: &Ctx) -> JourneyResult {
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("describe-panics").name(journey_name()).on("test.never").unlimited() => never,
    ],
}
