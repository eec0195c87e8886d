//! Where bucket transitions happen: the join and leave rules, run inside the ingest
//! transaction that stored an event (and by the manual-membership API), over the membership
//! primitives a store backend provides ([`MembershipTx`]).
//!
//! Real time: after an event is stored and its contact resolved, [`evaluate_event`] re-evaluates
//! only the buckets the event can change (the registry's inverted indexes), compares with the
//! person's active membership and joins or leaves. A join writes a new membership row (its
//! epoch is 1 + every earlier row), a leave closes the active one with a compare-and-swap; each
//! answers a [`Transition`], which the store then ingests as a `bucket:entered:<id>` /
//! `bucket:left:<id>` event ([`Transition::event`]) with a deterministic idempotency key, so
//! concurrent writers converge on one stored transition. Transition events never re-enter
//! evaluation (the registry's recursion guard).
//!
//! This module decides; it must not speak SQL: the store implements [`MembershipTx`].

use super::{ANY_ENTERED_EVENT, ANY_LEFT_EVENT, dwell_event, entered_event, left_event};
use super::{
    BucketDef, BucketRegistry, Condition, EventCounts, EventQuery, LeaveReason, decide, evaluate,
};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::journeys::EntryLimit;
use crate::store::error::StoreResult;
use serde_json::{Map, Value, json};

/// What made a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Real-time evaluation of an ingested event.
    Event,
    /// The membership API (manual buckets).
    Manual,
    /// A backfill computing members from history ([`super::backfill`]).
    Backfill,
    /// The clock: the reconcile job's passes and fast expiry.
    Reconcile,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Event => "event",
            Source::Manual => "manual",
            Source::Backfill => "backfill",
            Source::Reconcile => "reconcile",
        }
    }
}

/// A person's active membership of one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveMembership {
    pub id: String,
    pub bucket_id: String,
    pub entry_count: u32,
    pub entered_at: Timestamp,
}

/// What earlier memberships of one person in one bucket say: how many rows (any status), and
/// when the most recent one left.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MembershipHistory {
    pub rows: u32,
    pub last_left_at: Option<Timestamp>,
}

impl MembershipHistory {
    /// The epoch of the next membership: 1 + every earlier row.
    pub fn next_epoch(&self) -> u32 {
        self.rows.saturating_add(1)
    }
}

/// A membership row to insert (status active); the store numbers its epoch
/// ([`MembershipHistory::next_epoch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMembership {
    pub id: String,
    pub tenant_id: TenantId,
    pub bucket_id: String,
    pub contact_key: String,
    pub source: Source,
    pub entered_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub max_dwell_at: Option<Timestamp>,
}

/// The membership primitives a backend provides inside an open write transaction.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait MembershipTx {
    /// The person's events for each query: by name, within the query's window on
    /// occurred-at (inclusive, measured back from `now`).
    async fn event_counts(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<EventCounts>;
    /// Every active membership of the person.
    async fn active_memberships(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>>;
    /// What real-time evaluation reads: the counts for `queries` (empty when none are asked)
    /// and the person's active memberships. A backend for which each read is a round trip
    /// answers both in one.
    async fn evaluation_reads(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        queries: &[EventQuery],
        now: Timestamp,
    ) -> StoreResult<(EventCounts, Vec<ActiveMembership>)> {
        let counts = if queries.is_empty() {
            EventCounts::new()
        } else {
            self.event_counts(tenant, contact_key, queries, now).await?
        };
        Ok((counts, self.active_memberships(tenant, contact_key).await?))
    }
    /// Insert the person's next membership of the bucket, numbered from every earlier row
    /// ([`MembershipHistory::next_epoch`]), unless they already have an active one (another
    /// writer won): the history it was numbered from, or `None` when nothing was inserted.
    async fn insert_next_membership(
        &mut self,
        membership: &NewMembership,
    ) -> StoreResult<Option<MembershipHistory>>;
    /// Close the membership if it is still active (compare-and-swap): whether it was.
    async fn leave_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        reason: LeaveReason,
    ) -> StoreResult<bool>;
    /// A stable member was evaluated again (and, for a deferred leave, when it may happen).
    async fn touch_membership(
        &mut self,
        tenant: &TenantId,
        membership_id: &str,
        at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> StoreResult<()>;
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransitionKind {
    Entered,
    Left(LeaveReason),
    /// A dwell reaction's schedule came due: `label` is the schedule's, `count` the ordinal
    /// (1 for `after`, the interval index for `every`). The membership does not change.
    Dwell {
        label: String,
        count: u64,
    },
}

/// A membership change. `emit` is false for a join the bucket's entry limit keeps quiet: the
/// row and the epoch still advance, but no event is ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub bucket_id: String,
    pub bucket_name: String,
    pub contact_key: String,
    pub kind: TransitionKind,
    pub entry_count: u32,
    pub source: Source,
    pub emit: bool,
}

/// A transition as the event ingest stores (and routes to journeys).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionEvent {
    pub name: String,
    pub idempotency_key: String,
    pub properties: Map<String, Value>,
}

