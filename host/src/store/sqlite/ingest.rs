//! Ingest: a batch of events in one write transaction. Per event: dedupe it, resolve its
//! contact (identity resolution with the property merge), store it under the contact's
//! resolved key, end the live runs its `exitOn` rules name, and start the runs the enrollment
//! guards admit. The guards' skips are added to the journeys' counters once per batch.
//!
//! Then the buckets: the event may move its person into or out of buckets
//! ([`membership::evaluate_event`]); each emitted transition is stored as an event of its own
//! and routed to journeys ([`store_event`], shared with the first event), in the same
//! transaction.
//!
//! The whole batch is one closure on the writer thread, so each statement is an in-process
//! call on a cached prepared statement rather than a round trip.

use super::SqliteStore;
use super::identity::{SqliteIdentityTx, run_sync};
use super::journeys::{count_skips, exit_runs};
use super::membership::SqliteMembershipTx;
use super::rows::to_json;
use super::{live_statuses, tenant_number};
use crate::buckets::membership::{self, Cause, Transition};
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId, TenantId};
use crate::journeys::{Enrollment, PriorRuns};
use crate::store::EventIngest;
use crate::store::codec::{SkipTally, StartedRuns, run_count, run_input, transition_events};
use crate::store::identity;
use crate::store::{
    BucketTransition, ContactRecord, IngestItem, IngestOutcome, IngestRouting, NewEvent,
    RunCandidate, SkippedRun, StartedRun, StoreError, StoreResult,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;

#[async_trait]
impl EventIngest for SqliteStore {
    async fn ingest(
        &self,
        batch: Arc<[IngestItem]>,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Vec<IngestOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write_with_contacts(move |tx, cache| {
            let mut identities = SqliteIdentityTx::new(tx, cache)?;
            let mut skips = SkipTally::default();
            let outcomes = batch
                .iter()
                .map(|item| {
                    let outcome = ingest_one(tx, &mut identities, routing.as_ref(), item)?;
                    skips.add_outcome(&item.event.tenant_id, &outcome);
                    Ok(outcome)
                })
                .collect::<StoreResult<Vec<_>>>()?;
            count_skips(tx, &skips)?;
            Ok(outcomes)
        })
        .await
    }
}

/// One item of a batch, inside the batch's transaction (so it sees the earlier items, their
/// idempotency keys included).
fn ingest_one(
    conn: &Connection,
    identities: &mut SqliteIdentityTx<'_>,
    routing: &dyn IngestRouting,
    item: &IngestItem,
) -> StoreResult<IngestOutcome> {
    let IngestItem { event, candidates } = item;

    // 1. Dedupe: a used idempotency key changes nothing at all.
    if let Some(key) = &event.idempotency_key
        && let Some(original) = key_used(conn, &event.tenant_id, key)?
    {
        return Ok(IngestOutcome::Duplicate { event_id: original });
    }

    // 2. Resolve the contact, merging the property patch.
    let resolution = run_sync(identity::resolve(
        identities,
        &event.tenant_id,
        &event.identity,
        &event.contact_properties,
        event.received_at,
    ))?;
    let (contact, changed_properties) = (resolution.contact, resolution.changed_properties);

    // 3. Store the event under the resolved key, end the runs it exits and start the runs its
    // journeys admit.
    let mut runs = store_event(conn, routing, &contact, event, candidates)?.ok_or_else(|| {
        StoreError::corrupt(
            "events",
            "an idempotency key found unused was taken within the same transaction",
        )
    })?;

    // 4. Move the person into or out of the buckets this event can change.
    let transitions = move_buckets(
        conn,
        identities,
        routing,
        &contact,
        Cause {
            event: Some((&event.name, &event.event_properties)),
            changed_properties: &changed_properties,
        },
        event.received_at,
        &mut runs,
    )?;

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
pub(super) fn move_buckets(
    conn: &Connection,
    identities: &mut SqliteIdentityTx<'_>,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    cause: Cause<'_>,
    now: Timestamp,
    runs: &mut StartedRuns,
) -> StoreResult<Vec<BucketTransition>> {
    let Some(buckets) = routing.buckets(&contact.tenant_id) else {
        return Ok(Vec::new());
    };
    let changes = run_sync(membership::evaluate_event(
        &mut SqliteMembershipTx::cached(conn, identities.memberships(), &contact.key),
        &buckets,
        &contact.tenant_id,
        &contact.key,
        &contact.properties,
        cause,
        now,
    ))?;
    changes
        .iter()
        .map(|change| ingest_transition(conn, routing, contact, change, now, runs))
        .collect()
}

/// Store `event` under the contact's key, end the person's live runs of the journeys whose
/// `exitOn` it matches (only runs that existed before it: a journey it both exits and
/// triggers starts afresh), and start the runs of `candidates` the enrollment guards admit.
/// `None`, with nothing written, when the event's idempotency key is already used.
fn store_event(
    conn: &Connection,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    event: &NewEvent,
    candidates: &[RunCandidate],
) -> StoreResult<Option<StartedRuns>> {
    let tenant = event.tenant_id.as_str();
    let inserted = conn
        .prepare_cached(concat!(
            "INSERT INTO events (id, tenant, contact_key, name, properties, occurred_at, \
             received_at, idempotency_key) VALUES (?1, ",
            tenant_number!("?2"),
            ", ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (tenant, idempotency_key) DO NOTHING"
        ))?
        .execute(params![
            event.id.as_str(),
            tenant,
            contact.key,
            event.name,
            to_json("event properties", &event.event_properties)?,
            event.occurred_at.0,
            event.received_at.0,
            event.idempotency_key,
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    wake_waiting_runs(conn, tenant, &contact.key, &event.name, event.received_at)?;

    let mut runs = StartedRuns::default();
    let exits = routing.exits(&event.tenant_id, &event.name, &event.event_properties);
    if !exits.is_empty() {
        runs.exited = exit_runs(conn, tenant, &contact.key, &exits, event.received_at)?;
    }
    if candidates.is_empty() {
        return Ok(Some(runs));
    }
    let input = to_json("run input", &run_input(contact, event))?;
    let unsubscribed = super::preferences::unsubscribed_in(
        conn,
        &event.tenant_id,
        &contact.key,
        contact.email.as_deref(),
    )?;
    for candidate in candidates {
        let mut guards = enrollment(conn, tenant, &contact.key, candidate)?;
        guards.unsubscribed = unsubscribed;
        if let Err(reason) = guards.admit(event.received_at) {
            runs.skipped.push(SkippedRun {
                journey_id: candidate.journey_id.clone(),
                reason,
            });
            continue;
        }
        let run_id = RunId::generate();
        conn.prepare_cached(
            "INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, \
             status, input, created_at, updated_at, activations) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?7, 0)",
        )?
        .execute(params![
            run_id.as_str(),
            tenant,
            candidate.journey_id,
            candidate.module_hash,
            contact.key,
            input,
            event.received_at.0,
        ])?;
        conn.prepare_cached("INSERT INTO timers (run_id, tenant_id, due_at) VALUES (?1, ?2, ?3)")?
            .execute(params![run_id.as_str(), tenant, event.received_at.0])?;
        runs.started.push(StartedRun {
            run_id,
            journey_id: candidate.journey_id.clone(),
        });
    }
    Ok(Some(runs))
}

/// Ingest a membership change's events ([`transition_events`]) unless another writer already
/// stored the same transition (its key is taken: the insert does nothing). The runs they start
/// join `runs`.
pub(super) fn ingest_transition(
    conn: &Connection,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    transition: &Transition,
    now: Timestamp,
    runs: &mut StartedRuns,
) -> StoreResult<BucketTransition> {
    for (event, candidates) in transition_events(transition, &contact.tenant_id, routing, now) {
        if let Some(started) = store_event(conn, routing, contact, &event, &candidates)? {
            runs.extend(started);
        }
    }
    Ok(BucketTransition::from(transition))
}

/// Make the timers of the person's runs waiting for an event named `name` due now: they wake,
/// and their activation decides whether this event is the one (see `runtime::events`).
///
/// Every event asks and almost none finds one, so the question is a join that reads two
/// indexes; the update runs only for what it finds. (An `UPDATE … WHERE run_id IN (SELECT …)`
/// built a temporary table per event: a tenth of the writer's time under sustained ingest.)
fn wake_waiting_runs(
    conn: &Connection,
    tenant: &str,
    contact_key: &str,
    name: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let waiting = conn
        .prepare_cached(concat!(
            "SELECT t.run_id FROM runs r JOIN timers t ON t.run_id = r.id \
             WHERE r.tenant_id = ?1 AND r.contact_key = ?2 AND r.status IN ",
            live_statuses!(),
            " AND t.wait_event = ?3 AND t.due_at > ?4"
        ))?
        .query_map(params![tenant, contact_key, name, now.0], |row| {
            row.get::<_, String>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for run_id in waiting {
        conn.prepare_cached("UPDATE timers SET due_at = ?2 WHERE run_id = ?1")?
            .execute(params![run_id, now.0])?;
    }
    Ok(())
}

/// The event that already used an idempotency key, if any.
fn key_used(conn: &Connection, tenant: &TenantId, key: &str) -> StoreResult<Option<EventId>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT id FROM events WHERE tenant = ",
            tenant_number!("?1"),
            " AND idempotency_key = ?2"
        ))?
        .query_row(params![tenant.as_str(), key], |row| row.get(0))
        .optional()?
        .map(EventId))
}

/// What the enrollment guards need for one candidate, read inside the ingest transaction (so
/// it sees the runs this batch already started and the admin switch as it is now). A journey
/// the module disables needs nothing read.
fn enrollment(
    conn: &Connection,
    tenant: &str,
    contact_key: &str,
    candidate: &RunCandidate,
) -> StoreResult<Enrollment> {
    let mut enrollment = Enrollment {
        declared_enabled: candidate.declared_enabled,
        trigger_matches: candidate.trigger_matches,
        entry_limit: candidate.entry_limit,
        disabled_by_admin: false,
        unsubscribed: false,
        prior: PriorRuns::default(),
    };
    if !candidate.declared_enabled {
        return Ok(enrollment);
    }
    let (total, latest, live, disabled): (i64, Option<i64>, i64, i64) = conn
        .prepare_cached(concat!(
            "SELECT COUNT(*), MAX(created_at), COALESCE(MAX(status IN ",
            live_statuses!(),
            "), 0), EXISTS (SELECT 1 FROM journey_configs WHERE tenant_id = ?1 \
             AND journey_id = ?3 AND enabled = 0) \
             FROM runs WHERE tenant_id = ?1 AND contact_key = ?2 AND journey_id = ?3"
        ))?
        .query_row(params![tenant, contact_key, candidate.journey_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    enrollment.disabled_by_admin = disabled != 0;
    enrollment.prior = PriorRuns {
        total: run_count(total)?,
        latest_started_at: latest.map(Timestamp),
        live: live != 0,
    };
    Ok(enrollment)
}
