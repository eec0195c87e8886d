//! The reconcile job's store side, once for both backends: one pass over one bucket in one
//! write transaction ([`reconcile_pass`], the rules' [`reconcile_rules::run_pass`] with each
//! transition ingested), which members a page of a pass reads ([`member_page`]), and the read
//! that tells when a pass can next have work ([`next_work`]). The job that drives them is [`crate::reconcile_job`]; the rules are
//! [`crate::buckets::reconcile_rules`].

use super::contacts::LiveContactTx;
use super::ingest::ingest_transition;
use crate::buckets::reconcile_rules::{self, MemberSelection, Pass, ReconcileTx};
use crate::buckets::{BucketDef, DwellSchedule};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::codec::{SkipTally, StartedRuns};
use crate::store::{IngestRouting, ReconcileReport, StoreResult};

/// Which earliest instant [`NextWorkReads::earliest`] reads for a bucket.
#[derive(Debug, Clone, Copy)]
pub enum Earliest<'a> {
    /// The earliest occurred-at at or after `since` of the tenant's events named `event`.
    EventSince { event: &'a str, since: i64 },
    /// The earliest `max_dwell_at` of the bucket's active memberships.
    MaxDwell,
    /// The earliest `expires_at` after `after` of the bucket's active memberships.
    ExpiryAfter { after: i64 },
    /// The earliest instant the dwell `schedule` counts from among the bucket's active
    /// memberships: their anchor when it has not stamped them yet (`after`), their last stamp
    /// (`every`).
    DwellBase(DwellSchedule),
}

/// How a backend's dialect spells the parts of a member page's filter ([`member_page`]).
pub struct MemberFilterSql {
    /// The placeholder of the selection's [`MemberSelection::cutoff`].
    pub cutoff: &'static str,
    /// The schedule's stamp in the membership's `m.dwell_state` (NULL while unstamped).
    pub stamp: &'static str,
    /// The same stamp as a number, to compare with instants.
    pub stamp_number: &'static str,
}

/// What a page of `which` selects among a bucket's active members `m`, beyond the bucket:
/// the filter (`AND …`, or nothing) and the one indexed column the page is ordered by.
pub fn member_page(which: MemberSelection, sql: &MemberFilterSql) -> (String, &'static str) {
    let cutoff = sql.cutoff;
    match which {
        MemberSelection::ToRecheck => (String::new(), "m.last_evaluated_at"),
        MemberSelection::PastMaxDwell { .. } => (
            format!("AND m.max_dwell_at IS NOT NULL AND m.max_dwell_at <= {cutoff}"),
            "m.max_dwell_at",
        ),
        MemberSelection::Expired { .. } => (
            format!("AND m.expires_at IS NOT NULL AND m.expires_at <= {cutoff}"),
            "m.expires_at",
        ),
        // `after` fires once, when its anchor is at or before the cutoff and it is unstamped;
        // `every` counts from its last stamp, else from the anchor.
        MemberSelection::DueDwell { schedule, .. } => {
            let filter = match schedule {
                DwellSchedule::After(_) => format!(
                    "AND COALESCE(m.dwell_anchor_at, m.entered_at) <= {cutoff} AND {} IS NULL",
                    sql.stamp
                ),
                DwellSchedule::Every(_) => format!(
                    "AND COALESCE({}, m.dwell_anchor_at, m.entered_at) <= {cutoff}",
                    sql.stamp_number
                ),
            };
            (filter, "m.last_evaluated_at")
        }
    }
}

/// The read of [`next_work`]: the first instant at which one kind of work can come due for a
/// bucket, or `None` when none is pending.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait NextWorkReads: ReconcileTx {
    async fn earliest(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        which: Earliest<'_>,
    ) -> StoreResult<Option<i64>>;
}

/// Run one pass of the reconcile job over `bucket` as of `now`, reading at most `limit` rows,
/// and ingest each transition like ingest does (deduplicated on its deterministic key, routed
/// to journeys).
pub async fn reconcile_pass(
    tx: &mut (impl ReconcileTx + LiveContactTx),
    tenant: &TenantId,
    bucket: &BucketDef,
    pass: Pass,
    now: Timestamp,
    limit: u32,
    routing: &dyn IngestRouting,
) -> StoreResult<ReconcileReport> {
    let outcome = reconcile_rules::run_pass(tx, bucket, tenant, pass, now, limit).await?;
    let mut runs = StartedRuns::default();
    let mut transitions = Vec::with_capacity(outcome.transitions.len());
    for transition in &outcome.transitions {
        let Some(contact) = tx
            .live_contact_by_key(tenant, &transition.contact_key)
            .await?
        else {
            continue;
        };
        transitions
            .push(ingest_transition(tx, routing, &contact, transition, now, &mut runs).await?);
    }
    tx.count_skips(&SkipTally::of(tenant, &runs.skipped))
        .await?;
    Ok(ReconcileReport {
        examined: outcome.examined,
        transitions,
        started_runs: runs.started.len(),
    })
}

/// A lower bound on the earliest instant after `after` at which a pass of `bucket` can have
/// work ([`reconcile_rules::work_plan`]); `None` when nothing the clock does can change it.
pub async fn next_work(
    tx: &mut impl NextWorkReads,
    tenant: &TenantId,
    bucket: &BucketDef,
    after: Timestamp,
) -> StoreResult<Option<Timestamp>> {
    let plan = reconcile_rules::work_plan(bucket);
    let mut instants = Vec::new();
    for leg in &plan.window_legs {
        let within = i64::try_from(leg.within_ms.unwrap_or(0)).unwrap_or(i64::MAX);
        let since = after.0.saturating_sub(within);
        let first = tx
            .earliest(
                tenant,
                &bucket.id,
                Earliest::EventSince {
                    event: &leg.event,
                    since,
                },
            )
            .await?;
        instants.extend(first.map(|t| Timestamp(t.saturating_add(within) + 1)));
    }
    if plan.max_dwell {
        let first = tx.earliest(tenant, &bucket.id, Earliest::MaxDwell).await?;
        instants.extend(first.map(Timestamp));
    }
    if plan.deadlines {
        let expiry = Earliest::ExpiryAfter { after: after.0 };
        instants.extend(
            tx.earliest(tenant, &bucket.id, expiry)
                .await?
                .map(Timestamp),
        );
    }
    // Dwell stamps wait for the bucket's first backfill.
    if !plan.dwell.is_empty() && !tx.first_backfill_pending(tenant, &bucket.id).await? {
        for &schedule in &plan.dwell {
            let first = tx
                .earliest(tenant, &bucket.id, Earliest::DwellBase(schedule))
                .await?;
            instants.extend(first.map(|t| Timestamp(t).plus_ms(schedule.offset_ms())));
        }
    }
    Ok(reconcile_rules::next_work(after, instants))
}
