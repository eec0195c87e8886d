//! Implements [`crate::store::EventIngest`] and the ingest primitives
//! ([`crate::store::flows::IngestTx`]).
//!
//! Ingest on PostgreSQL: the batch's transaction, around the shared flow
//! ([`flows::ingest`]), and [`PgTx`]'s ingest primitives. The guards' skips are added to the
//! journeys' counters once per batch, just before the commit and in key order, so concurrent
//! batches hold a counter row only briefly and lock counter rows in the same order; the events
//! stored are added to the tenants' usage after them, as the batch's last statement (see
//! `usage`), so a batch rolled back and run again counts its events once.
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

use super::batch_contacts::Designated;
use super::batch_counts::{WantedCount, merge_wanted};
use super::batch_enrollment::{Person, WantedEnrollment};
use super::deferred_runs::PendingRun;
use super::identity::{LockName, LockTarget};

use super::journeys::{count_skips, exit_runs};
use super::live_statuses;
use super::tx::{PendingEvent, PgTx, UsedKeys, Written};
use super::usage::add_usage;
use super::{MAX_ATTEMPTS, PgStore, is_transient};
use crate::buckets::EventQuery;
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId, TenantId};
use crate::ingest::IngestItem;
use crate::journeys::{PriorRuns, SkipReason};
use crate::store::EventIngest;
use crate::store::codec::{SkipTally, run_count};
use crate::store::flows::{self, EnrollmentReads, IngestTx, NewRun};
use crate::store::identity;
use crate::store::{ExitedRun, IngestOutcome, IngestRouting, NewEvent, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use std::sync::Arc;

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
        // again (the locking order makes that rare; see `identity`), and so is one whose
        // deferred transition turned out to be another writer's, this time writing each
        // transition as it happens.
        let mut attempt = 1;
        let mut defer_transitions = true;
        loop {
            match ingest_batch(self, &batch, routing.as_ref(), defer_transitions).await {
                Ok(Some(outcomes)) => return Ok(outcomes),
                Ok(None) => {
                    tracing::info!(
                        events = batch.len(),
                        "a bucket transition's key was already stored, or a run start was \
                         another writer's; running the batch again, writing as it goes"
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
    let locks = batch_locks(batch);
    let locked = pg.lock(&locks).await?;
    // One person's read is one statement either way.
    if locked.len() > 1 && evaluates_buckets(batch, routing) {
        pg.remember_memberships(&locked).await?;
        // Counts read up front leave out transitions written as they happen.
        if defer_transitions {
            let wanted = wanted_counts(&pg, batch, routing);
            pg.counts.read(&mut *pg.conn, wanted).await?;
        }
    }
    let wanted = wanted_enrollment(&pg, batch);
    pg.enrollment.read(&mut *pg.conn, wanted).await?;
    let used = used_keys(pg.conn(), batch).await?;
    pg.answer_used_keys(used);
    let flowed = flows::ingest::ingest_batch(&mut pg, batch, routing).await;
    if pg.deferred_write_lost {
        return Ok(None); // dropping `tx` rolls it back
    }
    let (outcomes, skips, usage) = flowed?;
    if pg.write_events().await? == Written::Taken {
        return Ok(None);
    }
    pg.count_skips(&skips).await?;
    // Last: a batch rolled back to run again (above) or by an error counted nothing.
    add_usage(pg.conn(), &usage).await?;
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// Whether some item's tenant has buckets, which ingest evaluates: then the memberships of
/// everyone the batch locked are read up front, in one statement, rather than person by
/// person as events reach them.
fn evaluates_buckets(batch: &[IngestItem], routing: &dyn IngestRouting) -> bool {
    batch.iter().any(|item| {
        item.routing
            .as_deref()
            .unwrap_or(routing)
            .buckets(&item.event.tenant_id)
            .is_some_and(|registry| registry.evaluated().next().is_some())
    })
}

/// The counts the batch's bucket evaluations will ask for (see `batch_counts`): for each item
/// whose identity values lead to one known person, the queries of every bucket its event (or
/// its property patch) could change.
fn wanted_counts(
    pg: &PgTx<'_>,
    batch: &[IngestItem],
    routing: &dyn IngestRouting,
) -> Vec<WantedCount> {
    let wanted = batch.iter().flat_map(|item| {
        let event = &item.event;
        let tenant = &event.tenant_id;
        let registry = item.routing.as_deref().unwrap_or(routing).buckets(tenant);
        let person = match pg
            .contacts
            .designated(tenant, &identity::lookup_keys(&event.identity))
        {
            Designated::One(contact) => Some(contact.key.as_str()),
            _ => None,
        };
        let queries: Vec<EventQuery> = match (&registry, person) {
            (Some(registry), Some(_)) => registry
                .candidates(
                    Some(&event.name),
                    event.event_properties.keys().map(String::as_str),
                    event.contact_properties.keys().map(String::as_str),
                )
                .filter_map(|bucket| bucket.criteria.as_ref())
                .flat_map(|criteria| criteria.event_queries())
                .collect(),
            _ => Vec::new(),
        };
        let person = person.map(str::to_owned);
        queries.into_iter().map(move |query| {
            let since = query.window_start(event.received_at.0).unwrap_or(i64::MIN);
            WantedCount {
                tenant: tenant.clone(),
                contact_key: person.clone().unwrap_or_default(),
                query,
                earliest: since,
                latest: since,
            }
        })
    });
    merge_wanted(wanted)
}

/// What the batch's enrollment guards will ask (see `batch_enrollment`): for each item with
/// journeys to start whose values lead to one known person, or to nobody (the person it
/// creates is keyed by its user id or anonymous id), their runs of those journeys and their
/// opt-out.
fn wanted_enrollment(pg: &PgTx<'_>, batch: &[IngestItem]) -> WantedEnrollment {
    let mut wanted = WantedEnrollment::default();
    for item in batch.iter().filter(|item| !item.candidates.is_empty()) {
        let event = &item.event;
        let identity = &event.identity;
        let (contact_key, email) = match pg
            .contacts
            .designated(&event.tenant_id, &identity::lookup_keys(identity))
        {
            Designated::One(contact) => (
                contact.key.clone(),
                contact.email.clone().or_else(|| identity.email.clone()),
            ),
            Designated::Nobody => {
                match identity.user_id.as_ref().or(identity.anonymous_id.as_ref()) {
                    Some(key) => (key.clone(), identity.email.clone()),
                    None => continue,
                }
            }
            Designated::Unknown | Designated::Several => continue,
        };
        let person = Person {
            tenant: event.tenant_id.clone(),
            contact_key,
        };
        for candidate in item.candidates.iter().filter(|c| c.declared_enabled) {
            wanted
                .runs
                .push((person.clone(), candidate.journey_id.clone()));
        }
        wanted.opt_outs.push((person, email));
    }
    wanted
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
    let mut used = UsedKeys::new();
    for row in &rows {
        used.entry(TenantId(row.try_get("tenant_id")?))
            .or_default()
            .insert(row.try_get("idempotency_key")?, EventId(row.try_get("id")?));
    }
    Ok(used)
}

/// Ingest's primitives. The batch's events wait for [`PgTx::write_events`] (one statement at
/// its end), so their idempotency keys are answered from the keys read up front
/// ([`PgTx::answer_used_keys`]) and the batch's own.
impl IngestTx for PgTx<'_> {
    async fn key_used(&mut self, tenant: &TenantId, key: &str) -> StoreResult<Option<EventId>> {
        if let Some(original) = self.used_keys.get(tenant).and_then(|keys| keys.get(key)) {
            return Ok(Some(original.clone()));
        }
        if self.used_keys_read {
            return Ok(None);
        }
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM events WHERE tenant_id = $1 AND idempotency_key = $2",
        )
        .bind(tenant.as_str())
        .bind(key)
        .fetch_optional(self.conn())
        .await?
        .map(EventId))
    }

    /// Deferred to [`PgTx::write_events`]. Its idempotency key cannot be taken meanwhile (its
    /// advisory lock is held), so a conflict there is a broken invariant and fails the batch.
    async fn store_event(&mut self, event: &NewEvent, contact_key: &str) -> StoreResult<()> {
        self.defer_event(PendingEvent::of(event, contact_key)?);
        if let Some(key) = &event.idempotency_key {
            self.used_keys
                .entry(event.tenant_id.clone())
                .or_default()
                .insert(key.clone(), event.id.clone());
        }
        Ok(())
    }

    async fn store_transition_event(
        &mut self,
        event: &NewEvent,
        contact_key: &str,
    ) -> StoreResult<bool> {
        self.insert_transition_event(PendingEvent::of(event, contact_key)?)
            .await
    }

    async fn exit_runs(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_ids: &[String],
        at: Timestamp,
    ) -> StoreResult<Vec<ExitedRun>> {
        self.write_runs().await?;
        let exited = exit_runs(self.conn(), tenant, contact_key, journey_ids, at).await?;
        self.enrollment.exited(tenant, contact_key, &exited);
        Ok(exited)
    }

    async fn unsubscribed(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        if let Some(unsubscribed) = self.enrollment.unsubscribed(tenant, contact_key, email) {
            return Ok(unsubscribed);
        }
        super::preferences::unsubscribed_in(self.conn(), tenant, contact_key, email).await
    }

    /// One statement.
    async fn enrollment_reads(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<EnrollmentReads> {
        if let Some(reads) = self.enrollment.reads(tenant, contact_key, journey_id) {
            return Ok(reads);
        }
        self.write_runs().await?;
        let conn = self.conn();
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
        .bind(journey_id)
        .fetch_one(conn)
        .await?;
        let total: i64 = row.try_get("total")?;
        Ok(EnrollmentReads {
            prior: PriorRuns {
                total: run_count(total)?,
                latest_started_at: row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
                live: row.try_get("live")?,
            },
            disabled_by_admin: row.try_get("disabled_by_admin")?,
        })
    }

    /// The run and its first timer in one statement; if the one-live-run index already holds
    /// a live run of this journey for this person, nothing is created and the run is skipped
    /// as already active.
    async fn start_run(&mut self, run: &NewRun<'_>) -> StoreResult<Result<RunId, SkipReason>> {
        let run_id = RunId::generate();
        if self.defer_transitions {
            // Kept for the batch's end; the guards it just passed counted every run of this
            // person and journey, the batch's own included (see `deferred_runs`).
            self.pending_runs.push(PendingRun::of(run, run_id.clone()));
            self.enrollment.started(
                run.tenant,
                run.contact_key,
                &run.candidate.journey_id,
                run.at,
            );
            return Ok(Ok(run_id));
        }
        let conn = self.conn();
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
            self.enrollment.started(
                run.tenant,
                run.contact_key,
                &run.candidate.journey_id,
                run.at,
            );
            Ok(run_id)
        } else {
            Err(SkipReason::AlreadyActive)
        })
    }

    async fn count_skips(&mut self, skips: &SkipTally) -> StoreResult<()> {
        count_skips(self.conn(), skips).await
    }
}
