//! [`PgTx`]: an open PostgreSQL transaction as the shared flows and rules see it. It holds
//! what a transaction remembers between statements (the advisory locks it took, lookups
//! answered ahead, events and joins deferred to its end, memberships read up front) and
//! implements their primitives, each in the file of its concern: identity resolution and the
//! locks in `identity`, bucket membership in `membership`, ingest in `ingest`, backfill pages
//! in `backfills`, the reconcile job's reads and writes in `reconciles`.

use super::batch_contacts::BatchContacts;
use super::batch_counts::BatchCounts;
use super::batch_enrollment::BatchEnrollment;
use super::deferred_joins::DeferredJoins;
use super::deferred_runs::{PendingRun, insert_runs};
use super::runs::{AwaitedEvent, wake_waiting_runs};
use crate::clock::Timestamp;
use crate::contacts::IdentityKey;
use crate::ids::{EventId, TenantId};
use crate::store::codec::to_json;
use crate::store::membership_cache::MembershipCache;
use crate::store::{ContactRecord, NewEvent, StoreError, StoreResult};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// [`IdentityTx`] over an open PostgreSQL transaction, remembering the advisory locks it holds
/// so a lock already taken (an ingest batch takes its items' locks up front) costs nothing.
pub(super) struct PgTx<'a> {
    pub(super) conn: &'a mut PgConnection,
    pub(super) held: HashSet<i64>,
    /// The answers to the lookups `lock_identity` was given, read in one statement right after
    /// locking them; valid until this transaction writes anything (`resolve` looks every key
    /// up before it writes), so every write clears it.
    pub(super) looked_up: Option<LookedUp>,
    /// Ingest's: what the batch's identity values designate and the contacts' kept updates
    /// (see [`BatchContacts`]); keeps nothing in every other transaction.
    pub(super) contacts: BatchContacts,
    /// Ingest's: the event counts its bucket evaluations ask for, read up front (see
    /// [`BatchCounts`]); none in every other transaction.
    pub(super) counts: BatchCounts,
    /// Ingest's: what its enrollment guards ask, read up front (see [`BatchEnrollment`]);
    /// none in every other transaction.
    pub(super) enrollment: BatchEnrollment,
    /// Events this transaction stored but has not written yet (an ingest batch writes them
    /// all in one statement before it commits); re-pointing history re-points them too.
    pub(super) pending_events: Vec<PendingEvent>,
    /// Bucket transitions' events deferred to [`PgTx::write_events`] (see `defer_transitions`).
    pub(super) pending_transitions: Vec<PendingEvent>,
    /// Ingest's: the active memberships of the people this transaction locked up front (read
    /// together when the batch evaluates buckets), evaluated or created (see
    /// [`MembershipCache`]); capacity 0 (keeping none) in every other transaction.
    pub(super) memberships: MembershipCache,
    /// Ingest's: the membership rows of the people this transaction created, written with
    /// its events (see [`DeferredJoins`]); nothing is deferred in other transactions.
    pub(super) deferred_joins: DeferredJoins,
    /// Whether a bucket transition's event waits for [`PgTx::write_events`] too, instead of
    /// being inserted as it happens (see [`PgTx::insert_transition_event`]), and so do the
    /// runs the transaction starts (see `deferred_runs`).
    pub(super) defer_transitions: bool,
    /// Runs started but not inserted yet (ingest batches that defer).
    pub(super) pending_runs: Vec<PendingRun>,
    /// Set when a kept run turned out to be another writer's as it was written mid-batch:
    /// the batch must be rolled back and run again without deferring.
    pub(super) deferred_write_lost: bool,
    /// Ingest's: the idempotency keys already used, those of this
    /// transaction's deferred events included.
    pub(super) used_keys: UsedKeys,
    /// Whether `used_keys` holds every used key the transaction can meet (read up front for
    /// an ingest batch); otherwise a key it lacks is looked up.
    pub(super) used_keys_read: bool,
}

/// Idempotency keys already used, by tenant then key (looked up without allocating): the
/// event that used each.
pub(super) type UsedKeys = HashMap<TenantId, HashMap<String, EventId>>;

/// How many people an ingest transaction remembers the memberships of: more than a batch
/// can name.
const INGEST_MEMBERSHIP_CAPACITY: usize = 1 << 16;

/// The (tenant, key) of contacts a transaction locked.
pub(super) type LockedPeople = Vec<(TenantId, String)>;

