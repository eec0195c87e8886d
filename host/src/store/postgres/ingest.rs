//! Ingest: a batch of events in one transaction. Per event: dedupe it, resolve its contact
//! (identity resolution with the property merge), store it under the contact's resolved key,
//! end the live runs its `exitOn` rules name and start the runs the enrollment guards admit.
//! The guards' skips are added to the journeys' counters once per batch, just before the
//! commit and in key order, so concurrent batches hold a counter row only briefly and lock
//! counter rows in the same order.
//!
//! Concurrency. The batch first takes, in the global lock order (see `identity`), the advisory
//! locks of every value its items will look up and of every idempotency key, then locks the
//! contacts those values designate, in id order. Holding them, it reads which of its
//! idempotency keys are already used (one statement): no other transaction can be inserting
//! one of them until this one ends, so that answer stays true, and an earlier item of the
//! batch counts as a use too. Each item then resolves its contact under those locks (two
//! batches touching one person run one after the other), so entry-limit checks see every run
//! already started for that person. The one-live-run partial unique index is the final guard:
//! a run it refuses is skipped as already active. The events are inserted together at the end
//! (one statement); a deadlock PostgreSQL breaks anyway is retried whole.
//!
//! Bucket transitions' events are inserted at the end too, in a second statement that skips a
//! key already stored. Their keys are not locked up front (they are only known once a person
//! moves), and another writer can hold one in the rare case a key comes back (a deleted
//! contact's key taken by a new person): the batch then rolls back and runs again, writing
//! each transition as it happens and acting only on the ones it stored.
//!
//! Buckets. When some tenant of the batch has buckets, the active memberships of every
//! person the batch locked are read right after the locks, in one statement
//! (`PgTx::remember_memberships`): the locks keep them true until the commit, so an event's
//! evaluation reads only its counts. The membership rows of the people the batch created are
//! inserted at the end too (a new user's sign-up joins their property buckets): they cannot
//! have rows in the table yet, so the batch keeps them in memory, numbers their epochs there,
//! and inserts them in one statement before its events (`deferred_joins`).

use super::identity::{LockName, LockTarget, PendingEvent, PgTx, Written};
use super::journeys::{count_skips, exit_runs};
use super::live_statuses;
use super::{MAX_ATTEMPTS, PgStore, is_transient};
use crate::buckets::membership::{self, Cause, Transition};
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId, TenantId};
use crate::journeys::{Enrollment, PriorRuns, SkipReason};
use crate::store::EventIngest;
use crate::store::codec::{
    SkipTally, StartedRuns, run_count, run_input, to_json, transition_events,
};
use crate::store::identity;
use crate::store::{
    BucketTransition, ContactRecord, IngestItem, IngestOutcome, IngestRouting, NewEvent,
    RunCandidate, SkippedRun, StartedRun, StoreResult,
};
use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use std::sync::Arc;

/// Idempotency keys already used, by (tenant, key): the event that used each.
type UsedKeys = HashMap<(TenantId, String), EventId>;

