//! The store: the only place that speaks SQL.
//!
//! ```text
//! concerns/    the interface: one small trait per concern (Tenancy, EventIngest, Contacts,
//!              RunQueue, RunReads, History, RunEffects, Outbox, EmailTemplates,
//!              EmailPreferences, EmailSenders, BucketReads, Backfills, Reconciles,
//!              JourneyAdmin, ManualMemberships, ModuleCatalog, HostSettings, Operators,
//!              TenantLimitStore, UsageReads, Engine); `Store` is all of them
//! flows/       each write transaction's workflow, once: ingest one event, upsert a contact,
//!              change a manual membership, a backfill page, a reconcile pass, a change of a
//!              tenant's modules, over a backend's primitives (`IngestTx`, `ModuleChangeTx`, …)
//! identity.rs  identity resolution, once, over a backend's `IdentityTx` primitives
//!              (bucket membership likewise: `crate::buckets::membership` over `MembershipTx`)
//! sqlite/      the embedded backend: one file per concern, `impl RunQueue for SqliteStore`;
//!              `SqliteTx` (tx.rs) is the writer's transaction the flows and rules run in
//! postgres/    the hosted backend, the same files: `impl RunQueue for PgStore`; `PgTx`
//!              (tx.rs) holds a transaction's locks and deferred writes
//! records.rs   row-shaped records; rows.rs the mapping of either backend's rows to them (and
//!              the assembly of what several rows answer); codec.rs shared value parsing;
//!              error.rs the error type
//! tests/       the conformance suite, run on both backends (`store_test!`)
//! ```
//!
//! A component holds the concerns it uses (`Arc<dyn RunQueue>`, or `Arc<dyn Store>` for all of
//! them: it coerces to any one). Each backend implements every concern in its own dialect
//! ([`sqlite`], the embedded default, and [`postgres`], for hosted deployments) with its
//! migrations embedded in the binary and applied at open. Domain rules live in their modules
//! and run inside the store's transactions, so a backend never re-implements a rule: entry
//! limits ([`crate::journeys::EntryLimit`]), property merge ([`crate::contacts`]) and identity
//! resolution ([`identity::resolve`], which drives a backend's [`identity::IdentityTx`]
//! primitives). Every method is scoped by tenant where the data is tenant data.

mod codec;
pub mod concerns;
pub mod error;
mod flows;
pub mod identity;
pub(crate) mod membership_cache;
pub mod postgres;
pub mod records;
mod rows;
pub mod sqlite;
#[cfg(test)]
mod tests;

pub use concerns::*;
pub use error::{StoreError, StoreResult};
pub use records::*;

use crate::buckets::BucketRegistry;
use crate::ids::TenantId;
use crate::journeys::router::RunCandidate;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Open the store a URL names: `postgres://…` / `postgresql://…` for PostgreSQL, otherwise
/// the SQLite file at `sqlite_path`.
pub async fn open(
    database_url: Option<&str>,
    sqlite_path: &std::path::Path,
) -> StoreResult<Arc<dyn Store>> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(postgres::PgStore::connect(url).await?))
        }
        Some(other) => Err(StoreError::Open(format!(
            "unsupported database URL {other:?}: use postgres://… (or omit it for the embedded SQLite database)"
        ))),
        None => Ok(Arc::new(sqlite::SqliteStore::open(sqlite_path).await?)),
    }
}

/// What ingest asks of the loaded modules inside its transaction: which journeys an event
/// starts, and which buckets a tenant has. [`crate::modules::ModuleRegistry`] answers from its
/// current snapshot.
pub trait IngestRouting: Send + Sync {
    /// The journeys an event's name triggers, enabled or not, with their module and whether
    /// their trigger filter holds on the event's properties.
    fn journeys(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &Map<String, Value>,
    ) -> Vec<RunCandidate>;
    /// The ids of the journeys one of whose `exitOn` rules the event matches (name and
    /// condition): the person's live runs of them end.
    fn exits(
        &self,
        tenant: &TenantId,
        event_name: &str,
        event_properties: &Map<String, Value>,
    ) -> Vec<String>;
    /// The tenant's buckets, when it has any.
    fn buckets(&self, tenant: &TenantId) -> Option<Arc<BucketRegistry>>;
}

#[cfg(test)]
/// Routing with no modules loaded: no journeys, no buckets.
pub struct NoRouting;

#[cfg(test)]
impl IngestRouting for NoRouting {
    fn journeys(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<RunCandidate> {
        Vec::new()
    }

    fn exits(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }

    fn buckets(&self, _: &TenantId) -> Option<Arc<BucketRegistry>> {
        None
    }
}

#[cfg(test)]
use crate::{clock::Timestamp, contacts::Identity, ingest::IngestItem};

/// Tests ingest without modules (no journeys beyond the items' own candidates, no buckets).
#[cfg(test)]
pub(crate) trait IngestWithoutModules {
    fn ingest_plain(
        &self,
        batch: Vec<IngestItem>,
    ) -> impl Future<Output = StoreResult<Vec<IngestOutcome>>> + Send;

    /// [`Contacts::upsert_contact`] with no buckets to move: its resolution.
    fn upsert_plain<'a>(
        &'a self,
        tenant: &'a TenantId,
        identity: &'a Identity,
        properties: &'a Map<String, Value>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Resolution>> + Send + 'a;
}

#[cfg(test)]
impl<S: Store + ?Sized> IngestWithoutModules for S {
    fn ingest_plain(
        &self,
        batch: Vec<IngestItem>,
    ) -> impl Future<Output = StoreResult<Vec<IngestOutcome>>> + Send {
        self.ingest(batch.into(), Arc::new(NoRouting))
    }

    fn upsert_plain<'a>(
        &'a self,
        tenant: &'a TenantId,
        identity: &'a Identity,
        properties: &'a Map<String, Value>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Resolution>> + Send + 'a {
        let upsert = self.upsert_contact(tenant, identity, properties, now, Arc::new(NoRouting));
        async move { Ok(upsert.await?.resolution) }
    }
}
