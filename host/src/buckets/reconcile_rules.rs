//! Buckets over time: what the clock alone changes (domain-spec §2.9), decided here and
//! applied by the reconcile job ([`crate::reconcile_job`]) through a store's [`ReconcileTx`].
//!
//! Per bucket and tick the passes run in this order: criteria leaves (time-based buckets, and
//! buckets with a min dwell whose deferred leave nobody else would sweep), absence joins (the
//! only joins the clock can cause: someone who stops doing X sends no event), max-dwell leaves
//! (reason `maxDwell`), then each dwell reaction's schedule — after the leaves, so a member
//! forced out this tick gets no dwell. Each pass reads one bounded batch, oldest-evaluated
//! first, so one large bucket cannot starve the others. Joins and leaves are
//! [`membership::join`] / [`membership::leave_as`] with [`Source::Reconcile`]: one
//! implementation of the rules, the epoch and the transition's event for every writer.
//!
//! It decides; it must not speak SQL (the store implements [`ReconcileTx`]) nor read a clock
//! (the job passes the pass instant).

use super::absence::{self, AbsenceCursor, AbsenceRow};
use super::membership::{self, ActiveMembership, MembershipTx, Source, Transition, TransitionKind};
use super::{BucketDef, Condition, DwellSchedule, EventCheck, EventQuery, LeaveReason, evaluate};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::error::StoreResult;
use serde_json::{Map, Value};

/// One pass of the reconcile job over one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Re-evaluate members, oldest-evaluated first; leave (reason `criteria`) those who no
    /// longer match.
    CriteriaLeaves,
    /// Join people who match only because time passed (an absence leg's window emptied).
    AbsenceJoins,
    /// Leave (reason `maxDwell`) members whose max dwell is reached.
    MaxDwell,
    /// Fire a dwell reaction's schedule for members who have been in long enough.
    Dwell(DwellSchedule),
    /// Fast expiry (§2.10): re-check members of a fast-expiry bucket whose `expires_at`
    /// passed; leave (reason `criteria`) those who no longer match, and disarm the others
    /// (the criteria pass stays their backstop). Not a tick pass: the job runs it whenever
    /// the host clock moves.
    Expiry,
}

impl Pass {
    pub fn name(&self) -> String {
        match self {
            Pass::CriteriaLeaves => "criteria-leaves".into(),
            Pass::AbsenceJoins => "absence-joins".into(),
            Pass::MaxDwell => "max-dwell".into(),
            Pass::Dwell(schedule) => format!("dwell {}", schedule.label()),
            Pass::Expiry => "fast-expiry".into(),
        }
    }

    /// Whether the pass stays quiet while the bucket's first backfill has not completed
    /// (§2.9.7): joins and dwell would otherwise blast the pre-existing population.
    pub fn gated_by_first_backfill(&self) -> bool {
        matches!(self, Pass::AbsenceJoins | Pass::Dwell(_))
    }
}

/// The passes a bucket needs, in the order they run; empty for a bucket the clock cannot move
/// (disabled, manual, or without windows, min or max dwell and dwell reactions).
pub fn passes(bucket: &BucketDef) -> Vec<Pass> {
    let mut passes = Vec::new();
    if !bucket.is_evaluated() {
        return passes;
    }
    if bucket.is_time_based() || bucket.min_dwell_ms.is_some() {
        passes.push(Pass::CriteriaLeaves);
    }
    if bucket.is_time_based() && should_reconcile_joins(bucket) {
        passes.push(Pass::AbsenceJoins);
    }
    if bucket.max_dwell_ms.is_some() {
        passes.push(Pass::MaxDwell);
    }
    passes.extend(bucket.dwell_schedules().map(Pass::Dwell));
    passes
}

/// Join-scan policy (§2.9.6): the scan runs for buckets with an absence leg (a windowed
/// `not_exists`). It evaluates the full criteria for every candidate, so any shape is exact;
/// the candidates are people who ever fired an absence leg's event (never-active people are
/// never joined by the clock) and did not fire every leg's event inside its window.
pub fn should_reconcile_joins(bucket: &BucketDef) -> bool {
    bucket
        .criteria
        .as_ref()
        .is_some_and(|c| !absence_legs(c).is_empty())
}