#[async_trait]
impl EventIngest for PgStore {
    async fn ingest(
        &self,
        batch: Arc<[IngestItem]>,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<Vec<IngestOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // All or nothing, so a transaction PostgreSQL aborted to break a deadlock is simply run
        // again (the locking order makes that rare; see `identity`), and so is one whose deferred
        // transition turned out to be another writer's, this time writing each transition as it
        // happens.
        let mut attempt = 1;
        let mut defer_transitions = true;
        loop {
            match ingest_batch(self, &batch, routing.as_ref(), defer_transitions).await {
                Ok(Some(outcomes)) => return Ok(outcomes),
                Ok(None) => {
                    tracing::info!(
                        events = batch.len(),
                        "a bucket transition's key was already stored; running the batch again, \
                         writing transitions one by one"
                    );
                    defer_transitions = false;
                }
                Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The batch in one transaction; `None` (rolled back) when a deferred transition's key was
/// already taken.
async fn ingest_batch(
    store: &PgStore,
    batch: &[IngestItem],
    routing: &dyn IngestRouting,
    defer_transitions: bool,
) -> StoreResult<Option<Vec<IngestOutcome>>> {
    let mut tx = store.pool.begin().await?;
    let mut pg = PgTx::for_ingest(&mut tx, defer_transitions);
    let locked = pg.lock(&batch_locks(batch)).await?;
    // One person's read is one statement either way.
    if locked.len() > 1 && evaluates_buckets(batch, routing) {
        pg.remember_memberships(&locked).await?;
    }
    let mut used = used_keys(pg.conn(), batch).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut skips = SkipTally::default();
    for item in batch {
        let outcome = ingest_one(&mut pg, &mut used, routing, item).await?;
        skips.add_outcome(&item.event.tenant_id, &outcome);
        outcomes.push(outcome);
    }
    if pg.write_events().await? == Written::TransitionTaken {
        return Ok(None); // dropping `tx` rolls it back
    }
    count_skips(pg.conn(), &skips).await?;
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// Whether some item's tenant has buckets, which ingest evaluates: then the memberships of
/// everyone the batch locked are read up front, in one statement, rather than person by
/// person as events reach them.
fn evaluates_buckets(batch: &[IngestItem], routing: &dyn IngestRouting) -> bool {
    let mut tenants: Vec<&TenantId> = batch.iter().map(|item| &item.event.tenant_id).collect();
    tenants.sort();
    tenants.dedup();
    tenants.into_iter().any(|tenant| {
        routing
            .buckets(tenant)
            .is_some_and(|registry| registry.evaluated().next().is_some())
    })
}

/// Every advisory lock the batch needs, sorted into the global order, without repeats.
fn batch_locks(batch: &[IngestItem]) -> Vec<LockTarget> {
    let mut targets: Vec<LockTarget> = batch
        .iter()
        .flat_map(|item| {
            let tenant = &item.event.tenant_id;
            let identity = identity::lookup_keys(&item.event.identity)
                .into_iter()
                .map(LockName::Identity);
            let idempotency = item
                .event
                .idempotency_key
                .clone()
                .map(LockName::Idempotency);
            identity.chain(idempotency).map(|name| LockTarget {
                tenant: tenant.clone(),
                name,
            })
        })
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// Which of the batch's idempotency keys stored events already carry: one lookup on the
/// unique (tenant, key) index per key, driven by the keys (see `identity::LOCK_DESIGNATED` for
/// why the `LATERAL … OFFSET 0` shape).
async fn used_keys(conn: &mut PgConnection, batch: &[IngestItem]) -> StoreResult<UsedKeys> {
    let (tenants, keys): (Vec<&str>, Vec<&str>) = batch
        .iter()
        .filter_map(|item| {
            let key = item.event.idempotency_key.as_deref()?;
            Some((item.event.tenant_id.as_str(), key))
        })
        .unzip();
    if keys.is_empty() {
        return Ok(UsedKeys::new());
    }
    let rows = sqlx::query(
        "SELECT k.tenant_id, k.idempotency_key, e.id \
         FROM unnest($1::text[], $2::text[]) AS k(tenant_id, idempotency_key) \
         CROSS JOIN LATERAL (SELECT id FROM events WHERE tenant_id = k.tenant_id \
             AND idempotency_key = k.idempotency_key OFFSET 0) e",
    )
    .bind(&tenants)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                (
                    TenantId(row.try_get("tenant_id")?),
                    row.try_get("idempotency_key")?,
                ),
                EventId(row.try_get("id")?),
            ))
        })
        .collect()
}

/// One item of a batch, inside the batch's transaction (so it sees the earlier items).
async fn ingest_one(
    pg: &mut PgTx<'_>,
    used: &mut UsedKeys,
    routing: &dyn IngestRouting,
    item: &IngestItem,
) -> StoreResult<IngestOutcome> {
    let IngestItem { event, candidates } = item;
    let tenant = &event.tenant_id;

    // 1. Dedupe: a used idempotency key changes nothing at all.
    let used_key = event
        .idempotency_key
        .as_ref()
        .map(|key| (tenant.clone(), key.clone()));
    if let Some(original) = used_key.as_ref().and_then(|k| used.get(k)) {
        return Ok(IngestOutcome::Duplicate {
            event_id: original.clone(),
        });
    }

    // 2. Resolve the contact, merging the property patch.
    let resolution = identity::resolve(
        pg,
        tenant,
        &event.identity,
        &event.contact_properties,
        event.received_at,
    )
    .await?;
    let (contact, changed_properties) = (resolution.contact, resolution.changed_properties);

    // 3. Store the event under the resolved key (written with the batch's other events, in
    // one statement at its end). Its idempotency key cannot be taken meanwhile (its advisory
    // lock is held), so a conflict there is a broken invariant and fails the batch.
    pg.store_event(PendingEvent::of(event, &contact.key)?);
    if let Some(key) = used_key {
        used.insert(key, event.id.clone());
    }

    // 4. End the runs the event exits and start the runs the enrollment guards admit.
    let mut runs = route_event(pg, routing, &contact, event, candidates).await?;

    // 5. Move the person into or out of the buckets this event can change; each emitted
    // transition is an event of its own, routed to journeys.
    let transitions = move_buckets(
        pg,
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
pub(super) async fn move_buckets(
    pg: &mut PgTx<'_>,
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
        pg,
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
        transitions.push(ingest_transition(pg, routing, contact, change, now, runs).await?);
    }
    Ok(transitions)
}

/// For a stored `event`: end the person's live runs of the journeys whose `exitOn` it matches
/// (only runs that existed before it: a journey it both exits and triggers starts afresh),
/// then start the runs of `candidates` the enrollment guards admit.
async fn route_event(
    pg: &mut PgTx<'_>,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    event: &NewEvent,
    candidates: &[RunCandidate],
) -> StoreResult<StartedRuns> {
    let mut runs = StartedRuns::default();
    let tenant = &event.tenant_id;
    let exits = routing.exits(tenant, &event.name, &event.event_properties);
    if !exits.is_empty() {
        runs.exited = exit_runs(pg.conn(), tenant, &contact.key, &exits, event.received_at).await?;
    }
    if candidates.is_empty() {
        return Ok(runs);
    }
    let input = to_json("run input", &run_input(contact, event))?;
    let unsubscribed = super::preferences::unsubscribed_in(
        pg.conn(),
        tenant,
        &contact.key,
        contact.email.as_deref(),
    )
    .await?;
    for candidate in candidates {
        let mut guards = enrollment(pg.conn(), tenant, &contact.key, candidate).await?;
        guards.unsubscribed = unsubscribed;
        let outcome = match guards.admit(event.received_at) {
            Err(reason) => Err(reason),
            Ok(()) => {
                let start = NewRun {
                    tenant,
                    candidate,
                    contact_key: &contact.key,
                    input: &input,
                    at: event.received_at,
                };
                start_run(pg.conn(), &start).await?
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

/// Ingest a membership change's events ([`transition_events`]) unless another writer already
/// stored the same transition (its key is taken: see [`PgTx::store_transition_event`]). The
/// runs they start join `runs`.
pub(super) async fn ingest_transition(
    pg: &mut PgTx<'_>,
    routing: &dyn IngestRouting,
    contact: &ContactRecord,
    transition: &Transition,
    now: Timestamp,
    runs: &mut StartedRuns,
) -> StoreResult<BucketTransition> {
    for (event, candidates) in transition_events(transition, &contact.tenant_id, routing, now) {
        let stored = pg
            .store_transition_event(PendingEvent::of(&event, &contact.key)?)
            .await?;
        if stored {
            runs.extend(route_event(pg, routing, contact, &event, &candidates).await?);
        }
    }
    Ok(BucketTransition::from(transition))
}

/// What the enrollment guards need for one candidate, read inside the ingest transaction in
/// one statement (so it sees the runs this batch already started and the admin switch as it is
/// now). A journey the module disables needs nothing read.
async fn enrollment(
    conn: &mut PgConnection,
    tenant: &TenantId,
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
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS total, MAX(created_at) AS latest, \
         COALESCE(BOOL_OR(status IN ",
        live_statuses!(),
        "), FALSE) AS live, \
         EXISTS (SELECT 1 FROM journey_configs WHERE tenant_id = $1 AND journey_id = $3 \
             AND NOT enabled) AS disabled_by_admin \
         FROM runs WHERE tenant_id = $1 AND contact_key = $2 AND journey_id = $3"
    ))
    .bind(tenant.as_str())
    .bind(contact_key)
    .bind(&candidate.journey_id)
    .fetch_one(conn)
    .await?;
    let total: i64 = row.try_get("total")?;
    enrollment.disabled_by_admin = row.try_get("disabled_by_admin")?;
    enrollment.prior = PriorRuns {
        total: run_count(total)?,
        latest_started_at: row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
        live: row.try_get("live")?,
    };
    Ok(enrollment)
}

/// A run an entry limit admitted.
struct NewRun<'a> {
    tenant: &'a TenantId,
    candidate: &'a RunCandidate,
    contact_key: &'a str,
    input: &'a str,
    at: Timestamp,
}

/// Create the run (active) and its first timer (due at once) in one statement; if the
/// one-live-run index already holds a live run of this journey for this person, nothing is
/// created and the run is skipped as already active.
async fn start_run(
    conn: &mut PgConnection,
    run: &NewRun<'_>,
) -> StoreResult<Result<RunId, SkipReason>> {
    let run_id = RunId::generate();
    let created = sqlx::query(concat!(
        "WITH run AS (\
             INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, status, \
             input, created_at, updated_at, activations) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6::jsonb, $7, $7, 0) \
             ON CONFLICT (tenant_id, journey_id, contact_key) WHERE status IN ",
        live_statuses!(),
        " DO NOTHING RETURNING id, tenant_id) \
         INSERT INTO timers (run_id, tenant_id, due_at) SELECT id, tenant_id, $7 FROM run"
    ))
    .bind(run_id.as_str())
    .bind(run.tenant.as_str())
    .bind(&run.candidate.journey_id)
    .bind(&run.candidate.module_hash)
    .bind(run.contact_key)
    .bind(run.input)
    .bind(run.at.0)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(if created > 0 {
        Ok(run_id)
    } else {
        Err(SkipReason::AlreadyActive)
    })
}
