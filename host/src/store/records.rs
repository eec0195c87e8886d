//! The plain data the store takes and returns. No behaviour beyond parsing names.

use crate::clock::Timestamp;
use crate::contacts::{Identity, IdentityKind};
use crate::ids::{ApiKeyId, ContactId, EmailId, EventId, RunId, TenantId};
use crate::journeys::journal::JournalEntry;
use crate::journeys::{RunInput, RunStatus, SkipReason};
use crate::tenancy::Scope;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
    /// Set while the tenant is suspended (see [`crate::store::Operators`]).
    pub suspended_at: Option<Timestamp>,
}

/// A live tenant key as a request presents it: the key and its tenant, read together so one
/// lookup tells whether the tenant is suspended.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantKey {
    pub key: ApiKeyRecord,
    pub tenant: Tenant,
}

/// An operator key to store: only the hash of the secret, never the secret.
#[derive(Debug, Clone)]
pub struct NewOperatorKey {
    pub id: ApiKeyId,
    pub name: String,
    pub key_hash: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorKeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl From<NewOperatorKey> for OperatorKeyRecord {
    fn from(key: NewOperatorKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            created_at: key.created_at,
            revoked_at: None,
        }
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

/// A key as just stored: live (its hash stays behind in the store).
impl From<NewApiKey> for ApiKeyRecord {
    fn from(key: NewApiKey) -> Self {
        Self {
            id: key.id,
            tenant_id: key.tenant_id,
            name: key.name,
            scopes: key.scopes,
            created_at: key.created_at,
            revoked_at: None,
        }
    }
}

/// A module version, content-addressed by the sha256 of its wasm, as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleVersionRecord {
    pub tenant_id: TenantId,
    pub hash: String,
    pub name: String,
    /// The manifest `describe` returned, as JSON.
    pub manifest: Value,
    pub size_bytes: u64,
    /// The deploying API key; `None` when a host deployed it from its `--modules` directory.
    pub deployed_by: Option<ApiKeyId>,
    pub deployed_at: Timestamp,
    /// When it last became its module's active version.
    pub activated_at: Option<Timestamp>,
    /// Runs started on it that have not ended.
    pub live_runs: u64,
}

/// A stored version's module name and component, as a host loading it needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleComponent {
    pub name: String,
    /// `None` when not asked for, or for a version recorded before versions kept their bytes.
    pub wasm: Option<Vec<u8>>,
}

/// A version to store, with its component, as part of a [`ModuleChange::Deploy`].
#[derive(Debug, Clone)]
pub struct NewModuleVersion {
    pub name: String,
    pub hash: String,
    pub manifest: Value,
    pub wasm: Arc<[u8]>,
    pub deployed_by: Option<ApiKeyId>,
}

/// How a module came to a tenant: a `--modules` directory removes the modules it deployed
/// when their file goes, and leaves the ones deployed over the API alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleOrigin {
    Api,
    Directory,
}

impl ModuleOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleOrigin::Api => "api",
            ModuleOrigin::Directory => "directory",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "api" => Some(ModuleOrigin::Api),
            "directory" => Some(ModuleOrigin::Directory),
            _ => None,
        }
    }
}

/// One change to a tenant's modules; a deploy commits several at once or none.
#[derive(Debug, Clone)]
pub enum ModuleChange {
    /// Store the version (unless stored) and make it the module's active one.
    Deploy {
        version: NewModuleVersion,
        origin: ModuleOrigin,
    },
    /// Make a stored version of the module its active one again.
    Activate {
        name: String,
        hash: String,
        origin: ModuleOrigin,
    },
    /// No new runs start on the module; live runs finish on their versions.
    Remove { name: String },
}

/// A tenant's module, active or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleRecord {
    pub name: String,
    /// `None` once removed.
    pub active_hash: Option<String>,
    pub origin: ModuleOrigin,
    pub updated_at: Timestamp,
    /// The size of its active version's component (0 once removed): what counts against the
    /// tenant's total module size.
    pub active_bytes: u64,
}

/// A tenant's modules at one revision of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleSet {
    /// Moves with every committed change of the tenant's modules.
    pub revision: i64,
    /// By name.
    pub modules: Vec<ModuleRecord>,
}

/// An event accepted by ingest; the store resolves its contact from `identity`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub name: String,
    pub identity: Identity,
    pub event_properties: Map<String, Value>,
    /// Patch merged into the contact's properties (`null` removes a key).
    pub contact_properties: Map<String, Value>,
    pub idempotency_key: Option<String>,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
}

