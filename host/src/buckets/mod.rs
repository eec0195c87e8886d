//! Buckets: named, continuously maintained sets of contacts that modules declare.
//!
//! This module owns the bucket vocabulary — [`BucketDef`] and its reactions — the condition
//! language ([`criteria`]: the typed tree, its JSON form documented in `docs/criteria.md`,
//! the fingerprint), its validation ([`validate`]), its pure evaluation ([`eval`]: plan the
//! event counts, then evaluate) and the per-tenant in-memory [`registry`] with its inverted
//! indexes for narrowing the buckets an ingested event can affect.
//!
//! It must not do I/O: no SQL (membership rows and event counts belong to [`crate::store`]),
//! no clock reads (callers pass `now`), no module loading (that is [`crate::modules`]).

pub mod absence;
pub mod backfill_rules;
pub mod criteria;
pub mod eval;
pub mod membership;
pub mod reconcile_rules;
pub mod registry;
pub mod validate;

pub use criteria::{
    Condition, CountOperator, CriteriaError, EventCheck, EventCondition, PropertyCondition,
    PropertyTest,
};
pub use eval::{EventCounts, EventQuery, decide, evaluate};
pub use registry::{BucketRegistry, Candidates, DuplicateBucket, check_unique_bucket_ids};

use crate::journeys::EntryLimit;
use serde::Serialize;
use serde_json::{Value, json};

/// Every transition event's name starts with this; such events never re-enter bucket
/// evaluation (the recursion guard) and may not appear in criteria.
pub const BUCKET_EVENT_PREFIX: &str = "bucket:";

/// The generic events of every bucket's joins and leaves, ingested only when some journey is
/// bound to them.
pub const ANY_ENTERED_EVENT: &str = "bucket:entered";
pub const ANY_LEFT_EVENT: &str = "bucket:left";

/// The event a join emits: `bucket:entered:<id>`.
pub fn entered_event(bucket_id: &str) -> String {
    format!("{BUCKET_EVENT_PREFIX}entered:{bucket_id}")
}

/// The event a leave emits: `bucket:left:<id>`.
pub fn left_event(bucket_id: &str) -> String {
    format!("{BUCKET_EVENT_PREFIX}left:{bucket_id}")
}

/// The event a dwell reaction's schedule emits: `bucket:dwell:<id>:<label>`.
pub fn dwell_event(bucket_id: &str, label: &str) -> String {
    format!("{BUCKET_EVENT_PREFIX}dwell:{bucket_id}:{label}")
}

/// Whether `event_name` is a bucket transition event.
pub fn is_bucket_event(event_name: &str) -> bool {
    event_name.starts_with(BUCKET_EVENT_PREFIX)
}

/// Event properties a transition event carries (what reaction filters read).
pub mod transition_properties {
    /// `bool` on `bucket:entered:*`: this is the person's first entry.
    pub const IS_FIRST_ENTRY: &str = "isFirstEntry";
    /// Number on `bucket:entered:*`: 1 for the first entry.
    pub const ENTRY_COUNT: &str = "entryCount";
    /// String on `bucket:left:*`: a [`super::LeaveReason`].
    pub const REASON: &str = "reason";
    /// String on both: the bucket's display name.
    pub const BUCKET_NAME: &str = "bucketName";
    /// Number on `bucket:dwell:*`: 1 for an `after` dwell; the interval index since the
    /// dwell anchor for an `every` dwell.
    pub const DWELL_COUNT: &str = "dwellCount";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketKind {
    /// Membership follows the criteria, re-evaluated on ingest and by the clock.
    Computed,
    /// Membership is changed only through the API; never evaluated.
    Manual,
}

/// Why a member left a bucket (the `reason` property of `bucket:left:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LeaveReason {
    /// The criteria stopped matching.
    #[serde(rename = "criteria")]
    Criteria,
    /// The membership reached its maximum dwell.
    #[serde(rename = "maxDwell")]
    MaxDwell,
    /// Removed through the API.
    #[serde(rename = "manual")]
    Manual,
}