impl Transition {
    /// `entered`, `left` or `dwell`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            TransitionKind::Entered => "entered",
            TransitionKind::Left(_) => "left",
            TransitionKind::Dwell { .. } => "dwell",
        }
    }

    /// The per-bucket event, `bucket:entered:<id>` / `bucket:left:<id>`, with idempotency key
    /// `bucket:<id>:<person>:<entered|left>:<epoch>`: every writer of the same transition
    /// computes the same key, so it is stored once. A dwell is `bucket:dwell:<id>:<label>`
    /// with key `bucket:<id>:<person>:dwell:<label>:<epoch>:<ordinal>` — the epoch makes a
    /// re-joined membership's dwell fire again.
    pub fn event(&self) -> TransitionEvent {
        let name = match &self.kind {
            TransitionKind::Entered => entered_event(&self.bucket_id),
            TransitionKind::Left(_) => left_event(&self.bucket_id),
            TransitionKind::Dwell { label, .. } => dwell_event(&self.bucket_id, label),
        };
        let mut properties = json!({
            "bucketId": self.bucket_id,
            "bucketName": self.bucket_name,
            "userId": self.contact_key,
            "transition": self.label(),
            "source": self.source.as_str(),
            "entryCount": self.entry_count,
        });
        let mut idempotency_key = format!(
            "bucket:{}:{}:{}:",
            self.bucket_id,
            self.contact_key,
            self.label()
        );
        match &self.kind {
            TransitionKind::Entered => properties["isFirstEntry"] = json!(self.entry_count == 1),
            TransitionKind::Left(reason) => properties["reason"] = json!(reason.as_str()),
            TransitionKind::Dwell { label, count } => {
                properties["dwellLabel"] = json!(label);
                properties["dwellCount"] = json!(count);
                idempotency_key.push_str(label);
                idempotency_key.push(':');
            }
        }
        idempotency_key.push_str(&self.entry_count.to_string());
        if let TransitionKind::Dwell { count, .. } = &self.kind {
            idempotency_key.push_str(&format!(":{count}"));
        }
        TransitionEvent {
            name,
            idempotency_key,
            properties: match properties {
                Value::Object(map) => map,
                _ => unreachable!("built as an object"),
            },
        }
    }

    /// The generic form, `bucket:entered` / `bucket:left`, ingested only when some journey
    /// is bound to it; its key is the per-bucket key plus `:generic`. A dwell has none.
    pub fn generic_event(&self) -> Option<TransitionEvent> {
        let name = self.generic_name()?;
        let mut event = self.event();
        event.name = name.to_owned();
        event.idempotency_key.push_str(":generic");
        Some(event)
    }

    /// The name of [`Transition::generic_event`], if the transition has a generic form.
    pub fn generic_name(&self) -> Option<&'static str> {
        match self.kind {
            TransitionKind::Entered => Some(ANY_ENTERED_EVENT),
            TransitionKind::Left(_) => Some(ANY_LEFT_EVENT),
            TransitionKind::Dwell { .. } => None,
        }
    }
}

