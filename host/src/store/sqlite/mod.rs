//! The SQLite backend of [`Store`]: the embedded default, one WAL file under the data dir.
//!
//! SQLite has a single writer. Every write goes through [`SqliteStore::write`], which queues
//! writers of this process on an async mutex (fair, no busy-polling) and then opens the
//! transaction with `BEGIN IMMEDIATE`, so the write lock is taken up front and a writer from
//! another process (the CLI, a second host on the same file) waits on the busy timeout instead
//! of failing to upgrade a read lock. Readers use the pool freely: WAL lets them run beside the
//! writer.
//!
//! Two clocks meet here: `due_at`, `created_at`, `wake_at` … are on the host clock (which a dev
//! may advance), while leases (`lease_until`) and the outbox's `next_attempt_at` are on the real
//! clock, so advancing the dev clock never breaks a claim.
//!
//! This module owns opening the database, the migrations and the writer lock; the queries live
//! in one submodule per concern, and [`Store`] is implemented here by delegating to them:
//! `tenancy` (tenants, API keys, module versions, host settings), `identity` (the
//! [`crate::store::identity::IdentityTx`] primitives and contact lookups), `ingest` (event
//! batches: dedupe, identity resolution, starting runs), `contacts` (upsert, find, delete),
//! `runs` (claims, activations and run inspection), `outbox` (email delivery and listing) and
//! `rows` (row mapping and value conversions). The tests are backend-agnostic, in
//! `crate::store::tests`.

mod conn;
mod contacts;
mod identity;
mod ingest;
mod migrate;
mod outbox;
mod rows;
mod runs;
mod tenancy;

use super::{
    ActivationCommit, ActivationInput, ApiKeyRecord, ClaimedRun, ContactLookup, ContactRecord,
    DeletedContact, DeliveryResult, EmailFilter, EmailRecord, IngestItem, IngestOutcome, Lease,
    ModuleVersionRecord, NewApiKey, OutboxEmail, Resolution, RunFilter, RunRecord, Store,
    StoreError, StoreResult, Tenant,
};
use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::{ApiKeyId, EmailId, RunId, TenantId};
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, SqliteTransaction};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections (WAL readers run concurrently; writes are serialised anyway).
const MAX_CONNECTIONS: u32 = 8;

/// The live statuses, as SQL: a run in one of them holds the one-live-run slot and may have a
/// timer. Must match the partial unique index `runs_one_live_per_contact`.
macro_rules! live_statuses {
    () => {
        "('active', 'waiting')"
    };
}
use live_statuses;

/// The SQLite store. Cheap to clone (the connections are shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Serialises this process's write transactions (SQLite has one writer at a time).
    writer: Arc<Mutex<()>>,
    /// Runs write transactions, one at a time, on its own thread.
    tx_writer: conn::Writer,
    readers: conn::Readers,
}

impl SqliteStore {
    /// Open (creating the file and its directory if needed) and migrate the database at `path`.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        let tx_writer = conn::Writer::spawn(path, migrate::run)?;
        let readers = conn::Readers::new(path);
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        Ok(SqliteStore {
            pool,
            writer: Arc::new(Mutex::new(())),
            tx_writer,
            readers,
        })
    }

    /// Start a write transaction: wait for this process's writer turn, then `BEGIN IMMEDIATE`.
    /// Drop the transaction (or commit it) before the guard: declare the guard first.
    async fn legacy_write(&self) -> StoreResult<(MutexGuard<'_, ()>, SqliteTransaction<'static>)> {
        let guard = self.writer.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((guard, tx))
    }
}

impl SqliteStore {
    /// Run `work` as one write transaction (see [`conn::Writer::transaction`]).
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.tx_writer.transaction(work).await
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

    async fn ingest(&self, batch: Vec<IngestItem>) -> StoreResult<Vec<IngestOutcome>> {
        ingest::ingest(self, batch).await
    }

    async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
    ) -> StoreResult<Resolution> {
        contacts::upsert_contact(self, tenant, identity, properties, now).await
    }

    async fn find_contacts(
        &self,
        tenant: &TenantId,
        lookup: &ContactLookup,
    ) -> StoreResult<Vec<ContactRecord>> {
        contacts::find_contacts(self, tenant, lookup).await
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
    ) -> StoreResult<Vec<ClaimedRun>> {
        runs::claim_due_runs(self, now, lease, limit).await
    }

    async fn load_activation(&self, run_id: &RunId) -> StoreResult<Option<ActivationInput>> {
        runs::activation(self, None, run_id).await
    }

    async fn commit_activation(&self, commit: ActivationCommit) -> StoreResult<bool> {
        runs::commit_activation(self, commit).await
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

    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>> {
        outbox::claim_outbox(self, lease, limit).await
    }

    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()> {
        outbox::record_delivery(self, id, result).await
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
        runs::activation(self, Some(tenant), run_id).await
    }

    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>> {
        outbox::list_emails(self, tenant, filter).await
    }

    async fn clock_offset(&self) -> StoreResult<i64> {
        tenancy::clock_offset(self).await
    }

    async fn set_clock_offset(&self, offset_ms: i64) -> StoreResult<()> {
        tenancy::set_clock_offset(self, offset_ms).await
    }
}
