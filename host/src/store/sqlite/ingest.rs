//! Ingest: dedupe an event, upsert its contact, store it and start the runs the entry limits
//! admit, all in one write transaction.

use super::rows::{parse_object, to_json};
use super::{SqliteStore, live_statuses};
use crate::clock::Timestamp;
use crate::contacts::merge_properties;
use crate::ids::{EventId, RunId};
use crate::journeys::{PersonSnapshot, PriorRuns, RunInput, TriggerEvent};
use crate::store::{
    IngestOutcome, NewEvent, RunCandidate, SkippedRun, StartedRun, StoreError, StoreResult,
};
use serde_json::Map;
use sqlx::{Row, SqliteTransaction};

pub(super) async fn ingest(
    store: &SqliteStore,
    event: NewEvent,
    candidates: &[RunCandidate],
) -> StoreResult<IngestOutcome> {
    let (_writer, mut tx) = store.write().await?;
    let tenant = event.tenant_id.as_str();

    // 1. Dedupe: a used idempotency key changes nothing at all.
    if let Some(key) = &event.idempotency_key {
        let original: Option<String> =
            sqlx::query_scalar("SELECT id FROM events WHERE tenant_id = ? AND idempotency_key = ?")
                .bind(tenant)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(original) = original {
            tx.rollback().await?;
            return Ok(IngestOutcome::Duplicate {
                event_id: EventId(original),
            });
        }
    }

    // 2. Upsert the contact.
    let existing =
        sqlx::query("SELECT email, properties FROM contacts WHERE tenant_id = ? AND key = ?")
            .bind(tenant)
            .bind(&event.contact_key)
            .fetch_optional(&mut *tx)
            .await?;
    let person = match existing {
        None => {
            let mut properties = Map::new();
            merge_properties(&mut properties, &event.contact_properties);
            sqlx::query(
                "INSERT INTO contacts \
                 (tenant_id, key, email, properties, first_seen_at, last_seen_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant)
            .bind(&event.contact_key)
            .bind(event.email.as_deref())
            .bind(to_json("contact properties", &properties)?)
            .bind(event.received_at.0)
            .bind(event.received_at.0)
            .execute(&mut *tx)
            .await?;
            PersonSnapshot {
                key: event.contact_key.clone(),
                email: event.email.clone(),
                properties,
            }
        }
        Some(row) => {
            let mut properties = parse_object("contact properties", row.try_get("properties")?)?;
            merge_properties(&mut properties, &event.contact_properties);
            let email = event
                .email
                .clone()
                .or(row.try_get::<Option<String>, _>("email")?);
            sqlx::query(
                "UPDATE contacts SET email = ?, properties = ?, \
                 last_seen_at = MAX(last_seen_at, ?) WHERE tenant_id = ? AND key = ?",
            )
            .bind(email.as_deref())
            .bind(to_json("contact properties", &properties)?)
            .bind(event.received_at.0)
            .bind(tenant)
            .bind(&event.contact_key)
            .execute(&mut *tx)
            .await?;
            PersonSnapshot {
                key: event.contact_key.clone(),
                email,
                properties,
            }
        }
    };

    // 3. Store the event.
    sqlx::query(
        "INSERT INTO events (id, tenant_id, contact_key, name, properties, occurred_at, \
         received_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.id.as_str())
    .bind(tenant)
    .bind(&event.contact_key)
    .bind(&event.name)
    .bind(to_json("event properties", &event.event_properties)?)
    .bind(event.occurred_at.0)
    .bind(event.received_at.0)
    .bind(event.idempotency_key.as_deref())
    .execute(&mut *tx)
    .await?;

    // 4. Start the runs the entry limits admit.
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    if !candidates.is_empty() {
        let input = to_json(
            "run input",
            &RunInput {
                person,
                trigger: TriggerEvent {
                    name: event.name.clone(),
                    occurred_at: event.occurred_at,
                    properties: event.event_properties.clone(),
                },
            },
        )?;
        for candidate in candidates {
            let prior =
                prior_runs(&mut tx, tenant, &event.contact_key, &candidate.journey_id).await?;
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
            .bind(&event.contact_key)
            .bind(&input)
            .bind(event.received_at.0)
            .bind(event.received_at.0)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO timers (run_id, tenant_id, due_at) VALUES (?, ?, ?)")
                .bind(run_id.as_str())
                .bind(tenant)
                .bind(event.received_at.0)
                .execute(&mut *tx)
                .await?;
            started.push(StartedRun {
                run_id,
                journey_id: candidate.journey_id.clone(),
            });
        }
    }

    tx.commit().await?;
    Ok(IngestOutcome::Stored {
        event_id: event.id,
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
        total: u64::try_from(total).map_err(|e| StoreError::corrupt("run count", e))?,
        latest_started_at: row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
        live: row.try_get::<i64, _>("live")? != 0,
    })
}