/// What may have moved a person's buckets.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    /// The ingested event's name and properties; `None` for a contact update without one.
    pub event: Option<(&'a str, &'a Map<String, Value>)>,
    /// The contact properties whose value changed ([`crate::store::Resolution`]): a property
    /// sent again with the value the contact already has cannot move a bucket.
    pub changed_properties: &'a [String],
}

/// Re-evaluate the buckets `cause` can change for the (live) contact and apply the join and
/// leave rules. `properties` are the contact's properties after the change.
pub async fn evaluate_event(
    tx: &mut impl MembershipTx,
    registry: &BucketRegistry,
    tenant: &TenantId,
    contact_key: &str,
    properties: &Map<String, Value>,
    cause: Cause<'_>,
    now: Timestamp,
) -> StoreResult<Vec<Transition>> {
    let (event_name, event_properties) = cause.event.unzip();
    let candidates: Vec<(&BucketDef, &Condition)> = registry
        .candidates(
            event_name,
            event_properties
                .into_iter()
                .flat_map(|p| p.keys().map(String::as_str)),
            cause.changed_properties.iter().map(String::as_str),
        )
        .filter_map(|bucket| Some((bucket, bucket.criteria.as_ref()?)))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // At most two reads per event (one where the backend can), whatever the number of
    // candidates: the counts of the buckets the properties leave undecided, and the person's
    // active memberships.
    let mut decisions: Vec<Option<bool>> = candidates
        .iter()
        .map(|(_, criteria)| decide(criteria, properties, &EventCounts::new()))
        .collect();
    let mut queries: Vec<EventQuery> = Vec::new();
    for (_, criteria) in candidates
        .iter()
        .zip(&decisions)
        .filter_map(|(candidate, decided)| decided.is_none().then_some(candidate))
    {
        for query in criteria.event_queries() {
            if !queries.contains(&query) {
                queries.push(query);
            }
        }
    }
    let (counts, memberships) = tx
        .evaluation_reads(tenant, contact_key, &queries, now)
        .await?;
    if !queries.is_empty() {
        for ((_, criteria), decided) in candidates.iter().zip(&mut decisions) {
            decided.get_or_insert_with(|| evaluate(criteria, properties, &counts));
        }
    }

    let mut transitions = Vec::new();
    for ((bucket, _), decided) in candidates.into_iter().zip(decisions) {
        let is_member = decided.unwrap_or(false); // every undecided bucket was counted above
        let active = memberships.iter().find(|m| m.bucket_id == bucket.id);
        let transition = match (active, is_member) {
            (None, true) => join(tx, bucket, tenant, contact_key, Source::Event, now).await?,
            // A stable member: nothing to write. (Rewriting `last_evaluated_at` on every event
            // would cost a random page write per member bucket per event; the clock-driven
            // sweeps keep their own order.)
            (Some(_), true) => None,
            (Some(active), false) => {
                leave(
                    tx,
                    bucket,
                    tenant,
                    contact_key,
                    active,
                    LeaveReason::Criteria,
                    now,
                )
                .await?
            }
            (None, false) => None,
        };
        transitions.extend(transition);
    }
    Ok(transitions)
}

/// The person's active membership of `bucket_id`, if any (for a manual removal).
pub async fn active_membership(
    tx: &mut impl MembershipTx,
    tenant: &TenantId,
    bucket_id: &str,
    contact_key: &str,
) -> StoreResult<Option<ActiveMembership>> {
    Ok(tx
        .active_memberships(tenant, contact_key)
        .await?
        .into_iter()
        .find(|m| m.bucket_id == bucket_id))
}

