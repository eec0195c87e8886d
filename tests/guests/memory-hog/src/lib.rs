//! Test guest: journey `memory-hog` (trigger `test.memory_hog`) allocates 1 MiB blocks, writing
//! every byte, and keeps them all, forever. The host's memory cap must fail only this run.

use waymark_guest::prelude::*;

const MIB: usize = 1 << 20;

fn memory_hog(ctx: &Ctx) -> JourneyResult {
    ctx.info("allocating without bound");
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // vec![1; n] writes every byte, so each page is really touched.
        let block = vec![std::hint::black_box(1u8); MIB];
        hoard.push(std::hint::black_box(block));
        std::hint::black_box(&mut hoard);
    }
}

waymark_guest::module! {
    journeys: [
        journey("memory-hog").name("Memory hog").on("test.memory_hog").unlimited()
            => memory_hog,
    ],
}
