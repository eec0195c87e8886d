//! Ingest: a batch of events in one write transaction. Per event: dedupe it, resolve its
//! contact (identity resolution with the property merge), store it under the contact's
//! resolved key and start the runs the entry limits admit.
//!
//! The whole batch is one closure on the writer thread, so each statement is an in-process
//! call on a cached prepared statement rather than a round trip.

use super::SqliteStore;
use super::identity::{SqliteIdentityTx, run_sync};
use super::live_statuses;
use super::rows::to_json;
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId};
use crate::journeys::PriorRuns;
use crate::store::codec::{run_count, run_input};
use crate::store::identity;
use crate::store::{IngestItem, IngestOutcome, SkippedRun, StartedRun, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) async fn ingest(
    store: &SqliteStore,
    batch: Vec<IngestItem>,
) -> StoreResult<Vec<IngestOutcome>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    store
        .write(move |tx| {
            let mut identities = SqliteIdentityTx::new(tx);
            batch
                .into_iter()
                .map(|item| ingest_one(tx, &mut identities, item))
                .collect()
        })
        .await
}

/// One item of a batch, inside the batch's transaction (so it sees the earlier items, their
/// idempotency keys included).
fn ingest_one(
    conn: &Connection,
    identities: &mut SqliteIdentityTx<'_>,
    item: IngestItem,
) -> StoreResult<IngestOutcome> {
    let IngestItem { event, candidates } = item;
    let tenant = event.tenant_id.as_str();

    // 1. Dedupe: a used idempotency key changes nothing at all.
    if let Some(key) = &event.idempotency_key {
        let original: Option<String> = conn
            .prepare_cached("SELECT id FROM events WHERE tenant_id = ?1 AND idempotency_key = ?2")?
            .query_row(params![tenant, key], |row| row.get(0))
            .optional()?;
        if let Some(original) = original {
            return Ok(IngestOutcome::Duplicate {
                event_id: EventId(original),
            });
        }
    }

    // 2. Resolve the contact, merging the property patch.
    let resolution = run_sync(identity::resolve(
        identities,
        &event.tenant_id,
        &event.identity,
        &event.contact_properties,
        event.received_at,
    ))?;
    let contact = resolution.contact;

    // 3. Store the event under the resolved key.
    conn.prepare_cached(
        "INSERT INTO events (id, tenant_id, contact_key, name, properties, occurred_at, \
         received_at, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
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

    // 4. Start the runs the entry limits admit.
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    if !candidates.is_empty() {
        let input = to_json("run input", &run_input(&contact, &event))?;
        for candidate in &candidates {
            let prior = prior_runs(conn, tenant, &contact.key, &candidate.journey_id)?;
            if let Err(reason) = candidate.entry_limit.admits(&prior, event.received_at) {
                skipped.push(SkippedRun {
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
            conn.prepare_cached(
                "INSERT INTO timers (run_id, tenant_id, due_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![run_id.as_str(), tenant, event.received_at.0])?;
            started.push(StartedRun {
                run_id,
                journey_id: candidate.journey_id.clone(),
            });
        }
    }

    Ok(IngestOutcome::Stored {
        event_id: event.id,
        contact_key: contact.key,
        started,
        skipped,
    })
}

/// What the store knows about a person's earlier runs of one journey (inside the ingest
/// transaction, so it sees the runs this event already started).
fn prior_runs(
    conn: &Connection,
    tenant: &str,
    contact_key: &str,
    journey_id: &str,
) -> StoreResult<PriorRuns> {
    let (total, latest, live): (i64, Option<i64>, i64) = conn
        .prepare_cached(concat!(
            "SELECT COUNT(*), MAX(created_at), COALESCE(MAX(status IN ",
            live_statuses!(),
            "), 0) FROM runs WHERE tenant_id = ?1 AND contact_key = ?2 AND journey_id = ?3"
        ))?
        .query_row(params![tenant, contact_key, journey_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok(PriorRuns {
        total: run_count(total)?,
        latest_started_at: latest.map(Timestamp),
        live: live != 0,
    })
}