/// Join (spec §2.6): a new active row with the next epoch; `None` when another writer's
/// active row won. The entry limit gates only the emission.
pub async fn join(
    tx: &mut impl MembershipTx,
    bucket: &BucketDef,
    tenant: &TenantId,
    contact_key: &str,
    source: Source,
    now: Timestamp,
) -> StoreResult<Option<Transition>> {
    let membership = NewMembership {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.clone(),
        bucket_id: bucket.id.clone(),
        contact_key: contact_key.to_owned(),
        source,
        entered_at: now,
        expires_at: window_deadline(bucket, now),
        max_dwell_at: bucket.max_dwell_ms.map(|ms| now.plus_ms(ms)),
    };
    let Some(history) = tx.insert_next_membership(&membership).await? else {
        return Ok(None);
    };
    Ok(Some(Transition {
        bucket_id: bucket.id.clone(),
        bucket_name: bucket.name.clone(),
        contact_key: contact_key.to_owned(),
        kind: TransitionKind::Entered,
        entry_count: history.next_epoch(),
        source,
        emit: join_emits(bucket.entry_limit, &history, now),
    }))
}

/// Leave (spec §2.7): closes the active row unless `minDwell` defers it (computed leaves
/// only: a manual removal is never deferred); `None` when deferred or when another writer
/// already closed it. Leaves are never gated by the entry limit.
pub async fn leave(
    tx: &mut impl MembershipTx,
    bucket: &BucketDef,
    tenant: &TenantId,
    contact_key: &str,
    active: &ActiveMembership,
    reason: LeaveReason,
    now: Timestamp,
) -> StoreResult<Option<Transition>> {
    let source = if reason == LeaveReason::Manual {
        Source::Manual
    } else {
        Source::Event
    };
    leave_as(tx, bucket, tenant, contact_key, active, reason, source, now).await
}

/// [`leave`] by a given writer: the reconcile job passes [`Source::Reconcile`], a backfill
/// [`Source::Backfill`]. A backfill's re-evaluation leave is not deferred by `minDwell` (the
/// criteria changed; nothing would sweep it later).
#[allow(clippy::too_many_arguments)] // the leave context, spelled out
pub async fn leave_as(
    tx: &mut impl MembershipTx,
    bucket: &BucketDef,
    tenant: &TenantId,
    contact_key: &str,
    active: &ActiveMembership,
    reason: LeaveReason,
    source: Source,
    now: Timestamp,
) -> StoreResult<Option<Transition>> {
    if reason == LeaveReason::Criteria
        && source != Source::Backfill
        && let Some(min_dwell) = bucket.min_dwell_ms
    {
        let floor = active.entered_at.plus_ms(min_dwell);
        if now < floor {
            tx.touch_membership(tenant, &active.id, now, Some(floor))
                .await?;
            return Ok(None);
        }
    }
    if !tx.leave_membership(tenant, &active.id, now, reason).await? {
        return Ok(None);
    }
    Ok(Some(Transition {
        bucket_id: bucket.id.clone(),
        bucket_name: bucket.name.clone(),
        contact_key: contact_key.to_owned(),
        kind: TransitionKind::Left(reason),
        entry_count: active.entry_count,
        source,
        emit: true,
    }))
}

/// The emit gate of a join: a first entry always emits; then `unlimited` emits, `once` does
/// not, and `once per period` emits when the last leave is at least a period ago.
fn join_emits(limit: EntryLimit, history: &MembershipHistory, now: Timestamp) -> bool {
    if history.rows == 0 {
        return true;
    }
    match limit {
        EntryLimit::Unlimited => true,
        EntryLimit::Once => false,
        EntryLimit::OncePer(period_ms) => history.last_left_at.is_none_or(|left| {
            now.0.saturating_sub(left.0) >= i64::try_from(period_ms).unwrap_or(i64::MAX)
        }),
    }
}