/// What [`PgTx::write_events`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(super) enum Written {
    /// Every pending row was inserted.
    All,
    /// Another writer had already stored a deferred transition's key, or started a deferred
    /// run: the transaction acted on a write that is not its own and must be rolled back and
    /// run again without deferring.
    Taken,
}

impl Written {
    /// For a transaction that writes transitions as they happen (so every pending event is
    /// its own): a taken key is an error.
    pub(super) fn all(self) -> StoreResult<()> {
        match self {
            Written::All => Ok(()),
            Written::Taken => Err(StoreError::Invalid(
                "a bucket transition was stored by another writer meanwhile; retry".into(),
            )),
        }
    }
}

/// Lookups answered ahead: for a tenant, each value with the live contact it designates.
pub(super) type LookedUp = (TenantId, Vec<(IdentityKey, Option<ContactRecord>)>);

/// An event to insert, its JSON already serialised.
pub(super) struct PendingEvent {
    pub id: String,
    pub tenant_id: TenantId,
    pub contact_key: String,
    pub name: String,
    pub properties: String,
    pub occurred_at: i64,
    pub received_at: i64,
    pub idempotency_key: Option<String>,
}

impl PendingEvent {
    /// `event`, stored under the resolved `contact_key`.
    pub(super) fn of(event: &NewEvent, contact_key: &str) -> StoreResult<Self> {
        Ok(Self {
            id: event.id.as_str().to_owned(),
            tenant_id: event.tenant_id.clone(),
            contact_key: contact_key.to_owned(),
            name: event.name.clone(),
            properties: to_json("event properties", &event.event_properties)?,
            occurred_at: event.occurred_at.0,
            received_at: event.received_at.0,
            idempotency_key: event.idempotency_key.clone(),
        })
    }
}

impl<'a> PgTx<'a> {
    /// A transaction that writes every transition as it happens and remembers no memberships.
    pub(super) fn new(conn: &'a mut PgConnection) -> Self {
        Self {
            conn,
            held: HashSet::new(),
            looked_up: None,
            contacts: BatchContacts::default(),
            counts: BatchCounts::default(),
            enrollment: BatchEnrollment::default(),
            pending_events: Vec::new(),
            pending_transitions: Vec::new(),
            memberships: MembershipCache::new(0),
            deferred_joins: DeferredJoins::default(),
            defer_transitions: false,
            pending_runs: Vec::new(),
            deferred_write_lost: false,
            used_keys: UsedKeys::new(),
            used_keys_read: false,
        }
    }

    /// An ingest batch's transaction: it remembers the memberships of the people it
    /// evaluates, and with `defer_transitions` writes transitions' events with the batch's.
    pub(super) fn for_ingest(conn: &'a mut PgConnection, defer_transitions: bool) -> Self {
        Self {
            memberships: MembershipCache::new(INGEST_MEMBERSHIP_CAPACITY),
            contacts: BatchContacts::enabled(),
            deferred_joins: DeferredJoins::enabled(),
            defer_transitions,
            ..Self::new(conn)
        }
    }

    /// Store an event with the transaction's next [`PgTx::write_events`].
    pub(super) fn defer_event(&mut self, event: PendingEvent) {
        self.pending_events.push(event);
    }

    /// Every idempotency key this transaction can meet that stored events already use, read
    /// up front (an ingest batch holds their advisory locks, so the answer stays true).
    pub(super) fn answer_used_keys(&mut self, used: UsedKeys) {
        self.used_keys = used;
        self.used_keys_read = true;
    }

    /// How many of the events stored but not yet written are the person's, of this name,
    /// occurring at or after `since`.
    pub(super) fn pending_events_matching(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: &str,
        since: i64,
    ) -> u64 {
        self.pending_events
            .iter()
            .chain(&self.pending_transitions)
            .filter(|e| {
                // The most selective test first: a batch holds many people.
                e.contact_key == contact_key
                    && e.name == name
                    && e.occurred_at >= since
                    && e.tenant_id == *tenant
            })
            .count() as u64
    }

    /// Store a bucket transition's event, whose deterministic key another writer may have
    /// stored already: whether it is this transaction's to act on. Written at once (with
    /// `ON CONFLICT DO NOTHING`, waking the runs waiting for it) unless transitions are
    /// deferred; a deferred one counts as stored, and [`PgTx::write_events`] says if it was not.
    pub(super) async fn insert_transition_event(
        &mut self,
        event: PendingEvent,
    ) -> StoreResult<bool> {
        if self.defer_transitions {
            self.pending_transitions.push(event);
            return Ok(true);
        }
        let conn = self.writing();
        let inserted = insert_events(conn, std::slice::from_ref(&event), OnTakenKey::Skip).await?;
        if inserted > 0 {
            wake_waiting_runs(conn, &[awaited(&event)]).await?;
        }
        Ok(inserted > 0)
    }

