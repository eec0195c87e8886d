//! Waymark: a lifecycle-automation engine whose journeys are WebAssembly components.
//!
//! Events enter through [`ingest`] (the only way an event enters), which stores them, keeps a
//! contact per person and starts journey runs. A run is executed by [`journeys::executor`] on
//! top of the wasm [`runtime`], durably: every effect is journaled and an activation commits in
//! one transaction through the [`store`]. The [`scheduler`] wakes runs whose timers are due and
//! [`delivery`] sends the emails they queued. [`api`] is the HTTP surface, [`cli`] the binary.
//! [`usage`] names what each tenant's work counts, per day; the store counts it.

pub mod api;
pub mod backfill_job;
pub mod buckets;
pub mod cli;
pub mod clock;
pub mod contacts;
pub mod delivery;
pub mod group_commit;
pub mod ids;
pub mod ingest;
pub mod journeys;
pub mod modules;
pub mod reconcile_job;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tenancy;
pub mod usage;
