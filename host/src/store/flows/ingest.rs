//! Ingest, once for both backends: what one event does inside the batch's transaction, and
//! what each bucket transition it causes does in turn.
//!
//! Per event: dedupe it on its idempotency key, resolve its contact (identity resolution with
//! the property merge), store it under the contact's resolved key, end the person's live runs
//! of the journeys whose `exitOn` it matches, start the runs the enrollment guards admit, then
//! re-evaluate the buckets the event can change and ingest each transition as an event of its
//! own (deduplicated on its deterministic key, routed to journeys, never re-evaluated). The
//! guards' skips and the events stored (the tenants' usage) are tallied for the batch; the
//! backend adds each to its counters once, the usage last.

use crate::buckets::membership::{self, Cause, MembershipTx, Transition};
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId, TenantId};
use crate::ingest::IngestItem;
use crate::journeys::router::RunCandidate;
use crate::journeys::{Enrollment, PriorRuns, RunInput, SkipReason};
use crate::store::codec::{SkipTally, StartedRuns, to_json};
use crate::store::identity::{self, IdentityTx};
use crate::store::{
    BucketTransition, ContactRecord, ExitedRun, IngestOutcome, IngestRouting, NewEvent, SkippedRun,
    StartedRun, StoreError, StoreResult,
};
use crate::usage::UsageTally;

/// What ingest asks of a backend inside its open write transaction, beyond identity
/// resolution ([`IdentityTx`]) and bucket membership ([`MembershipTx`]).
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait IngestTx: IdentityTx + MembershipTx {
    /// The event that already used the idempotency key `key` in the tenant, an event stored
    /// earlier in this transaction included.
    async fn key_used(&mut self, tenant: &TenantId, key: &str) -> StoreResult<Option<EventId>>;
    /// Store an ingested event under `contact_key` (its idempotency key is unused: the flow
    /// asked [`IngestTx::key_used`] in this transaction), waking the person's runs waiting
    /// for an event of its name.
    async fn store_event(&mut self, event: &NewEvent, contact_key: &str) -> StoreResult<()>;
    /// Store a bucket transition's event under `contact_key` unless another writer already
    /// stored its deterministic key: whether it is this transaction's to route.
    async fn store_transition_event(
        &mut self,
        event: &NewEvent,
        contact_key: &str,
    ) -> StoreResult<bool>;
    /// End the person's live runs of these journeys (status exited, timer removed).
    async fn exit_runs(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_ids: &[String],
        at: Timestamp,
    ) -> StoreResult<Vec<ExitedRun>>;
    /// Whether the person `contact_key`, or the address `email`, opted out of email.
    async fn unsubscribed(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool>;
    /// What the enrollment guards read for one journey: the person's runs of it so far (this
    /// transaction's included) and the admin switch as it is now.
    async fn enrollment_reads(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<EnrollmentReads>;
    /// Create an admitted run (active) with its first timer, due at once; the reason it was
    /// skipped instead when the backend's one-live-run guard refuses it.
    async fn start_run(&mut self, run: &NewRun<'_>) -> StoreResult<Result<RunId, SkipReason>>;
    /// Add the skips to the journeys' counters.
    async fn count_skips(&mut self, skips: &SkipTally) -> StoreResult<()>;
}

/// See [`IngestTx::enrollment_reads`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EnrollmentReads {
    pub prior: PriorRuns,
    pub disabled_by_admin: bool,
}

/// A run the enrollment guards admitted (see [`IngestTx::start_run`]).
pub struct NewRun<'a> {
    pub tenant: &'a TenantId,
    pub candidate: &'a RunCandidate,
    pub contact_key: &'a str,
    /// The run's input, as JSON text ([`RunInput::started_by`]).
    pub input: &'a str,
    pub at: Timestamp,
}

/// Ingest `batch` in order inside `tx`: the outcomes in input order, the skips for the caller
/// to count ([`IngestTx::count_skips`]) when its backend wants them counted, and the events
/// stored, for the tenants' usage (a duplicate is none), which the caller adds last.
pub async fn ingest_batch(
    tx: &mut impl IngestTx,
    batch: &[IngestItem],
    routing: &dyn IngestRouting,
) -> StoreResult<(Vec<IngestOutcome>, SkipTally, UsageTally)> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut skips = SkipTally::default();
    let mut usage = UsageTally::default();
    for item in batch {
        let outcome = ingest_one(tx, routing, item).await?;
        let event = &item.event;
        skips.add_outcome(&event.tenant_id, &outcome);
        if matches!(outcome, IngestOutcome::Stored { .. }) {
            usage.event(&event.tenant_id, event.received_at);
        }
        outcomes.push(outcome);
    }
    Ok((outcomes, skips, usage))
}