/// Every windowed `not_exists` event leg, depth first, deduplicated.
pub fn absence_legs(criteria: &Condition) -> Vec<EventQuery> {
    let mut legs: Vec<EventQuery> = Vec::new();
    for leaf in criteria.leaves() {
        if let Condition::Event(event) = leaf
            && event.check == EventCheck::NotExists
            && event.within_ms.is_some()
        {
            let leg = EventQuery {
                event: event.event.clone(),
                within_ms: event.within_ms,
            };
            if !legs.contains(&leg) {
                legs.push(leg);
            }
        }
    }
    legs
}

/// Every windowed event leg (any check), deduplicated: the windows whose emptying can change
/// membership.
pub fn window_legs(criteria: &Condition) -> Vec<EventQuery> {
    let mut legs: Vec<EventQuery> = Vec::new();
    for leaf in criteria.leaves() {
        if let Condition::Event(event) = leaf
            && event.within_ms.is_some()
        {
            let leg = EventQuery {
                event: event.event.clone(),
                within_ms: event.within_ms,
            };
            if !legs.contains(&leg) {
                legs.push(leg);
            }
        }
    }
    legs
}

/// The dwell ordinal due for a member at `sweep`, or `None` when nothing is due (§2.9.4):
/// `after` fires once (ordinal 1) when `sweep - anchor >= offset` and it never fired for this
/// membership; `every` fires when at least an interval passed since its last fire (or the
/// anchor), with the grid-aligned interval index `floor((sweep - anchor) / offset)` as the
/// ordinal — after an outage that is one fire with a jumped ordinal (coalescing).
pub fn dwell_due(
    schedule: DwellSchedule,
    anchor: Timestamp,
    last_fired: Option<Timestamp>,
    sweep: Timestamp,
) -> Option<u64> {
    let offset = i64::try_from(schedule.offset_ms()).ok()?.max(1);
    if sweep.0.saturating_sub(anchor.0) < offset {
        return None;
    }
    match schedule {
        DwellSchedule::After(_) => last_fired.is_none().then_some(1),
        DwellSchedule::Every(_) => {
            let since = last_fired.unwrap_or(anchor);
            if sweep.0.saturating_sub(since.0) < offset {
                return None;
            }
            u64::try_from(sweep.0.saturating_sub(anchor.0) / offset).ok()
        }
    }
}

/// When a dwell schedule can next be due for a member, given its anchor and last fire.
pub fn dwell_next_due(
    schedule: DwellSchedule,
    anchor: Timestamp,
    last_fired: Option<Timestamp>,
) -> Option<Timestamp> {
    match (schedule, last_fired) {
        (DwellSchedule::After(_), Some(_)) => None,
        (DwellSchedule::After(ms), None) => Some(anchor.plus_ms(ms)),
        (DwellSchedule::Every(ms), last) => Some(last.unwrap_or(anchor).plus_ms(ms)),
    }
}

/// What can make a bucket's passes have work at a later instant, for coalescing a catch-up
/// over many schedule ticks: the store finds the earliest such instant (a lower bound).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkPlan {
    /// A windowed event occurrence leaving its window can change membership (either way).
    pub window_legs: Vec<EventQuery>,
    /// `max_dwell_at` deadlines.
    pub max_dwell: bool,
    /// `expires_at` deadlines (a deferred min-dwell leave, a fast-expiry timer).
    pub deadlines: bool,
    /// Dwell schedules coming due.
    pub dwell: Vec<DwellSchedule>,
}

/// The [`WorkPlan`] of a bucket's [`passes`].
pub fn work_plan(bucket: &BucketDef) -> WorkPlan {
    let passes = passes(bucket);
    let mut plan = WorkPlan::default();
    for pass in &passes {
        match pass {
            Pass::CriteriaLeaves | Pass::AbsenceJoins => {
                if plan.window_legs.is_empty()
                    && let Some(criteria) = &bucket.criteria
                {
                    plan.window_legs = window_legs(criteria);
                }
                plan.deadlines |= bucket.min_dwell_ms.is_some();
            }
            Pass::MaxDwell => plan.max_dwell = true,
            Pass::Dwell(schedule) => plan.dwell.push(*schedule),
            Pass::Expiry => plan.deadlines = true,
        }
    }
    plan.deadlines |= bucket.fast_expiry && !passes.is_empty();
    plan
}

