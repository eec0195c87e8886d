//! The SQLite backend of [`crate::store::Store`]: the embedded default, one WAL file under the data dir.
//!
//! SQLite runs in-process with a single writer. [`conn`] owns the connections: every write
//! is one closure run on the writer thread inside one `BEGIN IMMEDIATE` transaction (a whole
//! ingest batch is one closure), every read one closure on a pooled reader connection inside
//! one snapshot. Statements are prepared once per connection and cached, so a statement
//! costs microseconds, not a thread hop.
//!
//! Two clocks meet here: `due_at`, `created_at`, `wake_at` … are on the host clock (which a dev
//! may advance), while leases (`lease_until`) and the outbox's `next_attempt_at` are on the real
//! clock, so advancing the dev clock never breaks a claim.
//!
//! This module owns opening the database and the migrations ([`migrate`]); each concern of
//! [`crate::store::Store`] is implemented in its own file, queries and row mapping beside it:
//! `tenancy` (`Tenancy`, `Operators`, `HostSettings`), `ingest` (`EventIngest`), `contacts`
//! (`Contacts`), `membership` (`ManualMemberships`, and the bucket primitives), `buckets`
//! (`BucketReads`),
//! `backfills` (`Backfills`), `reconciles` (`Reconciles`), `runs` (`RunQueue`, `RunReads`),
//! `effects` (`RunEffects`), `outbox` (`Outbox`), `history` (`History`), `templates`
//! (`EmailTemplates`), `preferences` (`EmailPreferences`), `journeys` (`JourneyAdmin`) and
//! `limits` (`TenantLimitStore`), `claims` (the fair claim's steps);
//! `usage` (`UsageReads`, and the counter upsert the transactions that do the work end with);
//! `tx` holds the writer's transaction the shared flows run in (`SqliteTx`), `identity` the
//! identity primitives and contact lookups, `rows` the value conversions.
//! The tests are backend-agnostic, in `crate::store::tests`.

mod backfills;
mod buckets;
mod claims;
mod conn;
mod contact_cache;
mod contacts;
mod effects;
mod history;
mod identity;
mod ingest;
mod journeys;
mod limits;
mod membership;
mod modules;

mod migrate;
mod outbox;
pub(crate) mod preferences;
mod reconciles;
mod rows;
mod runs;
mod senders;
mod templates;
mod tenancy;
mod tx;
mod usage;

use super::{StoreError, StoreResult};
use contact_cache::ContactCache;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The live statuses, as SQL: a run in one of them holds the one-live-run slot and may have a
/// timer. Must match the partial unique index `runs_one_live_per_contact`.
macro_rules! live_statuses {
    () => {
        "('active', 'waiting')"
    };
}
use live_statuses;

/// SQL that holds while the tenant whose id is the SQL `$id` is not suspended: due runs and
/// queued emails of a suspended tenant wait (migration 0021). A scalar subquery, one primary
/// key seek per candidate row, which the planner never turns into a join.
macro_rules! tenant_not_suspended {
    ($id:literal) => {
        concat!(
            "(SELECT s.suspended_at FROM tenants s WHERE s.id = ",
            $id,
            ") IS NULL"
        )
    };
}
use tenant_not_suspended;

/// The number `events` stores for the tenant whose id is the SQL `$id` (a parameter or a
/// column; migration 0014): `events.tenant = tenant_number!("?1")`. An unknown id gives NULL,
/// which matches no event and which `events.tenant` refuses.
macro_rules! tenant_number {
    ($id:literal) => {
        concat!("(SELECT number FROM tenants WHERE id = ", $id, ")")
    };
}
use tenant_number;

/// The SQLite store. Cheap to clone (the connections are shared).
#[derive(Clone)]
pub struct SqliteStore {
    /// Runs write transactions, one at a time, on its own thread.
    writer: conn::Writer,
    readers: conn::Readers,
    /// The writer's cache of live contacts. Only write transactions touch it, so only the
    /// writer thread: the lock is never contended.
    contacts: Arc<Mutex<ContactCache>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("writer", &self.writer)
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating the file and its directory if needed) and migrate the database at `path`.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        let path = path.to_path_buf();
        // Opening and migrating block: off the async runtime.
        let contacts = Arc::new(Mutex::new(ContactCache::new(
            contact_cache::DEFAULT_CAPACITY,
        )));
        let forget_on_rollback = contacts.clone();
        tokio::task::spawn_blocking(move || {
            let writer = conn::Writer::spawn(&path, migrate::run, move || {
                lock(&forget_on_rollback).clear()
            })?;
            Ok(SqliteStore {
                writer,
                readers: conn::Readers::new(&path),
                contacts,
            })
        })
        .await
        .map_err(|e| StoreError::Open(format!("opening the SQLite database failed: {e}")))?
    }
}

/// The contact cache, whatever a panicking transaction left it as (it is cleared after any
/// transaction that did not commit).
fn lock(cache: &Mutex<ContactCache>) -> MutexGuard<'_, ContactCache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStore {
    /// Run `work` as one write transaction (see [`conn::Writer::transaction`]).
    ///
    /// Only ingest keeps the cache's active memberships; any other write may change them, so
    /// the cache forgets them first (on the writer thread, in order with everything else).
    /// Writes that cannot, use [`SqliteStore::write_without_memberships`].
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let contacts = self.contacts.clone();
        self.writer
            .transaction(move |tx| {
                lock(&contacts).memberships().clear();
                work(tx)
            })
            .await
    }

    /// [`SqliteStore::write`] for work that never writes `bucket_memberships`: the journey
    /// machinery (runs, timers, journal, outbox, effects) and the claims and leases of the
    /// backfill and reconcile workers. The cache's active memberships stay: these pollers write
    /// several times a second, and forgetting them each time emptied the cache faster than
    /// ingest filled it.
    async fn write_without_memberships<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.writer.transaction(work).await
    }

    /// [`SqliteStore::write`] for work that reads or writes contacts: it gets the writer's
    /// contact cache with the transaction. Whatever else such work writes, it keeps the cache
    /// true to it (see [`contact_cache`] and [`crate::store::membership_cache`]).
    async fn write_with_contacts<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &mut ContactCache) -> StoreResult<T> + Send + 'static,
    {
        let contacts = self.contacts.clone();
        self.writer
            .transaction(move |tx| work(tx, &mut lock(&contacts)))
            .await
    }

    /// Run `work` as one read (see [`conn::Readers::read`]).
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.readers.read(work).await
    }
}

impl crate::store::Engine for SqliteStore {
    fn commits_serially(&self) -> bool {
        true // every write runs on the one writer thread
    }
    fn in_process_memory(&self) -> Option<u64> {
        // SAFETY: sqlite3_memory_used only reads SQLite's global allocation counter, which is
        // safe from any thread.
        let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
        let contacts = lock(&self.contacts).approximate_bytes();
        u64::try_from(used).ok().map(|used| used + contacts)
    }
}
