//! Backfill: computing a bucket's members from history when the bucket first appears or its
//! criteria change (domain-spec §2.11). This module decides; the store runs it inside its
//! transactions over [`MembershipTx`], and the job runner ([`crate::backfill_job`]) drives it.
//!
//! * [`on_register`]: when a tenant's modules are loaded, what the bucket's stored config
//!   (criteria fingerprint and backfill state) becomes: nothing, a first-time backfill, or a
//!   re-evaluation after a criteria change.
//! * [`apply_to_contact`]: one contact of the scan: evaluate the criteria with the one
//!   evaluator real time uses ([`evaluate`]) and join (silently: no transition event is
//!   returned for a join) or, in a re-evaluation, leave with a `bucket:left` transition the
//!   store ingests like any other.
//! * [`anchor_event`]: which event's latest occurrence anchors a backfilled member's dwell
//!   clock (§2.11.4).
//!
//! It must not do I/O (no SQL, no clock reads: callers pass `now`).

use super::membership::{self, MembershipTx, Source, Transition};
use super::{BucketDef, Condition, EventCheck, LeaveReason, evaluate};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::error::StoreResult;
use serde::Serialize;
use serde_json::{Map, Value};

/// Why a backfill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BackfillMode {
    /// The bucket is new: its members are computed from history, silently.
    #[serde(rename = "first-time")]
    FirstTime,
    /// Its criteria changed: new matchers join silently, members who no longer match leave
    /// with `bucket:left` (reason `criteria`, source `backfill`).
    #[serde(rename = "reeval")]
    Reeval,
}

impl BackfillMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillMode::FirstTime => "first-time",
            BackfillMode::Reeval => "reeval",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [BackfillMode::FirstTime, BackfillMode::Reeval]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// Where a bucket's backfill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillState {
    Pending,
    Running,
    Completed,
    Failed,
}

impl BackfillState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Pending => "pending",
            BackfillState::Running => "running",
            BackfillState::Completed => "completed",
            BackfillState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            BackfillState::Pending,
            BackfillState::Running,
            BackfillState::Completed,
            BackfillState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Pending or running: a worker has (or will have) it.
    pub fn is_open(self) -> bool {
        matches!(self, BackfillState::Pending | BackfillState::Running)
    }
}

/// What the store holds for one bucket (the part [`on_register`] reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConfig {
    /// The fingerprint the members were last completely computed with.
    pub criteria_hash: Option<String>,
    pub state: BackfillState,
    pub mode: BackfillMode,
    /// The fingerprint the open (or last) backfill computes.
    pub target_hash: String,
}

/// What registering a bucket changes in its stored config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Up to date, or its backfill of these criteria is already queued, running or failed
    /// (a failed one waits for an explicit restart).
    Keep,
    /// (Re)start a backfill of `target_hash` from the beginning: state pending, progress and
    /// error cleared.
    Enqueue {
        mode: BackfillMode,
        target_hash: String,
    },
    /// The criteria went back to the ones the members were computed with before an open
    /// backfill of other criteria ran: drop it (state completed, target = current).
    Settle,
}

/// Registering an enabled computed bucket whose criteria fingerprint is `current`, given what
/// the store holds (domain-spec §2.11.2): no row ⇒ first-time; a changed fingerprint ⇒
/// re-evaluation; the same ⇒ nothing.
pub fn on_register(stored: Option<&StoredConfig>, current: &str) -> ConfigChange {
    let Some(stored) = stored else {
        return ConfigChange::Enqueue {
            mode: BackfillMode::FirstTime,
            target_hash: current.to_owned(),
        };
    };
    match stored.criteria_hash.as_deref() {
        // Never completed: keep the first-time backfill, retargeted if the criteria moved.
        None if stored.target_hash == current => ConfigChange::Keep,
        None => ConfigChange::Enqueue {
            mode: BackfillMode::FirstTime,
            target_hash: current.to_owned(),
        },
        Some(done) if done == current => {
            if stored.target_hash == current {
                ConfigChange::Keep
            } else {
                ConfigChange::Settle
            }
        }
        Some(_) if stored.target_hash == current && stored.state != BackfillState::Completed => {
            ConfigChange::Keep
        }
        Some(_) => ConfigChange::Enqueue {
            mode: BackfillMode::Reeval,
            target_hash: current.to_owned(),
        },
    }
}

