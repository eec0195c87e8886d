//! Implements [`crate::store::JourneyAdmin`].
//!
//! Journeys as an admin sees them: the per-tenant switch (`journey_configs`), the skip
//! counters (`journey_skips`), run counts by status, and ending runs early — by an `exitOn`
//! event inside ingest ([`exit_runs`]) or by an admin cancel ([`cancel_run`]). Ending a run
//! follows contact deletion: status `exited`, no wake time, timer removed, in one statement.
//! An activation committing meanwhile locks the run row first (`FOR UPDATE`), so whichever
//! comes second sees the other: a commit after the exit finds the run terminal and writes
//! nothing.

use super::{PgStore, live_statuses};
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::JourneyAdmin;
use crate::store::codec::{SkipTally, parse_run_status};
use crate::store::rows::JourneyStatsRows;
use crate::store::{CancelOutcome, ExitedRun, JourneyStats, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

/// End `contact_key`'s live runs of the journeys `journey_ids` (an `exitOn` event of theirs
/// was just stored).
pub(super) async fn exit_runs(
    conn: &mut PgConnection,
    tenant: &TenantId,
    contact_key: &str,
    journey_ids: &[String],
    now: Timestamp,
) -> StoreResult<Vec<ExitedRun>> {
    let rows = sqlx::query(concat!(
        "WITH exited AS (\
             UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND contact_key = $2 AND journey_id = ANY($3) AND status IN ",
        live_statuses!(),
        " RETURNING id, journey_id), \
         timers_gone AS (DELETE FROM timers WHERE run_id IN (SELECT id FROM exited)) \
         SELECT id, journey_id FROM exited ORDER BY journey_id, id"
    ))
    .bind(tenant.as_str())
    .bind(contact_key)
    .bind(journey_ids)
    .bind(now.0)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ExitedRun {
                run_id: RunId(row.try_get("id")?),
                journey_id: row.try_get("journey_id")?,
            })
        })
        .collect()
}

/// Add a batch's skips to the counters: one statement, rows in the tally's (sorted) order.
pub(super) async fn count_skips(conn: &mut PgConnection, skips: &SkipTally) -> StoreResult<()> {
    if skips.is_empty() {
        return Ok(());
    }
    let mut tenants = Vec::new();
    let mut journeys = Vec::new();
    let mut reasons = Vec::new();
    let mut counts = Vec::new();
    for (tenant, journey, reason, n) in skips.rows() {
        tenants.push(tenant.as_str());
        journeys.push(journey);
        reasons.push(reason.as_str());
        counts.push(n);
    }
    sqlx::query(
        "INSERT INTO journey_skips (tenant_id, journey_id, reason, count) \
         SELECT tenant_id, journey_id, reason, count FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
             WITH ORDINALITY AS s(tenant_id, journey_id, reason, count, position) \
         ORDER BY position \
         ON CONFLICT (tenant_id, journey_id, reason) \
         DO UPDATE SET count = journey_skips.count + EXCLUDED.count",
    )
    .bind(&tenants)
    .bind(&journeys)
    .bind(&reasons)
    .bind(&counts)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl JourneyAdmin for PgStore {
    async fn set_journey_enabled(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO journey_configs (tenant_id, journey_id, enabled, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, journey_id) \
             DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at",
        )
        .bind(tenant.as_str())
        .bind(journey_id)
        .bind(enabled)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn journey_stats(
        &self,
        tenant: &TenantId,
        journey_id: Option<&str>,
    ) -> StoreResult<HashMap<String, JourneyStats>> {
        // One snapshot for the three reads.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let mut stats = JourneyStatsRows::default();
        // Two statements, not `($2 IS NULL OR journey_id = $2)`: a generic plan of the OR would
        // count every run of the tenant instead of using the (tenant, journey, status) index.
        let runs_sql = if journey_id.is_some() {
            "SELECT journey_id, status, COUNT(*) AS n FROM runs WHERE tenant_id = $1 \
             AND journey_id = $2 GROUP BY journey_id, status"
        } else {
            "SELECT journey_id, status, COUNT(*) AS n FROM runs WHERE tenant_id = $1 \
             AND $2::text IS NULL GROUP BY journey_id, status"
        };
        let runs = sqlx::query(runs_sql)
            .bind(tenant.as_str())
            .bind(journey_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in &runs {
            stats.run_count(row)?;
        }
        let skips = sqlx::query(
            "SELECT journey_id, reason, count FROM journey_skips WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR journey_id = $2)",
        )
        .bind(tenant.as_str())
        .bind(journey_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &skips {
            stats.skip_count(row)?;
        }
        let configs = sqlx::query(
            "SELECT journey_id, enabled FROM journey_configs WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR journey_id = $2)",
        )
        .bind(tenant.as_str())
        .bind(journey_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &configs {
            stats.switch(row)?;
        }
        tx.commit().await?;
        Ok(stats.into_map())
    }

    async fn cancel_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        // Lock the run: a concurrent activation commit or exit finishes first, and is seen.
        let found = sqlx::query(
            "SELECT journey_id, status FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        )
        .bind(run_id.as_str())
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = found else {
            return Ok(CancelOutcome::NotFound);
        };
        let journey_id: String = row.try_get("journey_id")?;
        let status = parse_run_status(row.try_get::<&str, _>("status")?)?;
        if status.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished(status));
        }
        sqlx::query(
            "WITH exited AS (UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = $2 \
                 WHERE id = $1 RETURNING id) \
             DELETE FROM timers WHERE run_id IN (SELECT id FROM exited)",
        )
        .bind(run_id.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CancelOutcome::Cancelled { journey_id })
    }
}