/// A live run an event ended because it is one of its journey's `exitOn` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitedRun {
    pub run_id: RunId,
    pub journey_id: String,
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
        /// The contact's resolved key, under which the event is stored.
        contact_key: String,
        started: Vec<StartedRun>,
        skipped: Vec<SkippedRun>,
        /// Live runs the event (or a transition it caused) ended through `exitOn`.
        exited: Vec<ExitedRun>,
        /// Bucket memberships the event changed (their transition events were ingested too,
        /// and the runs those started are in `started`).
        transitions: Vec<BucketTransition>,
    },
    /// The idempotency key was already used: nothing at all changed.
    Duplicate { event_id: EventId },
}

/// A membership change an ingested event (or the membership API) made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketTransition {
    pub bucket_id: String,
    /// `entered`, `left` or `dwell`.
    pub transition: &'static str,
    /// The membership's epoch: 1 for a first entry.
    pub entry_count: u32,
    /// Whether its event was emitted (a join the bucket's entry limit keeps quiet is not).
    pub emitted: bool,
}

impl From<&crate::buckets::membership::Transition> for BucketTransition {
    fn from(t: &crate::buckets::membership::Transition) -> Self {
        BucketTransition {
            bucket_id: t.bucket_id.clone(),
            transition: t.label(),
            entry_count: t.entry_count,
            emitted: t.emit,
        }
    }
}

/// What one reconcile pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Rows the pass read: a full batch means there may be more.
    pub examined: usize,
    pub transitions: Vec<BucketTransition>,
    /// Runs the transitions' events started.
    pub started_runs: usize,
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
    /// The journey whose run queued it (its suppress window counts these).
    pub journey_id: String,
    pub to: String,
    pub template: String,
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    pub html: Option<String>,
    /// The signed unsubscribe link (the `List-Unsubscribe` header).
    pub unsubscribe_url: Option<String>,
    /// Queued, or suppressed (recorded, never handed to SMTP). The commit turns a queued
    /// email into a suppressed one when the recipient unsubscribed meanwhile.
    pub status: EmailStatus,
    pub suppressed_reason: Option<SuppressedReason>,
    pub created_at: Timestamp,
}

/// The run's state after an activation.
#[derive(Debug, Clone, PartialEq)]
pub enum RunTransition {
    /// Suspended: a timer wakes it at this time.
    Waiting {
        wake_at: Timestamp,
        /// Set when the run waits for one of its person's events as well (`wait-for-event`).
        wait: Option<EventWait>,
    },
    Completed,
    Failed {
        error: String,
    },
}

/// What a run in `wait-for-event` waits for: an ingest that stores an event of this name for
/// the run's person makes its timer due at once.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWait {
    pub event_name: String,
    /// Events of the name received from here on count (host clock).
    pub since: Timestamp,
    /// How many of them the activation saw (none matched). If more are stored when the
    /// commit runs, one arrived meanwhile, before the ingest could see this wait: the commit
    /// makes the timer due at once.
    pub seen: u64,
}

/// What a journey does to the world outside its run besides email: recorded by the activation,
/// stored with its commit, applied afterwards exactly once (`journeys::effects`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Effect {
    /// Ingest an event for the person `person_key` designates (a resolved key, or a user id,
    /// which creates the person if new).
    #[serde(rename_all = "camelCase")]
    Trigger {
        name: String,
        person_key: String,
        properties: Map<String, Value>,
    },
    /// Merge properties into the run's person's contact (`null` removes a key).
    #[serde(rename_all = "camelCase")]
    UpdateContact {
        person_key: String,
        properties: Map<String, Value>,
    },
}

impl Effect {
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Trigger { .. } => "trigger",
            Effect::UpdateContact { .. } => "update-contact",
        }
    }
}

/// An effect waiting to be applied: the run and journal step that recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEffect {
    pub run_id: RunId,
    pub seq: u32,
    pub tenant_id: TenantId,
    pub effect: Effect,
}

/// Why applying an effect failed, and when to try again (real clock).
#[derive(Debug, Clone, PartialEq)]
pub struct EffectFailure {
    pub error: String,
    pub retry_at: Timestamp,
}

/// Everything one activation produced, committed in ONE transaction: journal rows, outbox
/// rows, the timer and the run's status, and the activation counted in its tenant's usage. If
/// the run became terminal meanwhile (exited) or the lease was lost, nothing is written (or
/// counted) and `Ok(false)` is returned.
#[derive(Debug, Clone)]
pub struct ActivationCommit {
    pub run_id: RunId,
    pub tenant_id: TenantId,
    pub lease_owner: String,
    pub journal: Vec<JournalEntry>,
    pub emails: Vec<NewEmail>,
    /// Effects recorded at these journal steps, stored to be applied after the commit.
    pub effects: Vec<(u32, Effect)>,
    pub transition: RunTransition,
    pub now: Timestamp,
    /// How long the guest ran (see [`crate::runtime::ActivationReport::guest_cpu`]): the
    /// tenant's usage, counted with the commit on the day of `now`.
    pub guest_cpu: Duration,
}