impl LeaveReason {
    pub const ALL: [LeaveReason; 3] = [
        LeaveReason::Criteria,
        LeaveReason::MaxDwell,
        LeaveReason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Criteria => "criteria",
            LeaveReason::MaxDwell => "maxDwell",
            LeaveReason::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A bucket as a module declared it, converted and validated
/// ([`crate::modules::manifest`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketDef {
    /// Unique across the tenant's modules; appears in transition event names.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// A disabled bucket is never evaluated, swept or backfilled.
    pub enabled: bool,
    pub kind: BucketKind,
    /// Present exactly for computed buckets.
    pub criteria: Option<Condition>,
    /// As declared; see [`BucketDef::is_time_based`].
    pub time_based: Option<bool>,
    /// Arm a per-membership timer for a near-instant leave on join.
    pub fast_expiry: bool,
    /// A leave waits until the membership is at least this old (anti-flap).
    pub min_dwell_ms: Option<u64>,
    /// Members are made to leave this long after they entered, whatever the criteria.
    pub max_dwell_ms: Option<u64>,
    /// Gates only the emission of `bucket:entered`; `OncePer`'s period is measured from the
    /// person's most recent prior leave.
    pub entry_limit: EntryLimit,
    pub reactions: Vec<ReactionDef>,
}

impl BucketDef {
    /// Whether the clock alone can change membership, so the reconcile sweep must visit it:
    /// as declared, else inferred (some event leg has a window).
    pub fn is_time_based(&self) -> bool {
        self.time_based
            .unwrap_or_else(|| self.criteria.as_ref().is_some_and(Condition::has_window))
    }

    /// Whether ingest evaluates this bucket: enabled, computed, with criteria.
    pub fn is_evaluated(&self) -> bool {
        self.enabled && self.kind == BucketKind::Computed && self.criteria.is_some()
    }

    /// [`Condition::fingerprint`] of the criteria; `None` for a manual bucket.
    pub fn criteria_fingerprint(&self) -> Option<String> {
        self.criteria.as_ref().map(Condition::fingerprint)
    }
}

/// A reaction: a journey the host runs when a person enters or leaves the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionDef {
    /// The desugared journey's id; must not collide with any other journey id.
    pub journey_id: String,
    /// What `invocation.handler` carries when the host runs it.
    pub handler: String,
    pub on: ReactionOn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ReactionOn {
    /// On `bucket:entered:<id>`; only on the first entry if `first_entry_only`.
    #[serde(rename_all = "camelCase")]
    Enter { first_entry_only: bool },
    /// On `bucket:left:<id>`; only for these reasons if given.
    Leave { reasons: Option<Vec<LeaveReason>> },
    /// On `bucket:dwell:<id>:<label>`, which the reconcile job emits once a membership has
    /// lasted long enough.
    Dwell { schedule: DwellSchedule },
}

/// When a dwell reaction fires, measured from the membership's dwell anchor (its entry, or
/// the historical anchor a backfill found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "ms")]
pub enum DwellSchedule {
    /// Once per membership, this many ms after the anchor.
    After(u64),
    /// Every this many ms after the anchor while the membership lasts (a missed interval is
    /// coalesced into one fire).
    Every(u64),
}

impl DwellSchedule {
    /// The schedule's offset in ms.
    pub fn offset_ms(self) -> u64 {
        match self {
            DwellSchedule::After(ms) | DwellSchedule::Every(ms) => ms,
        }
    }