/// One item of a batch, inside the batch's transaction (so it sees the earlier items, their
/// idempotency keys included).
async fn ingest_one(
    tx: &mut impl IngestTx,
    routing: &dyn IngestRouting,
    item: &IngestItem,
) -> StoreResult<IngestOutcome> {
    let IngestItem {
        event,
        candidates,
        routing: snapshot,
    } = item;
    let routing = snapshot.as_deref().unwrap_or(routing);

    // 1. Dedupe: a used idempotency key changes nothing at all.
    if let Some(key) = &event.idempotency_key
        && let Some(original) = tx.key_used(&event.tenant_id, key).await?
    {
        return Ok(IngestOutcome::Duplicate { event_id: original });
    }

    // 2. Resolve the contact, merging the property patch.
    let resolution = identity::resolve(
        tx,
        &event.tenant_id,
        &event.identity,
        &event.contact_properties,
        event.received_at,
    )
    .await?;
    let (contact, changed_properties) = (resolution.contact, resolution.changed_properties);

    // 3. Store the event under the resolved key, end the runs it exits and start the runs its
    // journeys admit.
    tx.store_event(event, &contact.key).await?;
    let mut runs = route_event(tx, routing, &contact, event, candidates).await?;

    // 4. Move the person into or out of the buckets this event can change; each emitted
    // transition is an event of its own, routed to journeys.
    let transitions = move_buckets(
        tx,
        routing,
        &contact,
        Cause {
            event: Some((&event.name, &event.event_properties)),
            changed_properties: &changed_properties,
        },
        event.received_at,
        &mut runs,
    )
    .await?;

    Ok(IngestOutcome::Stored {
        event_id: event.id.clone(),
        contact_key: contact.key,
        started: runs.started,
        skipped: runs.skipped,
        exited: runs.exited,
        transitions,
    })
}

/// Re-evaluate the buckets `cause` can change for the (live) `contact` and ingest each emitted
/// transition; the runs they start join `runs`. Shared by ingest and the contact upsert.
pub async fn move_buckets(
    tx: &mut impl IngestTx,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    cause: Cause<'_>,
    now: Timestamp,
    runs: &mut StartedRuns,
) -> StoreResult<Vec<BucketTransition>> {
    let Some(buckets) = routing.buckets(&contact.tenant_id) else {
        return Ok(Vec::new());
    };
    let changes = membership::evaluate_event(
        tx,
        &buckets,
        &contact.tenant_id,
        &contact.key,
        &contact.properties,
        cause,
        now,
    )
    .await?;
    let mut transitions = Vec::with_capacity(changes.len());
    for change in &changes {
        transitions.push(ingest_transition(tx, routing, contact, change, now, runs).await?);
    }
    Ok(transitions)
}

/// Ingest a membership change's events ([`transition_events`]) unless another writer already
/// stored the same transition (see [`IngestTx::store_transition_event`]). The runs they start
/// join `runs`.
pub async fn ingest_transition(
    tx: &mut impl IngestTx,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    transition: &Transition,
    now: Timestamp,
    runs: &mut StartedRuns,
) -> StoreResult<BucketTransition> {
    for (event, candidates) in transition_events(transition, &contact.tenant_id, routing, now) {
        if tx.store_transition_event(&event, &contact.key).await? {
            runs.extend(route_event(tx, routing, contact, &event, &candidates).await?);
        }
    }
    Ok(BucketTransition::from(transition))
}