    /// Write the kept runs (one taken by another writer is reported, see [`Written`]), contact
    /// updates and membership rows, insert the stored events (a conflict on one of their keys
    /// is a broken invariant and fails), then the deferred transitions (a taken key is
    /// reported), and wake the runs waiting for any of them: at most six statements, however
    /// many events.
    pub(super) async fn write_events(&mut self) -> StoreResult<Written> {
        let runs = std::mem::take(&mut self.pending_runs);
        if !insert_runs(self.conn, &runs).await? {
            return Ok(Written::Taken);
        }
        self.contacts.write(self.conn).await?;
        self.write_deferred_joins().await?;
        let events = std::mem::take(&mut self.pending_events);
        let transitions = std::mem::take(&mut self.pending_transitions);
        let conn = self.writing();
        insert_events(conn, &events, OnTakenKey::Fail).await?;
        let inserted = insert_events(conn, &transitions, OnTakenKey::Skip).await?;
        if inserted < transitions.len() as u64 {
            return Ok(Written::Taken);
        }
        let awaited: Vec<AwaitedEvent<'_>> =
            events.iter().chain(&transitions).map(awaited).collect();
        wake_waiting_runs(conn, &awaited).await?;
        Ok(Written::All)
    }

    /// Insert the runs kept in memory before a statement that reads or moves runs by person.
    /// One that another writer started meanwhile fails the batch, marked to run again without
    /// deferring ([`PgTx::deferred_write_lost`]).
    pub(super) async fn write_runs(&mut self) -> StoreResult<()> {
        let runs = std::mem::take(&mut self.pending_runs);
        if insert_runs(self.conn, &runs).await? {
            return Ok(());
        }
        self.deferred_write_lost = true;
        Err(StoreError::Invalid(
            "a run this batch started was started by another writer meanwhile; retry".into(),
        ))
    }

    /// Insert the membership rows kept in memory ([`DeferredJoins`]).
    pub(super) async fn write_deferred_joins(&mut self) -> StoreResult<()> {
        self.looked_up = None;
        self.deferred_joins.write(self.conn).await
    }

    /// The connection, for statements of the caller's own (which may write).
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        self.looked_up = None;
        self.conn
    }

    /// For a write: forget the looked-up answers, which it may change.
    pub(super) fn writing(&mut self) -> &mut PgConnection {
        self.looked_up = None;
        self.conn
    }
}

/// Events from arrays, one per column (`$1` ids … `$8` idempotency keys), in one statement.
macro_rules! insert_events_sql {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO events (id, tenant_id, contact_key, name, properties, occurred_at, \
             received_at, idempotency_key) \
             SELECT e.id, e.tenant_id, e.contact_key, e.name, e.properties::jsonb, \
             e.occurred_at, e.received_at, e.idempotency_key \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::int8[], $7::int8[], $8::text[]) \
             AS e(id, tenant_id, contact_key, name, properties, occurred_at, received_at, \
             idempotency_key)",
            $on_conflict
        )
    };
}
const INSERT_EVENTS: &str = insert_events_sql!("");
const INSERT_EVENTS_SKIPPING_TAKEN_KEYS: &str =
    insert_events_sql!(" ON CONFLICT (tenant_id, idempotency_key) DO NOTHING");

/// What inserting an event whose idempotency key is already stored does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnTakenKey {
    /// Fail the statement (and so the transaction).
    Fail,
    /// Skip the event.
    Skip,
}

/// Insert `events` in one statement: how many were inserted.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[PendingEvent],
    on_taken_key: OnTakenKey,
) -> StoreResult<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let sql = match on_taken_key {
        OnTakenKey::Fail => INSERT_EVENTS,
        OnTakenKey::Skip => INSERT_EVENTS_SKIPPING_TAKEN_KEYS,
    };
    let inserted = sqlx::query(sql)
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.tenant_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.contact_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.properties.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.idempotency_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(conn)
        .await?
        .rows_affected();
    Ok(inserted)
}

/// The run wake-up an inserted event is owed.
fn awaited(event: &PendingEvent) -> AwaitedEvent<'_> {
    AwaitedEvent {
        tenant_id: event.tenant_id.as_str(),
        contact_key: &event.contact_key,
        name: &event.name,
        received_at: Timestamp(event.received_at),
    }
}
