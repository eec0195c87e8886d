//! Ingest: a batch of events in one write transaction. Per event: dedupe it, resolve its
//! contact (identity resolution with the property merge), store it under the contact's
//! resolved key and start the runs the entry limits admit.

use super::identity::SqliteIdentityTx;
use super::rows::to_json;
use super::{SqliteStore, live_statuses};
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId, TenantId};
use crate::journeys::PriorRuns;
use crate::store::codec::{run_count, run_input};
use crate::store::identity;
use crate::store::{IngestItem, IngestOutcome, SkippedRun, StartedRun, StoreResult};
use sqlx::{Row, SqliteTransaction};
use std::collections::{BTreeMap, HashMap};

/// Idempotency keys already used, by (tenant, key): the event that used each.
type UsedKeys = HashMap<(TenantId, String), EventId>;

pub(super) async fn ingest(
    store: &SqliteStore,
    batch: Vec<IngestItem>,
) -> StoreResult<Vec<IngestOutcome>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let (_writer, mut tx) = store.legacy_write().await?;
    // The write lock is held until the commit, so no other transaction can use one of these
    // keys meanwhile; an earlier item of the batch counts as a use too.
    let mut used = used_keys(&mut tx, &batch).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        outcomes.push(ingest_one(&mut tx, &mut used, item).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Which of the batch's idempotency keys stored events already carry: one statement per
/// tenant in the batch (rather than one per event: each statement is a round trip to the
/// connection's thread).
async fn used_keys(
    tx: &mut SqliteTransaction<'static>,
    batch: &[IngestItem],
) -> StoreResult<UsedKeys> {
    let mut by_tenant: BTreeMap<&TenantId, Vec<&str>> = BTreeMap::new();
    for item in batch {
        if let Some(key) = item.event.idempotency_key.as_deref() {
            by_tenant
                .entry(&item.event.tenant_id)
                .or_default()
                .push(key);
        }
    }
    let mut used = UsedKeys::new();
    for (tenant, keys) in by_tenant {
        let rows = sqlx::query(
            "SELECT idempotency_key, id FROM events WHERE tenant_id = ? \
             AND idempotency_key IN (SELECT value FROM json_each(?))",
        )
        .bind(tenant.as_str())
        .bind(to_json("idempotency keys", &keys)?)
        .fetch_all(&mut **tx)
        .await?;
        for row in &rows {
            used.insert(
                (tenant.clone(), row.try_get("idempotency_key")?),
                EventId(row.try_get("id")?),
            );
        }
    }
    Ok(used)
}

/// One item of a batch, inside the batch's transaction (so it sees the earlier items).
async fn ingest_one(
    tx: &mut SqliteTransaction<'static>,
    used: &mut UsedKeys,
    item: IngestItem,
) -> StoreResult<IngestOutcome> {
    let IngestItem { event, candidates } = item;
    let tenant = event.tenant_id.as_str();

    // 1. Dedupe: a used idempotency key changes nothing at all.
    let used_key = event
        .idempotency_key
        .as_ref()
        .map(|key| (event.tenant_id.clone(), key.clone()));
    if let Some(original) = used_key.as_ref().and_then(|k| used.get(k)) {
        return Ok(IngestOutcome::Duplicate {
            event_id: original.clone(),
        });
    }

    // 2. Resolve the contact, merging the property patch.
    let resolution = identity::resolve(
        &mut SqliteIdentityTx::new(tx),
        &event.tenant_id,
        &event.identity,
        &event.contact_properties,
        event.received_at,
    )
    .await?;
    let contact = resolution.contact;

    // 3. Store the event under the resolved key.
    sqlx::query(
        "INSERT INTO events (id, tenant_id, contact_key, name, properties, occurred_at, \
         received_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.id.as_str())
    .bind(tenant)
    .bind(&contact.key)
    .bind(&event.name)
    .bind(to_json("event properties", &event.event_properties)?)
    .bind(event.occurred_at.0)
    .bind(event.received_at.0)
    .bind(event.idempotency_key.as_deref())
    .execute(&mut **tx)
    .await?;
    if let Some(key) = used_key {
        used.insert(key, event.id.clone());
    }

    // 4. Start the runs the entry limits admit.
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    if !candidates.is_empty() {
        let input = to_json("run input", &run_input(&contact, &event))?;
        for candidate in &candidates {
            let prior = prior_runs(tx, tenant, &contact.key, &candidate.journey_id).await?;
            if let Err(reason) = candidate.entry_limit.admits(&prior, event.received_at) {
                skipped.push(SkippedRun {
                    journey_id: candidate.journey_id.clone(),
                    reason,
                });
                continue;
            }
            let run_id = RunId::generate();
            sqlx::query(
                "INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, \
                 status, input, created_at, updated_at, activations) \
                 VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, 0)",
            )
            .bind(run_id.as_str())
            .bind(tenant)
            .bind(&candidate.journey_id)
            .bind(&candidate.module_hash)
            .bind(&contact.key)
            .bind(&input)
            .bind(event.received_at.0)
            .bind(event.received_at.0)
            .execute(&mut **tx)
            .await?;
            sqlx::query("INSERT INTO timers (run_id, tenant_id, due_at) VALUES (?, ?, ?)")
                .bind(run_id.as_str())
                .bind(tenant)
                .bind(event.received_at.0)
                .execute(&mut **tx)
                .await?;
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
async fn prior_runs(
    tx: &mut SqliteTransaction<'static>,
    tenant: &str,
    contact_key: &str,
    journey_id: &str,
) -> StoreResult<PriorRuns> {
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS total, MAX(created_at) AS latest, \
         COALESCE(MAX(status IN ",
        live_statuses!(),
        "), 0) AS live \
         FROM runs WHERE tenant_id = ? AND contact_key = ? AND journey_id = ?"
    ))
    .bind(tenant)
    .bind(contact_key)
    .bind(journey_id)
    .fetch_one(&mut **tx)
    .await?;
    let total: i64 = row.try_get("total")?;
    Ok(PriorRuns {
        total: run_count(total)?,
        latest_started_at: row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
        live: row.try_get::<i64, _>("live")? != 0,
    })
}