/// The mode an explicit restart of a bucket's backfill runs in: first-time until one
/// completed, else a re-evaluation (which also makes members who no longer match leave).
pub fn restart_mode(criteria_hash: Option<&str>) -> BackfillMode {
    match criteria_hash {
        None => BackfillMode::FirstTime,
        Some(_) => BackfillMode::Reeval,
    }
}

/// The event whose latest occurrence anchors a backfilled member's dwell clock (§2.11.4):
/// the event of criteria that are one windowed event node, or the shared event of the
/// lapsed-active composite (`all` of "X exists" and "X not within a window"). `None` for any
/// other shape: the dwell clock then starts at the join.
pub fn anchor_event(criteria: &Condition) -> Option<&str> {
    match criteria {
        Condition::Event(e) if e.within_ms.is_some() => Some(&e.event),
        Condition::All(legs) if legs.len() == 2 => match (&legs[0], &legs[1]) {
            (Condition::Event(a), Condition::Event(b)) if a.event == b.event => {
                let lapsed = |ever: &super::EventCondition, recent: &super::EventCondition| {
                    ever.check == EventCheck::Exists
                        && ever.within_ms.is_none()
                        && recent.check == EventCheck::NotExists
                        && recent.within_ms.is_some()
                };
                (lapsed(a, b) || lapsed(b, a)).then_some(a.event.as_str())
            }
            _ => None,
        },
        _ => None,
    }
}

/// The event of criteria that are one bare windowed absence (`not_exists` within a window):
/// such a bucket holds *lapsed* people only (§2.11.3, §2.16). Real time never joins anyone
/// into it (the only event it names makes the person a non-member) and the clock joins only
/// people whose last such event left the window ([`super::absence`]); someone who never fired
/// it is joined by neither, so the backfill must not join them either, or membership would
/// depend on which path evaluated it.
pub fn lapsed_only_event(criteria: &Condition) -> Option<&str> {
    match criteria {
        Condition::Event(e) if e.check == EventCheck::NotExists && e.within_ms.is_some() => {
            Some(&e.event)
        }
        _ => None,
    }
}

/// What the scan did with one contact.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactOutcome {
    /// Matches and was not a member: joined (no transition event).
    Joined,
    /// A member who no longer matches (re-evaluation only): the leave to ingest.
    Left(Transition),
    /// Nothing to write: a member who still matches, a non-member who does not, a join or
    /// leave another writer made first, or a first-time backfill's non-matching member.
    Unchanged,
}

