//! The store: the only place that speaks SQL.
//!
//! [`Store`] is the interface every other layer uses; each backend implements it in its own
//! dialect ([`sqlite`], the embedded default, and [`postgres`], for hosted deployments) with
//! its migrations embedded in the binary and applied at open. [`records`] are plain data.
//! Domain rules live in their modules and run inside the store's transactions, so a backend
//! never re-implements a rule: entry limits ([`crate::journeys::EntryLimit`]), property merge
//! ([`crate::contacts`]) and identity resolution ([`identity::resolve`], which drives a
//! backend's [`identity::IdentityTx`] primitives). Every method is scoped by tenant where the
//! data is tenant data.

mod codec;
pub mod identity;
pub(crate) mod membership_cache;
pub mod postgres;
pub mod records;
pub mod sqlite;
#[cfg(test)]
mod tests;

pub use records::*;

use crate::buckets::{BucketDef, BucketRegistry};
use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::{ApiKeyId, EmailId, RunId, TenantId};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database connection machinery stopped (a panicked or cancelled operation).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unreadable {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("cannot open the database: {0}")]
    Open(String),
    /// A request the data cannot satisfy (e.g. an identity with no key).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

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

/// A change to a manual bucket's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Add,
    Remove,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- tenancy ---
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;
    /// Create a tenant; a name already taken answers the existing tenant with `created: false`.
    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<(Tenant, bool)>;
    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord>;
    /// The live (not revoked) key with this hash.
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Revoke a key, only within `tenant` when one is given. Whether a live key was revoked.
    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        id: &ApiKeyId,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// A tenant's keys, revoked ones included, newest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKeyRecord>>;

    // --- modules ---
    /// Remember a loaded module version (idempotent on (tenant, hash)).
    async fn record_module_version(&self, version: &ModuleVersionRecord) -> StoreResult<()>;

    // --- ingest and contacts ---
    /// Ingest a batch of events in ONE transaction; outcomes in input order. Per item: dedupe
    /// on the tenant's idempotency key (a duplicate changes nothing at all, and an earlier item
    /// of the same batch counts), resolve the contact with [`identity::resolve`] (merging
    /// `contact_properties`), store the event under the resolved key, end the person's live
    /// runs of the journeys whose `exitOn` the event matches ([`IngestRouting::exits`]: status
    /// exited, timer removed), then for each candidate run the enrollment guards
    /// ([`crate::journeys::Enrollment::admit`], reading the admin switch and prior runs) and
    /// create the run (status active, input snapshotting the contact after the merge and the
    /// event) with a timer due at `received_at`, or add the skip to the journey's counters.
    /// All or nothing: on an error nothing of the batch is written (the caller retries items
    /// alone).
    ///
    /// Then, for a tenant with buckets, it re-evaluates the buckets the event can change
    /// ([`crate::buckets::membership::evaluate_event`]) and ingests each emitted transition as
    /// its own event (deduplicated on its deterministic key, routed to journeys by `routing`,
    /// never re-evaluated), in the same transaction.
    async fn ingest(
        &self,
        batch: Arc<[IngestItem]>,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Vec<IngestOutcome>>;
    /// Add a person to (or remove them from) a manual bucket, ingesting the transition like
    /// [`Store::ingest`] does. `None` when no live contact has that key; a transition of
    /// `None` when nothing changed (already a member, or not one).
    async fn change_membership(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        key: &str,
        change: MembershipChange,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Option<Option<BucketTransition>>>;
    /// Create or update a contact through [`identity::resolve`], without an event. The
    /// property buckets the changed properties can move are re-evaluated in the same
    /// transaction, and each transition ingested as [`Store::ingest`] does.
    async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ContactUpsert>;
    /// Live contacts matching the lookup (through aliases too). A key or user id finds at
    /// most one; `Any` finds each live contact matching either of its keys.
    async fn find_contacts(
        &self,
        tenant: &TenantId,
        lookup: &ContactLookup,
    ) -> StoreResult<Vec<ContactRecord>>;
    /// A person's events (stored under this resolved key), newest first by occurred-at, at
    /// most `limit` (0 for the default page, capped), only those named `name` when given.
    async fn contact_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>>;
    /// A person's events of one name received in a span, oldest first (see
    /// [`ReceivedEvents`]): what a waiting run looks through.
    async fn events_received(
        &self,
        tenant: &TenantId,
        request: &ReceivedEvents,
    ) -> StoreResult<Vec<EventRecord>>;
    /// Soft-delete the live contact with this key (or alias): it stops resolving, its live runs
    /// exit (timers removed), its queued emails are cancelled, and its personal data (email,
    /// properties, run inputs' person snapshot, email addresses and contents) is erased.
    async fn delete_contact(
        &self,
        tenant: &TenantId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<DeletedContact>>;

    // --- scheduler and executor ---
    /// Claim up to `limit` runs whose timer is due at `now` (host clock) and not leased, oldest
    /// due first, leasing them to `lease.owner` until `lease.until_real`: what each one's
    /// activation needs, read in the claim's transaction (no second read, and on SQLite no
    /// trip through the reader pool, whose page caches every write invalidates).
    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
    ) -> StoreResult<Vec<ActivationInput>>;
    /// Commit activations in ONE transaction (group commit): per commit, in order, whether
    /// anything was written — nothing is for a run that ended or whose lease another worker
    /// holds now. See [`ActivationCommit`].
    async fn commit_activations(&self, commits: Arc<[ActivationCommit]>) -> StoreResult<Vec<bool>>;
    /// [`Store::commit_activations`] of one activation.
    async fn commit_activation(&self, commit: ActivationCommit) -> StoreResult<bool> {
        let written = self.commit_activations(Arc::new([commit])).await?;
        written.first().copied().ok_or_else(|| {
            StoreError::corrupt("activation commit", "the store answered no outcome")
        })
    }
    /// Give a claimed run back (a host-side failure): its timer becomes due again at `retry_at`.
    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()>;
    /// The earliest due time among unleased timers, to know how long the scheduler may sleep.
    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>>;

    // --- history, for journeys' `history-*` reads ---
    /// How many events named `name` the person stored under `contact_key` has, only those
    /// that occurred at or after `since` when given.
    async fn count_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: &str,
        since: Option<Timestamp>,
    ) -> StoreResult<u64>;
    async fn journey_history(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<JourneyHistory>;
    /// `to` is normalised by the caller.
    async fn email_history(
        &self,
        tenant: &TenantId,
        to: &str,
        template: &str,
    ) -> StoreResult<EmailHistory>;

    // --- journey effects ---
    /// Claim stored effects that are due (unleased, or whose lease or retry time passed on the
    /// real clock), oldest first, leasing them to `lease.owner`.
    async fn claim_run_effects(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<RunEffect>>;
    /// An effect claimed by `lease_owner` is done: applied (`Ok`: deleted), or failed
    /// (`Err(message)`: released with the error, not retried before `retry_at`, real clock).
    async fn finish_run_effect(
        &self,
        run_id: &RunId,
        seq: u32,
        lease_owner: &str,
        outcome: Result<(), EffectFailure>,
    ) -> StoreResult<()>;

    // --- delivery ---
    /// Claim queued emails whose next attempt is due (real clock), leasing them.
    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>>;
    /// Extend this worker's claim on one email to `lease.until_real`, if it still holds it and
    /// the email is still queued; false when another worker claimed it after this one's lease
    /// lapsed (or it was sent or cancelled meanwhile), so it must not be sent.
    async fn renew_outbox_lease(&self, id: &EmailId, lease: &Lease) -> StoreResult<bool>;
    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()>;

    // --- email: templates, preferences, unsubscribe links ---
    /// The tenant's API-managed templates, by key.
    async fn email_templates(&self, tenant: &TenantId) -> StoreResult<Vec<TenantTemplate>>;
    async fn email_template(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<TenantTemplate>>;
    /// Create or replace a template (keeping its `created_at` when it existed). Whether it
    /// was created.
    async fn put_email_template(
        &self,
        tenant: &TenantId,
        template: &TenantTemplate,
    ) -> StoreResult<bool>;
    /// Whether a template was deleted.
    async fn delete_email_template(&self, tenant: &TenantId, key: &str) -> StoreResult<bool>;
    /// The key that signs the tenant's unsubscribe links, shared by every host on this
    /// database: the stored one, or else `candidate` stored now (a concurrent first use keeps
    /// whichever was stored first). Without a candidate, only a read (`None` when the tenant
    /// has no key yet).
    async fn email_signing_secret(
        &self,
        tenant: &TenantId,
        candidate: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<String>>;
    /// Record that the person `contact_key` opted out of email at `email` (normalised by the
    /// caller). Whether they were subscribed before.
    async fn unsubscribe(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Whether the person `contact_key`, or the address `email`, opted out.
    async fn is_unsubscribed(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool>;
    /// Whether `journey_id` queued or sent an email to `to` created at or after `since` (host
    /// clock): what its `suppress` window looks for. Failed, cancelled and suppressed emails
    /// do not count.
    async fn journey_emailed_since(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> StoreResult<bool>;

    // --- inspection ---
    async fn list_runs(&self, tenant: &TenantId, filter: &RunFilter)
    -> StoreResult<Vec<RunRecord>>;
    async fn run_detail(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>>;
    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>>;

    // --- buckets: reads ---
    // Every read sees live contacts only: a membership row whose contact was deleted (or
    // merged away) is invisible, whatever its status.
    /// Counts of every bucket of the tenant that has membership rows, by bucket id (one
    /// query); a bucket without any is absent.
    async fn bucket_counts(&self, tenant: &TenantId) -> StoreResult<HashMap<String, BucketCounts>>;
    /// Counts of one bucket (zero when it has no rows).
    async fn bucket_counts_of(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<BucketCounts>;
    /// A page of a bucket's current members in membership-id order (keyset on the id, so a
    /// member present across the whole walk appears exactly once), with the total.
    async fn bucket_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        page: &MemberPageRequest,
    ) -> StoreResult<MemberPage>;
    /// The bucket's most recent joins among its current members, newest first (membership ids
    /// are UUIDv7, created at the join), at most `limit` (capped at 100).
    async fn recent_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<BucketMember>>;
    /// The current membership of the live contact `key` designates (resolved like
    /// [`ContactLookup::Key`]: its key, a key it had before, or an aliased user or anonymous
    /// id); `None` when no live contact has that key or it is not a member.
    async fn bucket_membership(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        key: &str,
    ) -> StoreResult<Option<ActiveMembership>>;
    /// The current memberships of the live contact whose resolved key is `contact_key`, by
    /// bucket id.
    async fn contact_memberships(
        &self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>>;

    // --- buckets: backfill (domain rules in `crate::buckets::backfill`) ---
    /// Record the tenant's enabled computed buckets as loaded now: per bucket, apply
    /// [`crate::buckets::backfill::on_register`] to its stored config in one transaction
    /// (a new bucket gets a row with no fingerprint and a pending first-time backfill; changed
    /// criteria queue a re-evaluation; unchanged ones change nothing).
    async fn register_buckets(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The tenant's bucket configs, by bucket id order.
    async fn backfill_statuses(&self, tenant: &TenantId) -> StoreResult<Vec<BackfillStatus>>;
    /// (Re)start the bucket's backfill of `fingerprint` from the beginning (state pending,
    /// progress, error and lease cleared; mode [`crate::buckets::backfill::restart_mode`]);
    /// a worker holding it loses its lease.
    async fn restart_backfill(
        &self,
        tenant: &TenantId,
        bucket: &BucketFingerprint,
        now: Timestamp,
    ) -> StoreResult<BackfillStatus>;
    /// Claim one of the tenant's backfills this host can compute — one of `buckets` whose
    /// target is that fingerprint — that is pending, or running under a lease that ran out
    /// (real clock): it becomes running, leased to `lease.owner`, its total counted when not
    /// yet known. Concurrent claimers take different ones.
    async fn claim_backfill(
        &self,
        tenant: &TenantId,
        buckets: &[BucketFingerprint],
        lease: &Lease,
        now: Timestamp,
    ) -> StoreResult<Option<ClaimedBackfill>>;
    /// Scan the next page of at most `page_size` live contacts (keyset on the contact id,
    /// after the stored cursor) in one transaction: each through
    /// [`crate::buckets::backfill::apply_to_contact`] at `now` (joins silent, with their dwell
    /// anchor; leaves ingested as transition events, routed by `routing`), then advance the
    /// cursor and progress and renew the lease — or, on the last page, store the target
    /// fingerprint and complete. Nothing is written when `lease.owner` no longer holds it.
    async fn backfill_step(
        &self,
        claim: &ClaimedBackfill,
        bucket: &BucketDef,
        lease: &Lease,
        page_size: u32,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<BackfillStep>;
    /// Mark a backfill `lease_owner` holds as failed with `message`.
    async fn fail_backfill(
        &self,
        claim: &ClaimedBackfill,
        lease_owner: &str,
        message: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    // --- journeys: admin ---
    /// Switch a journey on or off for the tenant (upsert): read by the enrollment guards of
    /// every later ingest; runs already started continue.
    async fn set_journey_enabled(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Runs by status, skips by reason and the admin switch of the tenant's journeys, by
    /// journey id; only `journey_id` when given. A journey with none of them is absent.
    async fn journey_stats(
        &self,
        tenant: &TenantId,
        journey_id: Option<&str>,
    ) -> StoreResult<HashMap<String, JourneyStats>>;
    /// End a live run (status exited, timer removed), as an admin cancel.
    async fn cancel_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome>;

    // --- reconcile: buckets over time (see `crate::reconcile`) ---
    /// Run one pass of the reconcile job over one bucket as of `now`, reading at most `limit`
    /// rows, in ONE write transaction ([`crate::buckets::reconcile::run_pass`]: the shared
    /// join and leave rules with source `reconcile`, dwell stamps), ingesting each transition
    /// like [`Store::ingest`] does (deduplicated on its deterministic key, routed to journeys),
    /// in the same transaction.
    async fn reconcile_pass(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        pass: crate::buckets::reconcile::Pass,
        now: Timestamp,
        limit: u32,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ReconcileReport>;
    /// A lower bound on the earliest instant after `after` at which a pass of `bucket` can
    /// have work ([`crate::buckets::reconcile::work_plan`]); `None` when nothing the clock
    /// does can change it. Lets a catch-up skip the schedule ticks where nothing can happen.
    async fn reconcile_next_work(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        after: Timestamp,
    ) -> StoreResult<Option<Timestamp>>;
    /// Take (or renew) the tenant's reconcile lease for `lease.owner` until `lease.until_real`
    /// unless another owner holds an unexpired one: `Some(last completed tick)` when taken,
    /// `None` when another host is reconciling the tenant.
    async fn claim_reconcile(
        &self,
        tenant: &TenantId,
        lease: &Lease,
    ) -> StoreResult<Option<Option<Timestamp>>>;
    /// Record the last completed tick (it never moves back) and, when `release`, give the
    /// lease up; false when `owner` no longer holds it.
    async fn finish_reconcile(
        &self,
        tenant: &TenantId,
        owner: &str,
        tick: Option<Timestamp>,
        release: bool,
    ) -> StoreResult<bool>;

    // --- host settings ---
    /// The persisted dev-clock offset (0 when never advanced).
    async fn clock_offset(&self) -> StoreResult<i64>;
    /// Add `by_ms` (not negative) to the stored offset in one statement, so concurrent advances
    /// from several processes all count; returns the new offset.
    async fn advance_clock_offset(&self, by_ms: i64) -> StoreResult<i64>;

    /// Bytes the database engine holds in this process's memory (SQLite: page caches, schema
    /// and statements, and the writer's contact cache), or `None` when the database runs in
    /// its own process (PostgreSQL).
    fn in_process_memory(&self) -> Option<u64> {
        None
    }

    /// Whether the store commits one write transaction at a time (SQLite's single writer), so
    /// a group-commit batch waiting for it is better left gathering
    /// ([`crate::group_commit::GroupCommit::serial_store`]).
    fn commits_serially(&self) -> bool {
        false
    }
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

/// Tests ingest without modules (no journeys beyond the items' own candidates, no buckets).
#[cfg(test)]
pub(crate) trait IngestWithoutModules {
    fn ingest_plain(
        &self,
        batch: Vec<IngestItem>,
    ) -> impl Future<Output = StoreResult<Vec<IngestOutcome>>> + Send;

    /// [`Store::upsert_contact`] with no buckets to move: its resolution.
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