/// For a stored `event`: end the person's live runs of the journeys whose `exitOn` it matches
/// (only runs that existed before it: a journey it both exits and triggers starts afresh),
/// then start the runs of `candidates` the enrollment guards admit.
async fn route_event(
    tx: &mut impl IngestTx,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    event: &NewEvent,
    candidates: &[RunCandidate],
) -> StoreResult<StartedRuns> {
    let mut runs = StartedRuns::default();
    let tenant = &event.tenant_id;
    let exits = routing.exits(tenant, &event.name, &event.event_properties);
    if !exits.is_empty() {
        runs.exited = tx
            .exit_runs(tenant, &contact.key, &exits, event.received_at)
            .await?;
    }
    if candidates.is_empty() {
        return Ok(runs);
    }
    let input = to_json("run input", &RunInput::started_by(contact, event))?;
    let unsubscribed = tx
        .unsubscribed(tenant, &contact.key, contact.email.as_deref())
        .await?;
    for candidate in candidates {
        let mut guards = enrollment(tx, tenant, &contact.key, candidate).await?;
        guards.unsubscribed = unsubscribed;
        let outcome = match guards.admit(event.received_at) {
            Err(reason) => Err(reason),
            Ok(()) => {
                let run = NewRun {
                    tenant,
                    candidate,
                    contact_key: &contact.key,
                    input: &input,
                    at: event.received_at,
                };
                tx.start_run(&run).await?
            }
        };
        match outcome {
            Ok(run_id) => runs.started.push(StartedRun {
                run_id,
                journey_id: candidate.journey_id.clone(),
            }),
            Err(reason) => runs.skipped.push(SkippedRun {
                journey_id: candidate.journey_id.clone(),
                reason,
            }),
        }
    }
    Ok(runs)
}

/// What the enrollment guards need for one candidate, read inside the ingest transaction (so
/// it sees the runs this batch already started and the admin switch as it is now). A journey
/// the module disables needs nothing read.
async fn enrollment(
    tx: &mut impl IngestTx,
    tenant: &TenantId,
    contact_key: &str,
    candidate: &RunCandidate,
) -> StoreResult<Enrollment> {
    let reads = if candidate.declared_enabled {
        tx.enrollment_reads(tenant, contact_key, &candidate.journey_id)
            .await?
    } else {
        EnrollmentReads::default()
    };
    Ok(Enrollment {
        declared_enabled: candidate.declared_enabled,
        trigger_matches: candidate.trigger_matches,
        entry_limit: candidate.entry_limit,
        disabled_by_admin: reads.disabled_by_admin,
        unsubscribed: false,
        prior: reads.prior,
    })
}

/// An ingested event's insert found its idempotency key taken, which the flow checked was
/// free in the same transaction: a broken invariant, reported rather than ignored.
pub fn key_taken_meanwhile() -> StoreError {
    StoreError::corrupt(
        "events",
        "an idempotency key found unused was taken within the same transaction",
    )
}

/// The events a membership change is ingested as, each with the journeys it starts: the
/// per-bucket event, and the generic one only when some journey is bound to it; none for a
/// change the bucket's entry limit keeps quiet. Each carries its deterministic key, so a
/// backend stores it only if that key is unused.
fn transition_events(
    transition: &Transition,
    tenant: &TenantId,
    routing: &dyn IngestRouting,
    now: Timestamp,
) -> Vec<(NewEvent, Vec<RunCandidate>)> {
    if !transition.emit {
        return Vec::new();
    }
    let specific = transition.event();
    // The generic form carries the same properties under another name: ask whether any
    // journey wants it before building it (almost always none does).
    let generic = transition
        .generic_name()
        .map(|name| routing.journeys(tenant, name, &specific.properties))
        .filter(|candidates| !candidates.is_empty())
        .and_then(|candidates| Some((transition.generic_event()?, candidates)));
    let specific_candidates = routing.journeys(tenant, &specific.name, &specific.properties);
    std::iter::once((specific, specific_candidates))
        .chain(generic)
        .map(|(event, candidates)| {
            let event = NewEvent {
                id: EventId::generate(),
                tenant_id: tenant.clone(),
                name: event.name,
                identity: Default::default(),
                event_properties: event.properties,
                contact_properties: Default::default(),
                idempotency_key: Some(event.idempotency_key),
                occurred_at: now,
                received_at: now,
            };
            (event, candidates)
        })
        .collect()
}
