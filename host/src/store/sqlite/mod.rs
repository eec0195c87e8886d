//! The SQLite backend of [`Store`]: the embedded default, one WAL file under the data dir.
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
//! This module owns opening the database and the migrations ([`migrate`]); the queries live
//! in one submodule per concern, and [`Store`] is implemented here by delegating to them:
//! `tenancy` (tenants, API keys, module versions, host settings), `identity` (the
//! [`crate::store::identity::IdentityTx`] primitives and contact lookups), `ingest` (event
//! batches: dedupe, identity resolution, starting runs), `contacts` (upsert, find, delete),
//! `runs` (claims, activations and run inspection), `outbox` (email delivery and listing) and
//! `rows` (row mapping and value conversions). The tests are backend-agnostic, in
//! `crate::store::tests`.

mod backfill;
mod buckets;
mod conn;
mod contact_cache;
mod contacts;
mod effects;
mod history;
mod identity;
mod ingest;
mod journeys;
mod membership;

mod migrate;
mod outbox;
pub(crate) mod preferences;
mod reconcile;
mod rows;
mod runs;
mod templates;
mod tenancy;

use super::{
    ActivationCommit, ActivationInput, ApiKeyRecord, ContactLookup, ContactRecord, ContactUpsert,
    DeletedContact, DeliveryResult, EmailFilter, EmailRecord, IngestItem, IngestOutcome, Lease,
    ModuleVersionRecord, NewApiKey, OutboxEmail, RunFilter, RunRecord, Store, StoreError,
    StoreResult, Tenant, TenantTemplate,
};
use super::{
    BucketMember, BucketTransition, EffectFailure, EmailHistory, EventRecord, IngestRouting,
    JourneyHistory, MembershipChange, ReceivedEvents, RunEffect,
};
use super::{CancelOutcome, JourneyStats};
use crate::buckets::BucketDef;
use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::{ApiKeyId, EmailId, RunId, TenantId};
use async_trait::async_trait;
use contact_cache::ContactCache;
use serde_json::{Map, Value};
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

