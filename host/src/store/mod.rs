//! The store: the only place that speaks SQL.
//!
//! [`Store`] is the interface every other layer uses; each backend implements it in its own
//! dialect ([`sqlite`] now, PostgreSQL next) with its migrations embedded in the binary and
//! applied at open. Records here are plain data. Domain rules (entry limits, property merge)
//! live in their modules and are called from inside the store's transactions, so a backend
//! never re-implements a rule. Every method is scoped by tenant where the data is tenant data.

pub mod sqlite;

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, EmailId, EventId, RunId, TenantId};
use crate::journeys::journal::JournalEntry;
use crate::journeys::{EntryLimit, RunInput, RunStatus, SkipReason};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unreadable {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("cannot open the database: {0}")]
    Open(String),
}

impl StoreError {
    pub fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An API key scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
    Deploy,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Admin, Scope::Deploy];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Deploy => "deploy",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A key to store: only the hash of the secret, never the secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub key_hash: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A loaded module version, content-addressed by the sha256 of its wasm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleVersionRecord {
    pub tenant_id: TenantId,
    pub hash: String,
    pub name: String,
    /// The manifest `describe` returned, as JSON.
    pub manifest: Value,
    pub loaded_at: Timestamp,
}

/// An event accepted by ingest, with its contact already identified.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub name: String,
    /// The contact's resolved key.
    pub contact_key: String,
    /// Normalised email, when the event carried one.
    pub email: Option<String>,
    pub event_properties: Map<String, Value>,
    /// Patch merged into the contact's properties (`null` removes a key).
    pub contact_properties: Map<String, Value>,
    pub idempotency_key: Option<String>,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
}

/// A journey the event's name triggers; the store applies its entry limit inside the ingest
/// transaction and, when admitted, creates the run and its first timer (due at once).
#[derive(Debug, Clone)]
pub struct RunCandidate {
    pub journey_id: String,
    pub module_hash: String,
    pub entry_limit: EntryLimit,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedRun {
    pub run_id: RunId,
    pub journey_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRun {
    pub journey_id: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// The event was stored and the contact updated; these runs started.
    Stored {
        event_id: EventId,
        started: Vec<StartedRun>,
        skipped: Vec<SkippedRun>,
    },
    /// The idempotency key was already used: nothing at all changed.
    Duplicate { event_id: EventId },
}

/// A claim on due work, measured on the real clock (never the dev clock).
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub now_real: Timestamp,
    pub until_real: Timestamp,
}

impl Lease {
    /// A lease for `owner` from now (real clock) for `duration`.
    pub fn starting_now(owner: &str, duration: std::time::Duration) -> Self {
        let now_real = crate::clock::Clock::real_now();
        Lease {
            owner: owner.to_owned(),
            now_real,
            until_real: now_real.saturating_add(duration),
        }
    }
}

/// A run claimed for activation.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    pub run_id: RunId,
    pub tenant_id: TenantId,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: RunId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    pub journey_id: String,
    pub module_hash: String,
    pub contact_key: String,
    pub status: RunStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When a waiting run's timer is due.
    pub wake_at: Option<Timestamp>,
    pub activations: u32,
    pub error: Option<String>,
}

/// What an activation needs: the run, its input and its journal so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationInput {
    pub run: RunRecord,
    pub input: RunInput,
    pub journal: Vec<JournalEntry>,
}

/// An email rendered by an activation, to be queued in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEmail {
    pub id: EmailId,
    pub tenant_id: TenantId,
    pub run_id: RunId,
    /// The journal step that queued it: (run_id, step_seq) is unique.
    pub step_seq: u32,
    pub contact_key: String,
    pub to: String,
    pub template: String,
    pub subject: String,
    pub body: String,
    pub created_at: Timestamp,
}

/// The run's state after an activation.
#[derive(Debug, Clone, PartialEq)]
pub enum RunTransition {
    /// Suspended: a timer wakes it at this time.
    Waiting {
        wake_at: Timestamp,
    },
    Completed,
    Failed {
        error: String,
    },
}

/// Everything one activation produced, committed in ONE transaction: journal rows, outbox
/// rows, the timer and the run's status. If the run became terminal meanwhile (exited) or the
/// lease was lost, nothing is written and `Ok(false)` is returned.
#[derive(Debug, Clone)]
pub struct ActivationCommit {
    pub run_id: RunId,
    pub tenant_id: TenantId,
    pub lease_owner: String,
    pub journal: Vec<JournalEntry>,
    pub emails: Vec<NewEmail>,
    pub transition: RunTransition,
    pub now: Timestamp,
}

/// An email claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEmail {
    pub id: EmailId,
    pub tenant_id: TenantId,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Delivery attempts before this one.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailStatus {
    /// Waiting for the delivery worker (also while a retry is pending).
    Queued,
    Sent,
    /// Gave up after the last attempt.
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Queued => "queued",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<EmailStatus> {
        [EmailStatus::Queued, EmailStatus::Sent, EmailStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailRecord {
    pub id: EmailId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    pub run_id: Option<RunId>,
    pub contact_key: String,
    pub to: String,
    pub template: String,
    pub subject: String,
    pub body: String,
    pub status: EmailStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub journey_id: Option<String>,
    pub contact_key: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct EmailFilter {
    pub to: Option<String>,
    pub contact_key: Option<String>,
    pub limit: u32,
}

/// A delivery outcome to record.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    Sent {
        at: Timestamp,
    },
    /// Failed; retried at `retry_at` (on the real clock), or given up when `None`.
    Failed {
        error: String,
        retry_at: Option<Timestamp>,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- tenancy ---
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;
    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<Tenant>;
    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord>;
    /// The live (not revoked) key with this hash.
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;

    // --- modules ---
    /// Remember a loaded module version (idempotent on (tenant, hash)).
    async fn record_module_version(&self, version: &ModuleVersionRecord) -> StoreResult<()>;

    // --- ingest ---
    /// In one transaction: dedupe on the idempotency key (a duplicate changes nothing), upsert
    /// the contact (merging `contact_properties` with [`crate::contacts::merge_properties`]),
    /// store the event, and for each candidate apply [`EntryLimit::admits`] and create the
    /// run (status active, input snapshotting the contact after the merge and the event) with
    /// a timer due at `received_at`.
    async fn ingest(
        &self,
        event: NewEvent,
        candidates: &[RunCandidate],
    ) -> StoreResult<IngestOutcome>;

    // --- scheduler and executor ---
    /// Claim up to `limit` runs whose timer is due at `now` (host clock) and not leased, oldest
    /// due first, leasing them to `lease.owner` until `lease.until_real`.
    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedRun>>;
    async fn load_activation(&self, run_id: &RunId) -> StoreResult<Option<ActivationInput>>;
    /// See [`ActivationCommit`]. Returns whether anything was written.
    async fn commit_activation(&self, commit: ActivationCommit) -> StoreResult<bool>;
    /// Give a claimed run back (a host-side failure): its timer becomes due again at `retry_at`.
    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()>;
    /// The earliest due time among unleased timers, to know how long the scheduler may sleep.
    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>>;

    // --- delivery ---
    /// Claim queued emails whose next attempt is due (real clock), leasing them.
    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>>;
    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()>;

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

    // --- host settings ---
    /// The persisted dev-clock offset (0 when never advanced).
    async fn clock_offset(&self) -> StoreResult<i64>;
    async fn set_clock_offset(&self, offset_ms: i64) -> StoreResult<()>;
}
