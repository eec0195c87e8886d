//! Implements [`crate::store::EventIngest`] and the ingest primitives
//! ([`crate::store::flows::IngestTx`]).
//!
//! Ingest on SQLite: the batch is one closure on the writer thread, running the shared flow
//! ([`flows::ingest`]) over [`SqliteTx`], whose ingest primitives are here. Each statement is
//! an in-process call on a cached prepared statement rather than a round trip, so events,
//! runs and timers are written as the flow meets them, and the skips and the tenants' usage
//! are counted at the end.

use super::journeys::{count_skips, exit_runs};
use super::rows::to_json;
use super::tx::{SqliteTx, run_sync};
use super::usage::add_usage;
use super::{SqliteStore, live_statuses, tenant_number};
use crate::clock::Timestamp;
use crate::ids::{EventId, RunId, TenantId};
use crate::ingest::IngestItem;
use crate::journeys::{PriorRuns, SkipReason};
use crate::store::EventIngest;
use crate::store::codec::{SkipTally, run_count};
use crate::store::flows::{self, EnrollmentReads, IngestTx, NewRun};
use crate::store::{ExitedRun, IngestOutcome, IngestRouting, NewEvent, StoreResult};
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
        self.write_with_contacts(move |conn, cache| {
            let mut tx = SqliteTx::with_contacts(conn, cache)?;
            let (outcomes, skips, usage) = run_sync(flows::ingest::ingest_batch(
                &mut tx,
                &batch,
                routing.as_ref(),
            ))?;
            run_sync(tx.count_skips(&skips))?;
            add_usage(tx.conn, &usage)?;
            Ok(outcomes)
        })
        .await
    }
}

impl IngestTx for SqliteTx<'_> {
    async fn key_used(&mut self, tenant: &TenantId, key: &str) -> StoreResult<Option<EventId>> {
        Ok(self
            .conn
            .prepare_cached(concat!(
                "SELECT id FROM events WHERE tenant = ",
                tenant_number!("?1"),
                " AND idempotency_key = ?2"
            ))?
            .query_row(params![tenant.as_str(), key], |row| row.get(0))
            .optional()?
            .map(EventId))
    }

    async fn store_event(&mut self, event: &NewEvent, contact_key: &str) -> StoreResult<()> {
        if insert_event(self.conn, event, contact_key)? {
            Ok(())
        } else {
            Err(flows::ingest::key_taken_meanwhile())
        }
    }

    async fn store_transition_event(
        &mut self,
        event: &NewEvent,
        contact_key: &str,
    ) -> StoreResult<bool> {
        insert_event(self.conn, event, contact_key)
    }

    async fn exit_runs(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_ids: &[String],
        at: Timestamp,
    ) -> StoreResult<Vec<ExitedRun>> {
        exit_runs(self.conn, tenant.as_str(), contact_key, journey_ids, at)
    }

    async fn unsubscribed(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        super::preferences::unsubscribed_in(self.conn, tenant, contact_key, email)
    }

    async fn enrollment_reads(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<EnrollmentReads> {
        let (tenant, conn) = (tenant.as_str(), self.conn);
        let (total, latest, live, disabled): (i64, Option<i64>, i64, i64) = conn
            .prepare_cached(concat!(
                "SELECT COUNT(*), MAX(created_at), COALESCE(MAX(status IN ",
                live_statuses!(),
                "), 0), EXISTS (SELECT 1 FROM journey_configs WHERE tenant_id = ?1 \
                 AND journey_id = ?3 AND enabled = 0) \
                 FROM runs WHERE tenant_id = ?1 AND contact_key = ?2 AND journey_id = ?3"
            ))?
            .query_row(params![tenant, contact_key, journey_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
        Ok(EnrollmentReads {
            prior: PriorRuns {
                total: run_count(total)?,
                latest_started_at: latest.map(Timestamp),
                live: live != 0,
            },
            disabled_by_admin: disabled != 0,
        })
    }

    /// SQLite's single writer serialises ingest, so the guards' read of live runs holds.
    async fn start_run(&mut self, run: &NewRun<'_>) -> StoreResult<Result<RunId, SkipReason>> {
        let run_id = RunId::generate();
        let tenant = run.tenant.as_str();
        self.conn
            .prepare_cached(
                "INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, \
                 status, input, created_at, updated_at, activations) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?7, 0)",
            )?
            .execute(params![
                run_id.as_str(),
                tenant,
                run.candidate.journey_id,
                run.candidate.module_hash,
                run.contact_key,
                run.input,
                run.at.0,
            ])?;
        self.conn
            .prepare_cached("INSERT INTO timers (run_id, tenant_id, due_at) VALUES (?1, ?2, ?3)")?
            .execute(params![run_id.as_str(), tenant, run.at.0])?;
        Ok(Ok(run_id))
    }

    async fn count_skips(&mut self, skips: &SkipTally) -> StoreResult<()> {
        count_skips(self.conn, skips)
    }
}

/// Insert `event` under the contact's key unless its idempotency key is taken (then nothing is
/// written: `false`), and wake the person's runs waiting for an event of its name.
fn insert_event(conn: &Connection, event: &NewEvent, contact_key: &str) -> StoreResult<bool> {
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
            contact_key,
            event.name,
            to_json("event properties", &event.event_properties)?,
            event.occurred_at.0,
            event.received_at.0,
            event.idempotency_key,
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    wake_waiting_runs(conn, tenant, contact_key, &event.name, event.received_at)?;
    Ok(true)
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