/// The earliest of `instants`, but never at or before `after` (work already due is due at
/// the next instant the job looks).
pub fn next_work(
    after: Timestamp,
    instants: impl IntoIterator<Item = Timestamp>,
) -> Option<Timestamp> {
    instants
        .into_iter()
        .map(|t| t.max(Timestamp(after.0.saturating_add(1))))
        .min()
}

/// A member the reconcile job looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileMember {
    pub contact_key: String,
    pub membership: ActiveMembership,
    /// The contact's stored properties (what criteria see without an ingest patch).
    pub properties: Map<String, Value>,
    /// `COALESCE(dwell_anchor_at, entered_at)`.
    pub dwell_anchor: Timestamp,
    /// Dwell label → instant (ms) it last fired for this membership.
    pub dwell_state: Map<String, Value>,
}

impl ReconcileMember {
    /// When the dwell schedule `label` last fired for this membership.
    pub fn last_fired(&self, label: &str) -> Option<Timestamp> {
        self.dwell_state
            .get(label)
            .and_then(Value::as_i64)
            .map(Timestamp)
    }
}

/// A live contact that may join by the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinCandidate {
    pub contact_key: String,
    pub properties: Map<String, Value>,
}

/// Which of a bucket's active members a pass reads, a page at a time ([`ReconcileTx::members`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberSelection {
    /// Every member, least recently evaluated first.
    ToRecheck,
    /// Members whose `max_dwell_at <= now`, earliest first.
    PastMaxDwell { now: Timestamp },
    /// Members for whom the dwell schedule is due at `now` by [`dwell_next_due`] (its base, the
    /// anchor or the last stamp, at or before [`MemberSelection::cutoff`]), least recently
    /// evaluated first.
    DueDwell {
        schedule: DwellSchedule,
        now: Timestamp,
    },
    /// Members whose `expires_at <= now`, earliest first.
    Expired { now: Timestamp },
}

impl MemberSelection {
    /// The instant the selected column must be at or before; none for [`Self::ToRecheck`].
    pub fn cutoff(self) -> Option<i64> {
        match self {
            MemberSelection::ToRecheck => None,
            MemberSelection::PastMaxDwell { now } | MemberSelection::Expired { now } => Some(now.0),
            MemberSelection::DueDwell { schedule, now } => {
                let offset = i64::try_from(schedule.offset_ms()).unwrap_or(i64::MAX);
                Some(now.0.saturating_sub(offset))
            }
        }
    }
}

