//! The journey router: which journeys an event may start. Matching is on the trigger event
//! name (exact) among the tenant's active journeys, enabled or not; each candidate carries
//! whether the module enables it and whether its trigger filter (`trigger_where`, property
//! conditions over the event's properties — also how bucket reactions select first entries or
//! leave reasons) holds. The enrollment guards themselves run in the store inside the ingest
//! transaction ([`crate::journeys::Enrollment`]), where the admin switch and earlier runs are
//! read consistently and every skip is counted.

use crate::buckets::{EventCounts, evaluate};
use crate::journeys::EntryLimit;
use crate::modules::manifest::JourneyDef;
use serde_json::{Map, Value};

/// A journey the event's name triggers, enabled or not; the store runs the enrollment guards
/// ([`crate::journeys::Enrollment`]) inside the ingest transaction and, when admitted, creates
/// the run and its first timer (due at once), or counts the skip.
#[derive(Debug, Clone)]
pub struct RunCandidate {
    pub journey_id: String,
    pub module_hash: String,
    pub entry_limit: EntryLimit,
    /// Whether the module declares the journey enabled.
    pub declared_enabled: bool,
    /// Whether the journey's `trigger-where` holds on the event (true without one).
    pub trigger_matches: bool,
}

impl RunCandidate {
    /// An enabled journey whose trigger filter holds.
    pub fn new(journey_id: &str, module_hash: &str, entry_limit: EntryLimit) -> Self {
        RunCandidate {
            journey_id: journey_id.to_owned(),
            module_hash: module_hash.to_owned(),
            entry_limit,
            declared_enabled: true,
            trigger_matches: true,
        }
    }
}

/// The journeys an event with `event_properties` may start, from the journeys bound to its
/// name (each with the hash of the module that declares it).
pub fn candidates_for<'a>(
    bound: impl IntoIterator<Item = (&'a str, &'a JourneyDef)>,
    event_properties: &Map<String, Value>,
) -> Vec<RunCandidate> {
    bound
        .into_iter()
        .map(|(module_hash, journey)| RunCandidate {
            trigger_matches: trigger_filter_holds(journey, event_properties),
            declared_enabled: journey.enabled,
            journey_id: journey.id.clone(),
            module_hash: module_hash.to_owned(),
            entry_limit: journey.entry_limit,
        })
        .collect()
}

/// Whether `journey`'s trigger filter, if any, holds for the triggering event's properties.
/// Filters are property conditions only; an event leg would see a count of zero.
pub fn trigger_filter_holds(journey: &JourneyDef, event_properties: &Map<String, Value>) -> bool {
    journey
        .trigger_where
        .as_ref()
        .is_none_or(|filter| evaluate(filter, event_properties, &EventCounts::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::{BucketDef, BucketKind, LeaveReason, ReactionDef, ReactionOn};
    use serde_json::json;

    fn reaction_journey(on: ReactionOn) -> JourneyDef {
        let bucket = BucketDef {
            kind: BucketKind::Manual,
            ..BucketDef::computed("vip", "VIP", None)
        };
        JourneyDef::from_reaction(
            &bucket,
            &ReactionDef {
                journey_id: "bucket-vip-on-x".into(),
                handler: "bucket-vip-on-x".into(),
                on,
            },
        )
    }

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn given_a_first_entry_only_reaction_when_the_entry_is_a_repeat_then_it_is_skipped() {
        let j = reaction_journey(ReactionOn::Enter {
            first_entry_only: true,
        });
        assert!(trigger_filter_holds(
            &j,
            &props(json!({"isFirstEntry": true, "entryCount": 1}))
        ));
        assert!(!trigger_filter_holds(
            &j,
            &props(json!({"isFirstEntry": false, "entryCount": 2}))
        ));
        assert!(!trigger_filter_holds(&j, &Map::new()));
    }

    #[test]
    fn given_a_reason_filter_when_the_leave_reason_is_not_listed_then_it_is_skipped() {
        let j = reaction_journey(ReactionOn::Leave {
            reasons: Some(vec![LeaveReason::MaxDwell]),
        });
        assert!(trigger_filter_holds(
            &j,
            &props(json!({"reason": "maxDwell"}))
        ));
        assert!(!trigger_filter_holds(
            &j,
            &props(json!({"reason": "criteria"}))
        ));
    }

    #[test]
    fn given_no_filter_when_any_event_arrives_then_the_journey_matches() {
        let j = reaction_journey(ReactionOn::Enter {
            first_entry_only: false,
        });
        assert!(j.trigger_where.is_none());
        assert!(trigger_filter_holds(&j, &Map::new()));
        assert!(trigger_filter_holds(
            &j,
            &props(json!({"isFirstEntry": false}))
        ));
    }
}
