//! Implements [`crate::store::UsageReads`], and [`add_usage`]: the counter upsert the
//! transactions that do a tenant's work end with (ingest, activation commits, an email sent).
//!
//! SQLite has one writer, so every count goes to shard 0 of its (tenant, day); the reads sum
//! the shards all the same, as the schema is PostgreSQL's (migration 0023).

use super::SqliteStore;
use super::rows::collect;
use crate::ids::TenantId;
use crate::store::rows::{day_usage_from_row, tenant_from_row, usage_counts_from_row};
use crate::store::{StoreResult, Tenant, UsageReads};
use crate::usage::{DayRange, DayUsage, UsageCounts, UsageTally};
use async_trait::async_trait;
use rusqlite::{Connection, params};

/// Add `tally` to the counters, a row per (tenant, day). The last statement of the
/// transaction that did the work.
pub(super) fn add_usage(conn: &Connection, tally: &UsageTally) -> StoreResult<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO tenant_usage (tenant_id, day, shard, events, activations, cpu_us, \
         emails_sent) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6) \
         ON CONFLICT (tenant_id, day, shard) DO UPDATE SET \
         events = events + excluded.events, activations = activations + excluded.activations, \
         cpu_us = cpu_us + excluded.cpu_us, emails_sent = emails_sent + excluded.emails_sent",
    )?;
    for (tenant, day, counts) in tally.rows() {
        upsert.execute(params![
            tenant.as_str(),
            day.0,
            stored(counts.events),
            stored(counts.activations),
            stored(counts.cpu_us),
            stored(counts.emails_sent),
        ])?;
    }
    Ok(())
}

/// A count as SQLite stores it.
fn stored(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[async_trait]
impl UsageReads for SqliteStore {
    async fn usage_by_day(&self, tenant: &TenantId, range: DayRange) -> StoreResult<Vec<DayUsage>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT day, SUM(events) AS events, SUM(activations) AS activations, \
                 SUM(cpu_us) AS cpu_us, SUM(emails_sent) AS emails_sent FROM tenant_usage \
                 WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3 GROUP BY day ORDER BY day",
            )?;
            let rows = statement.query(params![tenant.as_str(), range.from.0, range.to.0])?;
            collect(rows, |row| day_usage_from_row(row))
        })
        .await
    }

    async fn usage_by_tenant(&self, range: DayRange) -> StoreResult<Vec<(Tenant, UsageCounts)>> {
        self.read(move |tx| {
            // Each tenant's sum walks its own rows of the range on the primary key.
            let mut statement = tx.prepare_cached(
                "SELECT t.id, t.name, t.created_at, t.suspended_at, \
                 COALESCE(SUM(u.events), 0) AS events, \
                 COALESCE(SUM(u.activations), 0) AS activations, \
                 COALESCE(SUM(u.cpu_us), 0) AS cpu_us, \
                 COALESCE(SUM(u.emails_sent), 0) AS emails_sent \
                 FROM tenants t LEFT JOIN tenant_usage u \
                 ON u.tenant_id = t.id AND u.day BETWEEN ?1 AND ?2 \
                 GROUP BY t.id ORDER BY t.created_at, t.id",
            )?;
            let rows = statement.query(params![range.from.0, range.to.0])?;
            collect(rows, |row| {
                Ok((tenant_from_row(row)?, usage_counts_from_row(row)?))
            })
        })
        .await
    }
}
