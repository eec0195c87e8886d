//! Absence joins (domain-spec §2.9.5): which people the clock alone can join, found from the
//! events that left an absence leg's window since the last pass.
//!
//! Someone who stops doing X sends no event, so nobody else notices when the last X they did
//! leaves the window of a `not_exists within` leg. Each (bucket, leg) keeps a cursor into the
//! tenant's events of that name in (occurred_at, id) order; a pass reads the events that crossed
//! the window's edge since the cursor, and a person is a candidate when the crossing event was
//! their last of that name and they are not a member. The cursor then moves past what was read,
//! so a pass costs what crossed the edge (not the tenant's contacts), and people who stay
//! absent but fail the bucket's other conditions are looked at once instead of heading every
//! later page and starving the people behind them (the reference's cursorless scan does). They
//! join later the way anyone joins: the real-time path re-evaluates them on their next event or
//! property change.
//!
//! This module decides where a scan starts, how far it may read, and where the cursor lands;
//! the store reads the rows ([`ReconcileTx::absence_scan`]) and keeps the cursor.

use super::EventQuery;
use super::reconcile_rules::{JoinCandidate, ReconcileTx};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::error::StoreResult;

/// Events a scan may read per candidate it may return. Bounds one pass's work when most
/// crossing events belong to people who are members already or did the event again since.
pub const ROWS_PER_CANDIDATE: u32 = 20;

/// Where an absence leg's scan resumes: after the event at (`after_at`, `after_id`) in the
/// (occurred_at, id) order of the tenant's events of the leg's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsenceCursor {
    pub after_at: i64,
    pub after_id: String,
}

impl AbsenceCursor {
    /// Every event that occurred before `at` was read; the next scan starts at `at`
    /// (no event id sorts before the empty string).
    pub fn at(at: i64) -> Self {
        Self {
            after_at: at,
            after_id: String::new(),
        }
    }
}

/// A leg's window in ms, as its cursor is keyed (the same event name under two windows has
/// two cursors).
pub fn window_ms(leg: &EventQuery) -> i64 {
    leg.within_ms
        .map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX))
}

/// One event a scan read, in cursor order.
#[derive(Debug, Clone, PartialEq)]
pub struct AbsenceRow {
    pub occurred_at: i64,
    pub event_id: String,
    /// Set when the event was its person's last of the leg's name, the person is live and
    /// not an active member of the bucket.
    pub candidate: Option<JoinCandidate>,
}

/// Up to `limit` people whose last event of `leg` left the leg's window at `now` since the
/// previous scan, and advance the leg's cursor past what was read.
///
/// The first scan of a leg starts where the bucket's last backfill left everyone absent then
/// already joined (its start, minus the window), or at the beginning of history when the
/// bucket never had one.
pub async fn candidates(
    tx: &mut impl ReconcileTx,
    tenant: &TenantId,
    bucket_id: &str,
    leg: &EventQuery,
    now: Timestamp,
    limit: u32,
) -> StoreResult<Vec<JoinCandidate>> {
    let Some(until) = leg.window_start(now.0) else {
        return Ok(Vec::new());
    };
    let from = match tx.absence_cursor(tenant, bucket_id, leg).await? {
        Some(cursor) => cursor,
        None => {
            let backfilled = tx.backfill_started_at(tenant, bucket_id).await?;
            AbsenceCursor::at(
                backfilled.map_or(i64::MIN, |at| leg.window_start(at.0).unwrap_or(i64::MIN)),
            )
        }
    };
    if from.after_at >= until {
        return Ok(Vec::new());
    }
    let max_rows = limit.saturating_mul(ROWS_PER_CANDIDATE).max(1);
    let rows = tx
        .absence_scan(tenant, bucket_id, leg, &from, until, max_rows)
        .await?;
    let read_all = rows.len() < max_rows as usize;
    let mut found = Vec::new();
    let mut last_read = None;
    for row in rows {
        last_read = Some(AbsenceCursor {
            after_at: row.occurred_at,
            after_id: row.event_id,
        });
        if let Some(candidate) = row.candidate {
            found.push(candidate);
            if found.len() >= limit as usize {
                break;
            }
        }
    }
    let stopped_early = found.len() >= limit as usize;
    let next = match last_read {
        Some(cursor) if stopped_early || !read_all => cursor,
        _ => AbsenceCursor::at(until),
    };
    if next != from {
        tx.save_absence_cursor(tenant, bucket_id, leg, &next)
            .await?;
    }
    Ok(found)
}
