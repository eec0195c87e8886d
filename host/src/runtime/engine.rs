//! The process-wide wasmtime [`Engine`]: component model, pooling allocator, epoch interruption
//! driven by a ticker thread. One per process; every module and activation shares it.

use std::hash::{Hash, Hasher};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticks; CPU budgets are expressed in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instance slots whose memory is decommitted together (see `decommit_batch_size`).
const DECOMMIT_BATCH: usize = 16;

/// How much of each linear memory stays resident between activations when only the written
/// pages need resetting (Linux 6.7's PAGEMAP_SCAN ioctl): what a guest usually touches, so a
/// guest that fills a large memory still gives it back.
const KEEP_RESIDENT: usize = 16 << 20;

/// Sizing of the instance pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizing {
    /// Component instances alive at once (concurrent activations plus `describe` calls).
    pub instances: u32,
    /// The largest linear memory a guest may reserve; activations are capped lower by the limiter.
    pub max_memory_bytes: usize,
}

impl Default for PoolSizing {
    fn default() -> Self {
        Self {
            instances: 128,
            max_memory_bytes: 1 << 30,
        }
    }
}

pub fn build_engine(pool: PoolSizing) -> wasmtime::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(pool.instances)
        // A componentize-js guest has a handful of core instances and memories.
        .total_core_instances(pool.instances * 8)
        .total_memories(pool.instances * 4)
        .total_tables(pool.instances * 8)
        .total_stacks(pool.instances)
        .max_memory_size(pool.max_memory_bytes)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .max_tables_per_module(8)
        // Decommits are queued and flushed together rather than one at a time as each
        // activation ends (each is an madvise whose TLB shootdown interrupts the other cores).
        .decommit_batch_size(DECOMMIT_BATCH);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        // With the PAGEMAP_SCAN ioctl, a slot's pages stay resident between activations and
        // only the ones the guest wrote are reset, without an madvise. Measured: a
        // componentize-js guest took ~190 copy-on-write faults per activation otherwise (each
        // a TLB shootdown on the other core), and ran at 0.45x the rate.
        pooling
            .pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(1 << 20);
    } else {
        // Without it wasmtime would zero the whole kept size with a memset on every
        // deallocation, touched or not (a Rust guest's 1 MiB shadow stack, mostly untouched,
        // cost ~8% of an activation's CPU). A decommit instead costs one madvise plus a fault
        // for each page the next activation really touches.
        pooling.linear_memory_keep_resident(0);
    }

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
        .max_wasm_stack(1 << 20)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    let engine = Engine::new(&config)?;
    spawn_epoch_ticker(&engine);
    Ok(engine)
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("waymark-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Identifies the engine's compilation settings: precompiled artifacts are only reusable by an
/// engine with the same fingerprint.
pub fn fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
