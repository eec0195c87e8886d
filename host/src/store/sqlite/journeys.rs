//! Implements [`crate::store::JourneyAdmin`].
//!
//! Journeys as an admin sees them: the per-tenant switch (`journey_configs`), the skip
//! counters (`journey_skips`), run counts by status, and ending runs early — by an `exitOn`
//! event inside ingest ([`exit_runs`]) or by an admin cancel ([`cancel_run`]). Ending a run
//! follows contact deletion: status `exited`, no wake time, timer removed, so no activation
//! claims it again and one already running finds it terminal at commit and writes nothing.

use super::rows::parse_run_status;

use super::{SqliteStore, live_statuses};
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::JourneyAdmin;
use crate::store::codec::SkipTally;
use crate::store::rows::JourneyStatsRows;
use crate::store::{CancelOutcome, ExitedRun, JourneyStats, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// End `contact_key`'s live runs of the journeys `journey_ids` (an `exitOn` event of theirs
/// was just stored).
pub(super) fn exit_runs(
    conn: &Connection,
    tenant: &str,
    contact_key: &str,
    journey_ids: &[String],
    now: Timestamp,
) -> StoreResult<Vec<ExitedRun>> {
    let mut exited = Vec::new();
    for journey_id in journey_ids {
        let ended = conn
            .prepare_cached(concat!(
                "UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = ?4 \
                 WHERE tenant_id = ?1 AND contact_key = ?2 AND journey_id = ?3 AND status IN ",
                live_statuses!(),
                " RETURNING id"
            ))?
            .query_map(params![tenant, contact_key, journey_id, now.0], |row| {
                row.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for run_id in ended {
            conn.prepare_cached("DELETE FROM timers WHERE run_id = ?1")?
                .execute([&run_id])?;
            exited.push(ExitedRun {
                run_id: RunId(run_id),
                journey_id: journey_id.clone(),
            });
        }
    }
    Ok(exited)
}

/// Add a batch's skips to the counters.
pub(super) fn count_skips(conn: &Connection, skips: &SkipTally) -> StoreResult<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO journey_skips (tenant_id, journey_id, reason, count) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (tenant_id, journey_id, reason) DO UPDATE SET count = count + excluded.count",
    )?;
    for (tenant, journey_id, reason, n) in skips.rows() {
        upsert.execute(params![tenant.as_str(), journey_id, reason.as_str(), n])?;
    }
    Ok(())
}

#[async_trait]
impl JourneyAdmin for SqliteStore {
    async fn set_journey_enabled(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (tenant, journey_id) = (tenant.clone(), journey_id.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO journey_configs (tenant_id, journey_id, enabled, updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id, journey_id) \
                     DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
            )?
            .execute(params![tenant.as_str(), journey_id, enabled, now.0])?;
            Ok(())
        })
        .await
    }

    async fn journey_stats(
        &self,
        tenant: &TenantId,
        journey_id: Option<&str>,
    ) -> StoreResult<HashMap<String, JourneyStats>> {
        let (tenant, journey_id) = (tenant.clone(), journey_id.map(str::to_owned));
        self.read(move |tx| {
            let args = params![tenant.as_str(), journey_id];
            let mut stats = JourneyStatsRows::default();
            // Two statements, not `(?2 IS NULL OR journey_id = ?2)`: the OR would keep the
            // planner off the (tenant, journey, status) index and count every run of the
            // tenant, which polling dashboards do often.
            let runs_sql = if journey_id.is_some() {
                "SELECT journey_id, status, COUNT(*) AS n FROM runs WHERE tenant_id = ?1 \
                     AND journey_id = ?2 GROUP BY journey_id, status"
            } else {
                "SELECT journey_id, status, COUNT(*) AS n FROM runs WHERE tenant_id = ?1 \
                     AND ?2 IS NULL GROUP BY journey_id, status"
            };
            let mut statement = tx.prepare_cached(runs_sql)?;
            let mut rows = statement.query(args)?;
            while let Some(row) = rows.next()? {
                stats.run_count(row)?;
            }
            let mut statement = tx.prepare_cached(
                "SELECT journey_id, reason, count FROM journey_skips WHERE tenant_id = ?1 \
                     AND (?2 IS NULL OR journey_id = ?2)",
            )?;
            let mut rows = statement.query(args)?;
            while let Some(row) = rows.next()? {
                stats.skip_count(row)?;
            }
            let mut statement = tx.prepare_cached(
                "SELECT journey_id, enabled FROM journey_configs WHERE tenant_id = ?1 \
                     AND (?2 IS NULL OR journey_id = ?2)",
            )?;
            let mut rows = statement.query(args)?;
            while let Some(row) = rows.next()? {
                stats.switch(row)?;
            }
            Ok(stats.into_map())
        })
        .await
    }

    async fn cancel_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome> {
        let (tenant, run_id) = (tenant.clone(), run_id.clone());
        self.write(move |tx| {
            let found = tx
                .prepare_cached(
                    "SELECT journey_id, status FROM runs WHERE id = ?1 AND tenant_id = ?2",
                )?
                .query_row(params![run_id.as_str(), tenant.as_str()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .optional()?;
            let Some((journey_id, status)) = found else {
                return Ok(CancelOutcome::NotFound);
            };
            let status = parse_run_status(&status)?;
            if status.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished(status));
            }
            tx.prepare_cached(
                "UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![run_id.as_str(), now.0])?;
            tx.prepare_cached("DELETE FROM timers WHERE run_id = ?1")?
                .execute([run_id.as_str()])?;
            Ok(CancelOutcome::Cancelled { journey_id })
        })
        .await
    }
}
