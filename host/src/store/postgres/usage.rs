//! Implements [`crate::store::UsageReads`], and [`add_usage`]: the counter upsert the
//! transactions that do a tenant's work end with (ingest, activation commits, an email sent).
//!
//! Concurrency (migration 0023). Every host process and every concurrent transaction of one
//! tenant adds to that tenant's counters of the day. A transaction adds to one shard of each
//! (tenant, day) — a process takes the shards in turn from a random start ([`next_shard`]), so
//! its own concurrent transactions never share one while fewer than [`SHARDS`] are in flight,
//! and two processes rarely do — and the reads sum the shards. The upsert is the last
//! statement of its transaction and writes its rows in (tenant, day) order: once it holds a
//! counter row, a transaction waits for no other lock, and two that write several rows of one
//! shard take them in the same order, so counters never close a deadlock.

use super::PgStore;
use crate::ids::TenantId;
use crate::store::rows::{day_usage_from_row, tenant_from_row, usage_counts_from_row};
use crate::store::{StoreResult, Tenant, UsageReads};
use crate::usage::{DayRange, DayUsage, UsageCounts, UsageTally};
use async_trait::async_trait;
use sqlx::PgConnection;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU16, Ordering};

/// The shards of each (tenant, day): a read sums at most this many rows per day.
pub(super) const SHARDS: u16 = 16;

/// The shard this transaction adds to: the next one in turn, from a start random per process.
pub(super) fn next_shard() -> i16 {
    static NEXT: LazyLock<AtomicU16> = LazyLock::new(|| AtomicU16::new(rand::random()));
    let turn = NEXT.fetch_add(1, Ordering::Relaxed);
    i16::try_from(turn % SHARDS).expect("a shard fits i16")
}

/// Adds each row's counts to its (tenant, day) in shard `$7`; `$1`–`$6` are the rows as
/// arrays, in (tenant, day) order.
const ADD_USAGE: &str = "INSERT INTO tenant_usage AS u \
     (tenant_id, day, shard, events, activations, cpu_us, emails_sent) \
     SELECT r.tenant_id, r.day, $7, r.events, r.activations, r.cpu_us, r.emails_sent \
     FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) \
       AS r(tenant_id, day, events, activations, cpu_us, emails_sent) \
     ORDER BY r.tenant_id, r.day \
     ON CONFLICT (tenant_id, day, shard) DO UPDATE SET \
     events = u.events + excluded.events, activations = u.activations + excluded.activations, \
     cpu_us = u.cpu_us + excluded.cpu_us, emails_sent = u.emails_sent + excluded.emails_sent";

/// Add `tally` to the counters in one statement: the last of the transaction that did the
/// work.
pub(super) async fn add_usage(conn: &mut PgConnection, tally: &UsageTally) -> StoreResult<()> {
    if tally.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = tally.rows().collect();
    let column = |count: fn(&UsageCounts) -> u64| -> Vec<i64> {
        rows.iter()
            .map(|(_, _, counts)| i64::try_from(count(counts)).unwrap_or(i64::MAX))
            .collect()
    };
    sqlx::query(ADD_USAGE)
        .bind(rows.iter().map(|(t, _, _)| t.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, day, _)| day.0).collect::<Vec<_>>())
        .bind(column(|c| c.events))
        .bind(column(|c| c.activations))
        .bind(column(|c| c.cpu_us))
        .bind(column(|c| c.emails_sent))
        .bind(next_shard())
        .execute(conn)
        .await?;
    Ok(())
}

/// A sum of the counters, as `int8` (PostgreSQL sums `bigint` as `numeric`).
macro_rules! usage_sums {
    () => {
        "COALESCE(SUM(u.events), 0)::int8 AS events, \
         COALESCE(SUM(u.activations), 0)::int8 AS activations, \
         COALESCE(SUM(u.cpu_us), 0)::int8 AS cpu_us, \
         COALESCE(SUM(u.emails_sent), 0)::int8 AS emails_sent"
    };
}

#[async_trait]
impl UsageReads for PgStore {
    async fn usage_by_day(&self, tenant: &TenantId, range: DayRange) -> StoreResult<Vec<DayUsage>> {
        sqlx::query(concat!(
            "SELECT u.day, ",
            usage_sums!(),
            " FROM tenant_usage u WHERE u.tenant_id = $1 AND u.day BETWEEN $2 AND $3 \
             GROUP BY u.day ORDER BY u.day"
        ))
        .bind(tenant.as_str())
        .bind(range.from.0)
        .bind(range.to.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(day_usage_from_row)
        .collect()
    }

    async fn usage_by_tenant(&self, range: DayRange) -> StoreResult<Vec<(Tenant, UsageCounts)>> {
        // Each tenant's sum walks its own rows of the range on the primary key.
        sqlx::query(concat!(
            "SELECT t.id, t.name, t.created_at, t.suspended_at, s.* FROM tenants t \
             CROSS JOIN LATERAL (SELECT ",
            usage_sums!(),
            " FROM tenant_usage u WHERE u.tenant_id = t.id AND u.day BETWEEN $1 AND $2) s \
             ORDER BY t.created_at, t.id"
        ))
        .bind(range.from.0)
        .bind(range.to.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((tenant_from_row(row)?, usage_counts_from_row(row)?)))
        .collect()
    }
}