/// An email claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEmail {
    pub id: EmailId,
    pub tenant_id: TenantId,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    pub unsubscribe_url: Option<String>,
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
    /// Never sent: the contact was deleted first.
    Cancelled,
    /// Recorded, never sent: see [`SuppressedReason`].
    Suppressed,
}

/// Why an email was recorded but not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressedReason {
    /// The recipient (the person or the address) unsubscribed.
    Unsubscribed,
    /// The journey emailed this address within its `suppress` window.
    JourneySuppressWindow,
}

impl SuppressedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressedReason::Unsubscribed => "unsubscribed",
            SuppressedReason::JourneySuppressWindow => "journey_suppress_window",
        }
    }

    pub fn parse(text: &str) -> Option<SuppressedReason> {
        [
            SuppressedReason::Unsubscribed,
            SuppressedReason::JourneySuppressWindow,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// A template a tenant manages through the API (`/v1/templates`); it overrides a module's
/// shipped template of the same key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantTemplate {
    pub key: String,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    pub html: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A tenant's own sender, as stored: the From and Reply-To, the transport's settings as JSON
/// and its secret sealed. The store neither reads the JSON nor opens the secret; what they
/// mean is `crate::delivery::senders`'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSenderRecord {
    pub from_name: Option<String>,
    pub from_address: String,
    pub reply_to: Option<String>,
    /// The transport's settings, without its secret.
    pub transport: String,
    /// The transport's password or API key, sealed under the host's secrets key.
    pub secret: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Queued => "queued",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
            EmailStatus::Cancelled => "cancelled",
            EmailStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(text: &str) -> Option<EmailStatus> {
        [
            EmailStatus::Queued,
            EmailStatus::Sent,
            EmailStatus::Failed,
            EmailStatus::Cancelled,
            EmailStatus::Suppressed,
        ]
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
    pub html: Option<String>,
    pub status: EmailStatus,
    /// Set when the status is `suppressed`.
    pub suppressed_reason: Option<SuppressedReason>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// A stored event, as a person's timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub id: EventId,
    pub name: String,
    pub properties: Map<String, Value>,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
    pub idempotency_key: Option<String>,
}

/// Which of a person's events `wait-for-event` looks at: those named `name` received in
/// `from..=until` (host clock), in receive order, after `after` (a previous page's last
/// `(received_at, id)`), at most `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvents {
    pub contact_key: String,
    pub name: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub after: Option<(Timestamp, EventId)>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub journey_id: Option<String>,
    pub contact_key: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs that are active or waiting.
    pub live_only: bool,
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

/// A contact row. `key` is its resolved key: user id, else anonymous id, else id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactRecord {
    pub id: ContactId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    pub key: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub anonymous_id: Option<String>,
    pub properties: Map<String, Value>,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

impl ContactRecord {
    /// The value the contact's own column for `kind` holds (its resolved key for `Key`). At
    /// most one live contact of a tenant holds a given value in a given column.
    pub fn own_value(&self, kind: IdentityKind) -> Option<&str> {
        match kind {
            IdentityKind::Key => Some(&self.key),
            IdentityKind::External => self.external_id.as_deref(),
            IdentityKind::Email => self.email.as_deref(),
            IdentityKind::Anonymous => self.anonymous_id.as_deref(),
        }
    }
}

/// What resolving an identity did.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The contact after the operation.
    pub contact: ContactRecord,
    pub created: bool,
    /// An existing contact was matched (and perhaps filled in or merged into).
    pub linked: bool,
    /// Contacts merged into this one (now soft-deleted).
    pub merged: Vec<ContactId>,
    /// The property keys whose value this resolution changed (added, replaced or removed):
    /// the keys that can move the contact's property buckets. A merge names every property
    /// key of the merged contact, since the merged memberships are re-evaluated afresh.
    pub changed_properties: Vec<String>,
}

/// What [`super::Contacts::upsert_contact`] did: the resolution, then the bucket transitions its
/// changed properties caused (ingested like real-time ones) and the runs those started.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactUpsert {
    pub resolution: Resolution,
    pub transitions: Vec<BucketTransition>,
    pub started: Vec<StartedRun>,
}

/// An old identity value that still leads to a contact (after a merge or a key change).
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub tenant_id: TenantId,
    pub kind: IdentityKind,
    pub value: String,
    pub contact_id: ContactId,
    /// The contact it came from, for merges.
    pub from_contact_id: Option<ContactId>,
    pub reason: AliasReason,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasReason {
    /// A key the contact gained (or its previous resolved key).
    Promote,
    /// A key of a contact merged into this one.
    Merge,
}

impl AliasReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AliasReason::Promote => "promote",
            AliasReason::Merge => "merge",
        }
    }
}