    /// `after-<ms>` / `every-<ms>`: part of the event name, the journey id and the key.
    pub fn label(self) -> String {
        match self {
            DwellSchedule::After(ms) => format!("after-{ms}"),
            DwellSchedule::Every(ms) => format!("every-{ms}"),
        }
    }
}

impl ReactionOn {
    /// `"enter"`, `"leave"` or `"dwell"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReactionOn::Enter { .. } => "enter",
            ReactionOn::Leave { .. } => "leave",
            ReactionOn::Dwell { .. } => "dwell",
        }
    }

    /// What two reactions of one bucket must not share: the kind, and for a dwell its label.
    pub fn slot(&self) -> String {
        match self {
            ReactionOn::Dwell { schedule } => format!("dwell {}", schedule.label()),
            other => other.kind().to_owned(),
        }
    }

    /// The transition event that triggers the reaction's journey.
    pub fn trigger_event(&self, bucket_id: &str) -> String {
        match self {
            ReactionOn::Enter { .. } => entered_event(bucket_id),
            ReactionOn::Leave { .. } => left_event(bucket_id),
            ReactionOn::Dwell { schedule } => dwell_event(bucket_id, &schedule.label()),
        }
    }

    /// The condition on the transition event's properties that must hold for the journey to
    /// start: `isFirstEntry == true` for first-entry-only, `reason in [...]` for a reason list.
    pub fn trigger_filter(&self) -> Option<Condition> {
        match self {
            ReactionOn::Enter {
                first_entry_only: true,
            } => Some(Condition::Property(PropertyCondition {
                property: transition_properties::IS_FIRST_ENTRY.into(),
                test: PropertyTest::Eq(Value::Bool(true)),
            })),
            ReactionOn::Leave {
                reasons: Some(reasons),
            } => Some(Condition::Property(PropertyCondition {
                property: transition_properties::REASON.into(),
                test: PropertyTest::In(reasons.iter().map(|r| json!(r.as_str())).collect()),
            })),
            _ => None,
        }
    }
}

impl BucketDef {
    /// The schedules of the bucket's dwell reactions.
    pub fn dwell_schedules(&self) -> impl Iterator<Item = DwellSchedule> + '_ {
        self.reactions.iter().filter_map(|r| match r.on {
            ReactionOn::Dwell { schedule } => Some(schedule),
            _ => None,
        })
    }
}

/// Test buckets: computed and enabled, with no dwell bounds, entry limit or reactions.
#[cfg(test)]
impl BucketDef {
    pub(crate) fn computed(id: &str, name: &str, criteria: Option<Condition>) -> BucketDef {
        BucketDef {
            id: id.into(),
            name: name.into(),
            description: None,
            enabled: true,
            kind: BucketKind::Computed,
            criteria,
            time_based: None,
            fast_expiry: false,
            min_dwell_ms: None,
            max_dwell_ms: None,
            entry_limit: EntryLimit::Unlimited,
            reactions: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn given_transition_names_when_built_then_they_are_prefixed_and_recognised() {
        assert_eq!(entered_event("vip"), "bucket:entered:vip");
        assert_eq!(left_event("vip"), "bucket:left:vip");
        assert!(is_bucket_event(&entered_event("vip")));
        assert!(!is_bucket_event("buckets.updated"));
    }

    #[test]
    fn given_reaction_options_when_desugared_then_filters_read_the_transition_properties() {
        let first = ReactionOn::Enter {
            first_entry_only: true,
        }
        .trigger_filter()
        .unwrap();
        let props = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let counts = EventCounts::new();
        assert!(evaluate(
            &first,
            &props(json!({"isFirstEntry": true})),
            &counts
        ));
        assert!(!evaluate(
            &first,
            &props(json!({"isFirstEntry": false})),
            &counts
        ));
        assert!(!evaluate(&first, &props(json!({})), &counts));
        let reasons = ReactionOn::Leave {
            reasons: Some(vec![LeaveReason::MaxDwell, LeaveReason::Manual]),
        }
        .trigger_filter()
        .unwrap();
        assert!(evaluate(
            &reasons,
            &props(json!({"reason": "maxDwell"})),
            &counts
        ));
        assert!(!evaluate(
            &reasons,
            &props(json!({"reason": "criteria"})),
            &counts
        ));
        assert_eq!(
            ReactionOn::Enter {
                first_entry_only: false
            }
            .trigger_filter(),
            None
        );
        assert_eq!(ReactionOn::Leave { reasons: None }.trigger_filter(), None);
    }

    #[test]
    fn given_leave_reasons_when_parsed_then_only_known_ones_are_accepted() {
        for r in LeaveReason::ALL {
            assert_eq!(LeaveReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
        }
        assert_eq!(LeaveReason::parse("max_dwell"), None);
    }
}