#[async_trait]
impl Store for SqliteStore {
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        tenancy::tenant_by_name(self, name).await
    }

    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<(Tenant, bool)> {
        tenancy::create_tenant(self, name, now).await
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord> {
        tenancy::create_api_key(self, key).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        tenancy::api_key_by_hash(self, key_hash).await
    }

    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        id: &ApiKeyId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        tenancy::revoke_api_key(self, tenant, id, now).await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKeyRecord>> {
        tenancy::list_api_keys(self, tenant).await
    }

    async fn record_module_version(&self, version: &ModuleVersionRecord) -> StoreResult<()> {
        tenancy::record_module_version(self, version).await
    }

    async fn ingest(
        &self,
        batch: Arc<[IngestItem]>,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Vec<IngestOutcome>> {
        ingest::ingest(self, batch, routing).await
    }

    async fn change_membership(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        key: &str,
        change: MembershipChange,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Option<Option<BucketTransition>>> {
        membership::change_membership(self, tenant, bucket, key, change, now, routing).await
    }

    async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ContactUpsert> {
        contacts::upsert_contact(self, tenant, identity, properties, now, routing).await
    }

    async fn find_contacts(
        &self,
        tenant: &TenantId,
        lookup: &ContactLookup,
    ) -> StoreResult<Vec<ContactRecord>> {
        contacts::find_contacts(self, tenant, lookup).await
    }

    async fn contact_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        contacts::contact_events(self, tenant, contact_key, name, limit).await
    }

    async fn events_received(
        &self,
        tenant: &TenantId,
        request: &ReceivedEvents,
    ) -> StoreResult<Vec<EventRecord>> {
        contacts::events_received(self, tenant, request).await
    }

    async fn delete_contact(
        &self,
        tenant: &TenantId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<DeletedContact>> {
        contacts::delete_contact(self, tenant, key, now).await
    }

    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
    ) -> StoreResult<Vec<ActivationInput>> {
        runs::claim_due_runs(self, now, lease, limit).await
    }

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

    async fn commit_activations(&self, commits: Arc<[ActivationCommit]>) -> StoreResult<Vec<bool>> {
        runs::commit_activations(self, commits).await
    }

    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        runs::release_run(self, run_id, lease_owner, retry_at).await
    }

    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>> {
        runs::next_due_at(self).await
    }

    async fn count_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: &str,
        since: Option<Timestamp>,
    ) -> StoreResult<u64> {
        history::count_events(self, tenant, contact_key, name, since).await
    }

    async fn journey_history(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<JourneyHistory> {
        history::journey_history(self, tenant, contact_key, journey_id).await
    }

    async fn email_history(
        &self,
        tenant: &TenantId,
        to: &str,
        template: &str,
    ) -> StoreResult<EmailHistory> {
        history::email_history(self, tenant, to, template).await
    }

    async fn claim_run_effects(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<RunEffect>> {
        effects::claim_run_effects(self, lease, limit).await
    }

    async fn finish_run_effect(
        &self,
        run_id: &RunId,
        seq: u32,
        lease_owner: &str,
        outcome: Result<(), EffectFailure>,
    ) -> StoreResult<()> {
        effects::finish_run_effect(self, run_id, seq, lease_owner, outcome).await
    }

    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>> {
        outbox::claim_outbox(self, lease, limit).await
    }

    async fn renew_outbox_lease(&self, id: &EmailId, lease: &Lease) -> StoreResult<bool> {
        outbox::renew_outbox_lease(self, id, lease).await
    }

    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()> {
        outbox::record_delivery(self, id, result).await
    }

    async fn email_templates(&self, tenant: &TenantId) -> StoreResult<Vec<TenantTemplate>> {
        templates::list(self, tenant).await
    }

    async fn email_template(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<TenantTemplate>> {
        templates::get(self, tenant, key).await
    }

    async fn put_email_template(
        &self,
        tenant: &TenantId,
        template: &TenantTemplate,
    ) -> StoreResult<bool> {
        templates::put(self, tenant, template).await
    }

    async fn delete_email_template(&self, tenant: &TenantId, key: &str) -> StoreResult<bool> {
        templates::delete(self, tenant, key).await
    }

    async fn email_signing_secret(
        &self,
        tenant: &TenantId,
        candidate: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        preferences::signing_secret(self, tenant, candidate, now).await
    }

    async fn unsubscribe(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        preferences::unsubscribe(self, tenant, contact_key, email, now).await
    }

    async fn is_unsubscribed(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        preferences::is_unsubscribed(self, tenant, contact_key, email).await
    }

    async fn journey_emailed_since(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> StoreResult<bool> {
        outbox::journey_emailed_since(self, tenant, journey_id, to, since).await
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        filter: &RunFilter,
    ) -> StoreResult<Vec<RunRecord>> {
        runs::list_runs(self, tenant, filter).await
    }

    async fn run_detail(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>> {
        runs::activation(self, tenant, run_id).await
    }

    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>> {
        outbox::list_emails(self, tenant, filter).await
    }

    async fn bucket_counts(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<std::collections::HashMap<String, super::BucketCounts>> {
        buckets::bucket_counts(self, tenant).await
    }

    async fn bucket_counts_of(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<super::BucketCounts> {
        buckets::bucket_counts_of(self, tenant, bucket_id).await
    }

    async fn bucket_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        page: &super::MemberPageRequest,
    ) -> StoreResult<super::MemberPage> {
        buckets::bucket_members(self, tenant, bucket_id, page).await
    }

    async fn recent_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<BucketMember>> {
        buckets::recent_members(self, tenant, bucket_id, limit).await
    }

    async fn bucket_membership(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        key: &str,
    ) -> StoreResult<Option<super::ActiveMembership>> {
        buckets::bucket_membership(self, tenant, bucket_id, key).await
    }

    async fn contact_memberships(
        &self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<super::ActiveMembership>> {
        buckets::contact_memberships(self, tenant, contact_key).await
    }

    async fn register_buckets(
        &self,
        tenant: &TenantId,
        buckets: &[super::BucketFingerprint],
        now: Timestamp,
    ) -> StoreResult<()> {
        backfill::register_buckets(self, tenant, buckets, now).await
    }

    async fn backfill_statuses(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<super::BackfillStatus>> {
        backfill::backfill_statuses(self, tenant).await
    }

    async fn restart_backfill(
        &self,
        tenant: &TenantId,
        bucket: &super::BucketFingerprint,
        now: Timestamp,
    ) -> StoreResult<super::BackfillStatus> {
        backfill::restart_backfill(self, tenant, bucket, now).await
    }

    async fn claim_backfill(
        &self,
        tenant: &TenantId,
        buckets: &[super::BucketFingerprint],
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<Option<super::ClaimedBackfill>> {
        backfill::claim_backfill(self, tenant, buckets, lease, now).await
    }

    async fn backfill_step(
        &self,
        claim: &super::ClaimedBackfill,
        bucket: &BucketDef,
        lease: &Lease,
        page_size: u32,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<super::BackfillStep> {
        backfill::backfill_step(self, claim, bucket, lease, page_size, now, routing).await
    }

    async fn fail_backfill(
        &self,
        claim: &super::ClaimedBackfill,
        lease_owner: &str,
        message: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        backfill::fail_backfill(self, claim, lease_owner, message, now).await
    }

    async fn set_journey_enabled(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        journeys::set_journey_enabled(self, tenant, journey_id, enabled, now).await
    }

    async fn journey_stats(
        &self,
        tenant: &TenantId,
        journey_id: Option<&str>,
    ) -> StoreResult<std::collections::HashMap<String, JourneyStats>> {
        journeys::journey_stats(self, tenant, journey_id).await
    }

    async fn cancel_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome> {
        journeys::cancel_run(self, tenant, run_id, now).await
    }

    async fn reconcile_pass(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        pass: crate::buckets::reconcile::Pass,
        now: Timestamp,
        limit: u32,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<super::ReconcileReport> {
        reconcile::reconcile_pass(self, tenant, bucket, pass, now, limit, routing).await
    }

    async fn reconcile_next_work(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        after: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        reconcile::reconcile_next_work(self, tenant, bucket, after).await
    }

    async fn claim_reconcile(
        &self,
        tenant: &TenantId,
        lease: &super::Lease,
    ) -> StoreResult<Option<Option<Timestamp>>> {
        reconcile::claim_reconcile(self, tenant, lease).await
    }

    async fn finish_reconcile(
        &self,
        tenant: &TenantId,
        owner: &str,
        tick: Option<Timestamp>,
        release: bool,
    ) -> StoreResult<bool> {
        reconcile::finish_reconcile(self, tenant, owner, tick, release).await
    }

    async fn clock_offset(&self) -> StoreResult<i64> {
        tenancy::clock_offset(self).await
    }

    async fn advance_clock_offset(&self, by_ms: i64) -> StoreResult<i64> {
        tenancy::advance_clock_offset(self, by_ms).await
    }
}