/// One live contact of a backfill's scan, inside the store's transaction: evaluate the
/// bucket's criteria at `now` on the contact's stored properties and event counts, then apply
/// the join rule (source `backfill`; the transition is dropped: historical joins never emit)
/// or, in a re-evaluation, the leave rule (reason `criteria`, source `backfill`, never
/// deferred by `minDwell`).
pub async fn apply_to_contact(
    tx: &mut impl MembershipTx,
    bucket: &BucketDef,
    mode: BackfillMode,
    tenant: &TenantId,
    contact_key: &str,
    properties: &Map<String, Value>,
    now: Timestamp,
) -> StoreResult<ContactOutcome> {
    let Some(criteria) = bucket.criteria.as_ref() else {
        return Ok(ContactOutcome::Unchanged);
    };
    let mut queries = criteria.event_queries();
    let lapsed_only = lapsed_only_event(criteria).map(|event| super::EventQuery {
        event: event.to_owned(),
        within_ms: None,
    });
    if let Some(ever) = &lapsed_only
        && !queries.contains(ever)
    {
        queries.push(ever.clone());
    }
    let counts = if queries.is_empty() {
        super::EventCounts::new()
    } else {
        tx.event_counts(tenant, contact_key, &queries, now).await?
    };
    let is_member = evaluate(criteria, properties, &counts)
        && lapsed_only.is_none_or(|ever| counts.get(&ever.event, None).unwrap_or(0) > 0);
    let active = membership::active_membership(tx, tenant, &bucket.id, contact_key).await?;
    Ok(match (active, is_member) {
        (None, true) => {
            match membership::join(tx, bucket, tenant, contact_key, Source::Backfill, now).await? {
                Some(_) => ContactOutcome::Joined,
                None => ContactOutcome::Unchanged,
            }
        }
        (Some(active), false) if mode == BackfillMode::Reeval => {
            match membership::leave_as(
                tx,
                bucket,
                tenant,
                contact_key,
                &active,
                LeaveReason::Criteria,
                Source::Backfill,
                now,
            )
            .await?
            {
                Some(transition) => ContactOutcome::Left(transition),
                None => ContactOutcome::Unchanged,
            }
        }
        _ => ContactOutcome::Unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(
        criteria_hash: Option<&str>,
        state: BackfillState,
        mode: BackfillMode,
        target: &str,
    ) -> StoredConfig {
        StoredConfig {
            criteria_hash: criteria_hash.map(str::to_owned),
            state,
            mode,
            target_hash: target.into(),
        }
    }

    fn enqueue(mode: BackfillMode, target: &str) -> ConfigChange {
        ConfigChange::Enqueue {
            mode,
            target_hash: target.into(),
        }
    }

    use BackfillMode::{FirstTime, Reeval};
    use BackfillState::{Completed, Failed, Pending, Running};

    #[test]
    fn given_a_new_bucket_when_registered_then_a_first_time_backfill_is_queued() {
        assert_eq!(on_register(None, "a"), enqueue(FirstTime, "a"));
    }

    #[test]
    fn given_unchanged_criteria_when_registered_then_nothing_changes() {
        let done = stored(Some("a"), Completed, FirstTime, "a");
        assert_eq!(on_register(Some(&done), "a"), ConfigChange::Keep);
        for state in [Pending, Running, Failed] {
            let open = stored(None, state, FirstTime, "a");
            assert_eq!(
                on_register(Some(&open), "a"),
                ConfigChange::Keep,
                "{state:?}"
            );
            let reeval = stored(Some("old"), state, Reeval, "a");
            assert_eq!(on_register(Some(&reeval), "a"), ConfigChange::Keep);
        }
    }

    #[test]
    fn given_changed_criteria_when_registered_then_a_reevaluation_is_queued() {
        let done = stored(Some("a"), Completed, FirstTime, "a");
        assert_eq!(on_register(Some(&done), "b"), enqueue(Reeval, "b"));
        let running = stored(Some("a"), Running, Reeval, "b");
        assert_eq!(on_register(Some(&running), "c"), enqueue(Reeval, "c"));
    }

    #[test]
    fn given_a_first_backfill_that_never_completed_when_criteria_change_then_it_restarts_first_time()
     {
        let open = stored(None, Running, FirstTime, "a");
        assert_eq!(on_register(Some(&open), "b"), enqueue(FirstTime, "b"));
    }

    #[test]
    fn given_criteria_changed_back_before_the_reevaluation_ran_then_it_is_dropped() {
        let queued = stored(Some("a"), Pending, Reeval, "b");
        assert_eq!(on_register(Some(&queued), "a"), ConfigChange::Settle);
        let failed = stored(Some("a"), Failed, Reeval, "b");
        assert_eq!(on_register(Some(&failed), "a"), ConfigChange::Settle);
    }

    fn criteria(value: serde_json::Value) -> Condition {
        Condition::from_json(&value).unwrap()
    }

    #[test]
    fn given_the_anchored_shapes_when_asked_then_the_anchor_event_is_named() {
        let windowed = criteria(
            json!({"type": "event", "event": "login", "check": "not_exists",
                                       "withinMs": 1000}),
        );
        assert_eq!(anchor_event(&windowed), Some("login"));
        let lapsed = criteria(json!({"type": "all", "conditions": [
            {"type": "event", "event": "app.active", "check": "exists"},
            {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 1000}]}));
        assert_eq!(anchor_event(&lapsed), Some("app.active"));
    }

    #[test]
    fn given_other_shapes_when_asked_then_there_is_no_anchor() {
        for value in [
            json!({"type": "event", "event": "login", "check": "exists"}),
            json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"}),
            json!({"type": "all", "conditions": [
                {"type": "event", "event": "a", "check": "exists"},
                {"type": "event", "event": "b", "check": "not_exists", "withinMs": 1000}]}),
            json!({"type": "any", "conditions": [
                {"type": "event", "event": "a", "check": "exists"},
                {"type": "event", "event": "a", "check": "not_exists", "withinMs": 1000}]}),
        ] {
            assert_eq!(anchor_event(&criteria(value.clone())), None, "{value}");
        }
    }

    #[test]
    fn given_modes_and_states_when_written_then_they_parse_back() {
        for mode in [FirstTime, Reeval] {
            assert_eq!(BackfillMode::parse(mode.as_str()), Some(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        for state in [Pending, Running, Completed, Failed] {
            assert_eq!(BackfillState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
        }
        assert_eq!(restart_mode(None), FirstTime);
        assert_eq!(restart_mode(Some("a")), Reeval);
    }
}