/// When a time-based (or fast-expiry) bucket's criteria window would run out for a member who
/// joined now: `now` + the first window found, depth first. Informational (the reconcile sweep
/// of a later issue uses it); `None` for buckets the clock does not move.
pub(crate) fn window_deadline(bucket: &BucketDef, now: Timestamp) -> Option<Timestamp> {
    if !(bucket.is_time_based() || bucket.fast_expiry) {
        return None;
    }
    bucket
        .criteria
        .as_ref()?
        .leaves()
        .find_map(|leaf| match leaf {
            Condition::Event(event) => event.within_ms.map(|ms| now.plus_ms(ms)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person's memberships in memory, recording which counts evaluation asked for.
    #[derive(Default)]
    struct RecordingTx {
        counted: Vec<EventQuery>,
        answers: Vec<(EventQuery, u64)>,
        active: Vec<ActiveMembership>,
    }

    impl MembershipTx for RecordingTx {
        async fn event_counts(
            &mut self,
            _: &TenantId,
            _: &str,
            queries: &[EventQuery],
            _: Timestamp,
        ) -> StoreResult<EventCounts> {
            self.counted.extend(queries.iter().cloned());
            Ok(queries
                .iter()
                .map(|q| {
                    let answer = self.answers.iter().find(|(a, _)| a == q);
                    (q.clone(), answer.map_or(0, |(_, count)| *count))
                })
                .collect())
        }
        async fn active_memberships(
            &mut self,
            _: &TenantId,
            _: &str,
        ) -> StoreResult<Vec<ActiveMembership>> {
            Ok(self.active.clone())
        }
        /// Every join is the person's first: no earlier rows.
        async fn insert_next_membership(
            &mut self,
            m: &NewMembership,
        ) -> StoreResult<Option<MembershipHistory>> {
            let history = MembershipHistory::default();
            self.active.push(ActiveMembership {
                id: m.id.clone(),
                bucket_id: m.bucket_id.clone(),
                entry_count: history.next_epoch(),
                entered_at: m.entered_at,
            });
            Ok(Some(history))
        }
        async fn leave_membership(
            &mut self,
            _: &TenantId,
            id: &str,
            _: Timestamp,
            _: LeaveReason,
        ) -> StoreResult<bool> {
            let before = self.active.len();
            self.active.retain(|m| m.id != id);
            Ok(self.active.len() < before)
        }
        async fn touch_membership(
            &mut self,
            _: &TenantId,
            _: &str,
            _: Timestamp,
            _: Option<Timestamp>,
        ) -> StoreResult<()> {
            Ok(())
        }
    }

    /// `growing-teams`: 10+ seats and 2+ teammates invited, ever.
    fn growing_teams() -> BucketRegistry {
        BucketRegistry::from_buckets([BucketDef::computed(
            "growing-teams",
            "Growing teams",
            Some(
                Condition::from_json(&json!({"type": "all", "conditions": [
                    {"type": "property", "property": "seats", "operator": "gte", "value": 10},
                    {"type": "event", "event": "teammate.invited", "check": "count",
                     "operator": "gte", "value": 2}
                ]}))
                .unwrap(),
            ),
        )])
    }

    fn seats(n: u64) -> Map<String, Value> {
        match json!({ "seats": n }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    async fn evaluate_seats(tx: &mut RecordingTx, n: u64) -> Vec<Transition> {
        evaluate_page_view(tx, &seats(n), &["seats".to_owned()]).await
    }

    /// A `page.viewed` event for a person whose properties are now `properties`, having
    /// changed `changed`.
    async fn evaluate_page_view(
        tx: &mut RecordingTx,
        properties: &Map<String, Value>,
        changed: &[String],
    ) -> Vec<Transition> {
        let registry = growing_teams();
        let event_properties = Map::new();
        evaluate_event(
            tx,
            &registry,
            &TenantId("t".into()),
            "u1",
            properties,
            Cause {
                event: Some(("page.viewed", &event_properties)),
                changed_properties: changed,
            },
            Timestamp(1_000),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn given_a_property_sent_again_unchanged_when_evaluated_then_its_buckets_are_not_read() {
        // Given a person with 12 seats whose event sends seats: 12 again (nothing changed)
        let mut tx = RecordingTx {
            answers: vec![(
                EventQuery {
                    event: "teammate.invited".into(),
                    within_ms: None,
                },
                2,
            )],
            ..RecordingTx::default()
        };
        // When the event is evaluated
        let transitions = evaluate_page_view(&mut tx, &seats(12), &[]).await;
        // Then the bucket about seats is no candidate: nothing is counted, nothing moves
        assert!(transitions.is_empty());
        assert!(tx.counted.is_empty(), "counted {:?}", tx.counted);
    }

    #[tokio::test]
    async fn given_properties_that_decide_a_bucket_when_evaluated_then_no_event_is_counted() {
        let mut tx = RecordingTx::default();
        let transitions = evaluate_seats(&mut tx, 3).await;
        assert!(transitions.is_empty());
        assert!(tx.counted.is_empty(), "counted {:?}", tx.counted);
    }

    #[tokio::test]
    async fn given_properties_that_leave_a_bucket_open_when_evaluated_then_its_counts_decide() {
        let invited = EventQuery {
            event: "teammate.invited".into(),
            within_ms: None,
        };
        let mut tx = RecordingTx {
            answers: vec![(invited.clone(), 2)],
            ..RecordingTx::default()
        };
        let joined = evaluate_seats(&mut tx, 12).await;
        assert_eq!(tx.counted, vec![invited]);
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].kind, TransitionKind::Entered);
        // Seats drop below the threshold: the member leaves with no count asked.
        tx.counted.clear();
        let left = evaluate_seats(&mut tx, 4).await;
        assert!(tx.counted.is_empty());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].kind, TransitionKind::Left(LeaveReason::Criteria));
    }

    fn history(rows: u32, last_left_at: Option<i64>) -> MembershipHistory {
        MembershipHistory {
            rows,
            last_left_at: last_left_at.map(Timestamp),
        }
    }

    #[test]
    fn given_a_first_entry_when_gated_then_it_always_emits() {
        for limit in [
            EntryLimit::Once,
            EntryLimit::Unlimited,
            EntryLimit::OncePer(10),
        ] {
            assert!(join_emits(limit, &history(0, None), Timestamp(5)));
        }
    }

    #[test]
    fn given_an_entry_limit_of_once_when_the_person_rejoins_then_the_join_is_quiet() {
        assert!(!join_emits(
            EntryLimit::Once,
            &history(1, Some(3)),
            Timestamp(100)
        ));
        assert!(join_emits(
            EntryLimit::Unlimited,
            &history(4, Some(3)),
            Timestamp(100)
        ));
    }

    #[test]
    fn given_once_per_period_when_the_last_leave_is_exactly_a_period_ago_then_it_emits() {
        let limit = EntryLimit::OncePer(1_000);
        assert!(!join_emits(
            limit,
            &history(1, Some(9_001)),
            Timestamp(10_000)
        ));
        assert!(join_emits(
            limit,
            &history(1, Some(9_000)),
            Timestamp(10_000)
        ));
    }

    #[test]
    fn given_a_transition_when_turned_into_an_event_then_its_key_carries_the_epoch() {
        let transition = Transition {
            bucket_id: "power-users".into(),
            bucket_name: "Power users".into(),
            contact_key: "u1".into(),
            kind: TransitionKind::Left(LeaveReason::Criteria),
            entry_count: 2,
            source: Source::Event,
            emit: true,
        };
        let event = transition.event();
        assert_eq!(event.name, "bucket:left:power-users");
        assert_eq!(event.idempotency_key, "bucket:power-users:u1:left:2");
        assert_eq!(event.properties["reason"], json!("criteria"));
        assert_eq!(event.properties["entryCount"], json!(2));
        assert_eq!(event.properties["userId"], json!("u1"));
        let generic = transition.generic_event().unwrap();
        assert_eq!(generic.name, "bucket:left");
        assert_eq!(
            generic.idempotency_key,
            "bucket:power-users:u1:left:2:generic"
        );
    }

    #[test]
    fn given_a_first_entry_when_turned_into_an_event_then_it_says_so() {
        let transition = Transition {
            bucket_id: "b".into(),
            bucket_name: "B".into(),
            contact_key: "k".into(),
            kind: TransitionKind::Entered,
            entry_count: 1,
            source: Source::Manual,
            emit: true,
        };
        let event = transition.event();
        assert_eq!(event.properties["isFirstEntry"], json!(true));
        assert_eq!(event.properties["source"], json!("manual"));
        assert_eq!(event.idempotency_key, "bucket:b:k:entered:1");
    }
}