/// How to look contacts up.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactLookup {
    /// By resolved key (or a key it had before).
    Key(String),
    /// Live contacts whose user id or normalised email matches (either may be absent).
    Any {
        user_id: Option<String>,
        email: Option<String>,
    },
}

/// What deleting a contact did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedContact {
    pub contact_id: ContactId,
    pub key: String,
    pub exited_runs: u32,
    pub cancelled_emails: u32,
}

/// Memberships of one bucket, counted over live contacts only (a deleted contact's rows are
/// never counted, whatever their status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCounts {
    /// Current members.
    pub active: u64,
    /// Closed membership epochs: a person who left twice counts twice.
    pub left: u64,
}

/// A page of a bucket's members to read: keyset paging on the membership id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPageRequest {
    /// Members per page: [`MemberPageRequest::DEFAULT_LIMIT`] when absent, at least 1, at
    /// most [`MemberPageRequest::MAX_LIMIT`] (larger asks are clamped).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`; absent for the first page.
    pub cursor: Option<String>,
}

impl MemberPageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 100;

    /// The number of members the page holds at most.
    pub fn page_size(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }

    /// The number of members a page asking for `limit` of them holds at most.
    pub fn size_of(limit: u32) -> u32 {
        Self {
            limit: Some(limit),
            cursor: None,
        }
        .page_size()
    }
}

/// One current member of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketMember {
    /// The membership's id (a UUIDv7; the keyset order, opaque rather than chronological).
    pub id: String,
    /// The contact's resolved key.
    pub contact_key: String,
    pub email: Option<String>,
    pub entered_at: Timestamp,
    /// The membership's epoch: 1 for a first entry.
    pub entry_count: u32,
}

/// A page of members, in membership-id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberPage {
    pub members: Vec<BucketMember>,
    /// The cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// Current members when the page was read (a snapshot: it may drift across pages).
    pub total: u64,
}

/// A live contact's current membership of one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMembership {
    /// The membership's id.
    pub id: String,
    pub bucket_id: String,
    /// The contact's resolved key.
    pub contact_key: String,
    pub entered_at: Timestamp,
    /// The membership's epoch: 1 for a first entry.
    pub entry_count: u32,
}

/// A person's past runs of one journey, for `history-journey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JourneyHistory {
    /// Runs of any status.
    pub entries: u64,
    /// Runs that completed.
    pub completed: u64,
    pub last_completed_at: Option<Timestamp>,
}

/// The emails of one template to one address, for `history-email`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmailHistory {
    /// Emails of any status (queued, sent, failed, suppressed, cancelled).
    pub count: u64,
    /// The latest delivery, if any was delivered.
    pub last_sent_at: Option<Timestamp>,
}

/// What a tenant's journey has done: its runs by status and the triggers it skipped by
/// reason (counted since the journey was first seen), and the admin switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JourneyStats {
    /// The admin switch (`PATCH /v1/journeys/{id}`); `None` when never set.
    pub admin_enabled: Option<bool>,
    pub runs: std::collections::BTreeMap<RunStatus, u64>,
    pub skips: std::collections::BTreeMap<SkipReason, u64>,
}

/// What cancelling a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The live run is now exited (its timer removed).
    Cancelled { journey_id: String },
    /// The run had already finished with this status; nothing changed.
    AlreadyFinished(RunStatus),
    /// No run of the tenant has that id.
    NotFound,
}

/// A bucket's stored config: the criteria fingerprint its members were computed with and its
/// backfill's progress (`GET /v1/buckets/{id}` shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillStatus {
    pub bucket_id: String,
    /// `None` until a backfill completed.
    pub criteria_hash: Option<String>,
    pub state: crate::buckets::backfill_rules::BackfillState,
    pub mode: crate::buckets::backfill_rules::BackfillMode,
    /// The fingerprint the open (or last) backfill computes.
    pub target_hash: String,
    /// Live contacts scanned so far, of `total` (counted when the backfill started; contacts
    /// created meanwhile may take `done` past it).
    pub done: u64,
    pub total: Option<u64>,
    /// Members it added (silently) and removed (with `bucket:left`).
    pub joined: u64,
    pub left: u64,
    pub error: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A bucket as registration sees it: its id and the fingerprint of its current criteria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketFingerprint {
    pub bucket_id: String,
    pub fingerprint: String,
}

/// A backfill a worker holds the lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedBackfill {
    pub tenant_id: TenantId,
    pub bucket_id: String,
    pub mode: crate::buckets::backfill_rules::BackfillMode,
    pub target_hash: String,
}

/// What one page of a backfill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillStep {
    /// More contacts to scan.
    Progress { done: u64, total: u64 },
    /// The scan finished: the fingerprint is stored, the state completed.
    Completed { done: u64, joined: u64, left: u64 },
    /// The worker no longer holds the lease (it ran out and another host took over, or the
    /// backfill was restarted): nothing was written; stop.
    Lost,
}