/// The reads and writes of the passes, inside one of the store's write transactions. Every
/// read sees live contacts only and active, non-deleted memberships.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `MembershipTx`
pub trait ReconcileTx: MembershipTx {
    /// Serialise with ingest for this person before changing their memberships, refreshing
    /// `properties` if another writer may have changed them since they were read; false when
    /// the contact is no longer live.
    async fn lock_person(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        properties: &mut Map<String, Value>,
    ) -> StoreResult<bool>;
    /// Before a pass visits its people one by one ([`ReconcileTx::lock_person`]): lock them
    /// all at once, in the order ingest locks people in, so a pass and an ingest batch that
    /// share people never wait on each other in a cycle. Nothing to do for a store with one
    /// writer.
    async fn lock_people(&mut self, _tenant: &TenantId, _contact_keys: &[&str]) -> StoreResult<()> {
        Ok(())
    }
    /// Whether the bucket's first backfill has not completed: a `bucket_configs` row exists
    /// with no criteria fingerprint yet (no row: not gated).
    async fn first_backfill_pending(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<bool>;
    /// Up to `limit` of the bucket's active members, as `which` selects and orders them.
    async fn members(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        which: MemberSelection,
        limit: u32,
    ) -> StoreResult<Vec<ReconcileMember>>;
    /// The saved cursor of an absence leg's scan ([`absence::candidates`]), if any.
    async fn absence_cursor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
    ) -> StoreResult<Option<AbsenceCursor>>;
    /// Save an absence leg's cursor.
    async fn save_absence_cursor(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
        cursor: &AbsenceCursor,
    ) -> StoreResult<()>;
    /// When the bucket's last completed backfill started, if it had one.
    async fn backfill_started_at(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<Option<Timestamp>>;
    /// Up to `max_rows` of the tenant's events named `leg.event` after `from` and before
    /// `until`, in (occurred_at, id) order, each marked a candidate when it is its live
    /// person's last event of that name and the person is not an active member of the bucket.
    async fn absence_scan(
        &mut self,
        tenant: &TenantId,
        bucket_id: &str,
        leg: &EventQuery,
        from: &AbsenceCursor,
        until: i64,
        max_rows: u32,
    ) -> StoreResult<Vec<AbsenceRow>>;
    /// Mark members that still match evaluated at `at` and, with `disarm_expiry`, clear their
    /// expiry timer (`expires_at`), in one write; a membership another writer holds right now
    /// is skipped (that writer is moving the person: the next pass re-checks them).
    async fn mark_evaluated(
        &mut self,
        tenant: &TenantId,
        membership_ids: &[&str],
        at: Timestamp,
        disarm_expiry: bool,
    ) -> StoreResult<()>;
    /// Record that the dwell schedule `label` fired at `at` (and that the member was
    /// evaluated), if the membership is still active: whether it was.
    async fn stamp_dwell(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        label: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
}

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct PassOutcome {
    /// Rows the pass read (a full batch means there may be more).
    pub examined: usize,
    pub transitions: Vec<Transition>,
}

/// Run one pass of one bucket as of `now`, over at most `limit` rows.
pub async fn run_pass(
    tx: &mut impl ReconcileTx,
    bucket: &BucketDef,
    tenant: &TenantId,
    pass: Pass,
    now: Timestamp,
    limit: u32,
) -> StoreResult<PassOutcome> {
    let mut outcome = PassOutcome::default();
    let Some(criteria) = bucket.criteria.as_ref().filter(|_| bucket.is_evaluated()) else {
        return Ok(outcome);
    };
    if pass.gated_by_first_backfill() && tx.first_backfill_pending(tenant, &bucket.id).await? {
        return Ok(outcome);
    }
    let queries = criteria.event_queries();
    match pass {
        Pass::CriteriaLeaves | Pass::Expiry => {
            let members = if pass == Pass::Expiry {
                let expired = MemberSelection::Expired { now };
                tx.members(tenant, &bucket.id, expired, limit).await?
            } else {
                let all = MemberSelection::ToRecheck;
                tx.members(tenant, &bucket.id, all, limit).await?
            };
            outcome.examined = members.len();
            // Most members still match: that is read without their locks, and they are
            // marked evaluated together at the end, so a pass holds only the locks of the
            // people it moves (ingest batches wait on none of the rest). A concurrent ingest
            // that changes a person re-evaluates them itself.
            let mut still_matching = Vec::with_capacity(members.len());
            let mut movers = Vec::new();
            for member in members {
                let counts = tx
                    .event_counts(tenant, &member.contact_key, &queries, now)
                    .await?;
                if evaluate(criteria, &member.properties, &counts) {
                    still_matching.push(member);
                } else {
                    movers.push(member);
                }
            }
            // The movers are checked again under their locks, taken together in order.
            lock_members(tx, tenant, &movers).await?;
            for mut member in movers {
                let (key, props) = (&member.contact_key, &mut member.properties);
                match matches_now(tx, tenant, key, props, criteria, &queries, now).await? {
                    None => {}
                    Some(true) => still_matching.push(member),
                    Some(false) => {
                        let left =
                            leave_by_clock(tx, bucket, tenant, &member, LeaveReason::Criteria, now)
                                .await?;
                        outcome.transitions.extend(left);
                    }
                }
            }
            // Still matching: a re-checked member is marked evaluated; an expiry timer is
            // disarmed too (the criteria pass stays its backstop).
            let ids: Vec<&str> = still_matching
                .iter()
                .map(|m| m.membership.id.as_str())
                .collect();
            tx.mark_evaluated(tenant, &ids, now, pass == Pass::Expiry)
                .await?;
        }
        Pass::AbsenceJoins => {
            let mut candidates = Vec::new();
            for leg in absence_legs(criteria) {
                candidates
                    .extend(absence::candidates(tx, tenant, &bucket.id, &leg, now, limit).await?);
            }
            outcome.examined = candidates.len();
            let keys: Vec<&str> = candidates.iter().map(|c| c.contact_key.as_str()).collect();
            tx.lock_people(tenant, &keys).await?;
            for mut candidate in candidates {
                let key = &candidate.contact_key;
                let props = &mut candidate.properties;
                if matches_now(tx, tenant, key, props, criteria, &queries, now).await? != Some(true)
                {
                    continue;
                }
                let joined = membership::join(
                    tx,
                    bucket,
                    tenant,
                    &candidate.contact_key,
                    Source::Reconcile,
                    now,
                )
                .await?;
                outcome.transitions.extend(joined);
            }
        }
        Pass::MaxDwell => {
            let past = MemberSelection::PastMaxDwell { now };
            let members = tx.members(tenant, &bucket.id, past, limit).await?;
            outcome.examined = members.len();
            lock_members(tx, tenant, &members).await?;
            for mut member in members {
                if !tx
                    .lock_person(tenant, &member.contact_key, &mut member.properties)
                    .await?
                {
                    continue;
                }
                let left =
                    leave_by_clock(tx, bucket, tenant, &member, LeaveReason::MaxDwell, now).await?;
                outcome.transitions.extend(left);
            }
        }
        Pass::Dwell(schedule) => {
            let label = schedule.label();
            let due = MemberSelection::DueDwell { schedule, now };
            let members = tx.members(tenant, &bucket.id, due, limit).await?;
            outcome.examined = members.len();
            lock_members(tx, tenant, &members).await?;
            for mut member in members {
                let Some(count) = dwell_due(
                    schedule,
                    member.dwell_anchor,
                    member.last_fired(&label),
                    now,
                ) else {
                    continue;
                };
                if !tx
                    .lock_person(tenant, &member.contact_key, &mut member.properties)
                    .await?
                {
                    continue;
                }
                // Stamp and emit in one transaction: a crash loses neither or both, and the
                // key (epoch and ordinal) absorbs a retry.
                if !tx
                    .stamp_dwell(tenant, &member.membership.id, &label, now)
                    .await?
                {
                    continue;
                }
                outcome.transitions.push(Transition {
                    bucket_id: bucket.id.clone(),
                    bucket_name: bucket.name.clone(),
                    contact_key: member.contact_key.clone(),
                    kind: TransitionKind::Dwell {
                        label: label.clone(),
                        count,
                    },
                    entry_count: member.membership.entry_count,
                    source: Source::Reconcile,
                    emit: true,
                });
            }
        }
    }
    Ok(outcome)
}

/// Whether the person matches `criteria` at `now`, read under their lock (`properties`
/// refreshed if another writer changed them); `None` when the contact is no longer live.
async fn matches_now(
    tx: &mut impl ReconcileTx,
    tenant: &TenantId,
    contact_key: &str,
    properties: &mut Map<String, Value>,
    criteria: &Condition,
    queries: &[EventQuery],
    now: Timestamp,
) -> StoreResult<Option<bool>> {
    if !tx.lock_person(tenant, contact_key, properties).await? {
        return Ok(None);
    }
    let counts = tx.event_counts(tenant, contact_key, queries, now).await?;
    Ok(Some(evaluate(criteria, properties, &counts)))
}

/// [`ReconcileTx::lock_people`] for a page of members.
async fn lock_members(
    tx: &mut impl ReconcileTx,
    tenant: &TenantId,
    members: &[ReconcileMember],
) -> StoreResult<()> {
    let keys: Vec<&str> = members.iter().map(|m| m.contact_key.as_str()).collect();
    tx.lock_people(tenant, &keys).await
}

/// A member leaves by the job: the leave rule of every writer, as [`Source::Reconcile`].
async fn leave_by_clock(
    tx: &mut impl ReconcileTx,
    bucket: &BucketDef,
    tenant: &TenantId,
    member: &ReconcileMember,
    reason: LeaveReason,
    now: Timestamp,
) -> StoreResult<Option<Transition>> {
    membership::leave_as(
        tx,
        bucket,
        tenant,
        &member.contact_key,
        &member.membership,
        reason,
        Source::Reconcile,
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::{ReactionDef, ReactionOn};
    use serde_json::json;

    const DAY: u64 = 86_400_000;

    fn bucket(criteria: Value) -> BucketDef {
        BucketDef::computed("b", "B", Some(Condition::from_json(&criteria).unwrap()))
    }

    fn dormant() -> Value {
        json!({"type": "all", "conditions": [
            {"type": "event", "event": "app.active", "check": "exists"},
            {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 7 * DAY},
        ]})
    }

    #[test]
    fn given_a_lapsed_active_bucket_when_planned_then_it_sweeps_leaves_and_joins() {
        assert_eq!(
            passes(&bucket(dormant())),
            [Pass::CriteriaLeaves, Pass::AbsenceJoins]
        );
    }

    #[test]
    fn given_a_property_bucket_when_planned_then_only_its_dwell_and_ttl_run() {
        let mut b = bucket(
            json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"}),
        );
        assert!(passes(&b).is_empty(), "the clock cannot move it");
        b.max_dwell_ms = Some(DAY);
        b.reactions.push(ReactionDef {
            journey_id: "j".into(),
            handler: "j".into(),
            on: ReactionOn::Dwell {
                schedule: DwellSchedule::After(3 * DAY),
            },
        });
        assert_eq!(
            passes(&b),
            [Pass::MaxDwell, Pass::Dwell(DwellSchedule::After(3 * DAY))]
        );
        b.enabled = false;
        assert!(passes(&b).is_empty(), "a disabled bucket is never swept");
    }

    #[test]
    fn given_a_positive_window_when_planned_then_there_is_no_join_scan() {
        let b = bucket(
            json!({"type": "event", "event": "feature.used", "check": "count",
            "operator": "gte", "value": 5, "withinMs": 7 * DAY}),
        );
        assert_eq!(passes(&b), [Pass::CriteriaLeaves]);
    }

    #[test]
    fn given_an_after_dwell_when_due_then_it_fires_once_per_membership() {
        let s = DwellSchedule::After(3 * DAY);
        let anchor = Timestamp(0);
        assert_eq!(
            dwell_due(s, anchor, None, Timestamp(3 * DAY as i64 - 1)),
            None
        );
        assert_eq!(
            dwell_due(s, anchor, None, Timestamp(3 * DAY as i64)),
            Some(1)
        );
        assert_eq!(
            dwell_due(
                s,
                anchor,
                Some(Timestamp(3 * DAY as i64)),
                Timestamp(9 * DAY as i64)
            ),
            None
        );
    }

    #[test]
    fn given_an_every_dwell_after_an_outage_when_due_then_it_fires_once_with_the_interval_index() {
        let s = DwellSchedule::Every(DAY);
        let anchor = Timestamp(0);
        let day = |n: i64| Timestamp(n * DAY as i64);
        assert_eq!(dwell_due(s, anchor, None, day(1)), Some(1));
        // Fired at day 1, then nothing ran until day 4 and a half.
        let at = Timestamp(4 * DAY as i64 + DAY as i64 / 2);
        assert_eq!(dwell_due(s, anchor, Some(day(1)), at), Some(4));
        // Fired at day 4.5: the next is due a day later, at ordinal 5.
        assert_eq!(dwell_due(s, anchor, Some(at), day(5)), None);
        assert_eq!(
            dwell_next_due(s, anchor, Some(at)),
            Some(Timestamp(at.0 + DAY as i64))
        );
        assert_eq!(
            dwell_due(s, anchor, Some(at), Timestamp(at.0 + DAY as i64)),
            Some(5)
        );
    }

    #[test]
    fn given_a_composite_when_its_legs_are_listed_then_absences_are_the_windowed_not_exists() {
        let criteria = Condition::from_json(&dormant()).unwrap();
        assert_eq!(
            absence_legs(&criteria),
            [EventQuery {
                event: "app.active".into(),
                within_ms: Some(7 * DAY)
            }]
        );
        assert_eq!(window_legs(&criteria).len(), 1);
    }
}
