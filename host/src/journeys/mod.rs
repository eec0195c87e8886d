//! Journeys: the per-person durable programs that modules define.
//!
//! This module owns the journey vocabulary (run status, entry limits, the run's input), the
//! router that decides which journeys an event starts ([`router`]), and the executor that runs
//! one activation of a run ([`executor`]). It must not talk SQL (that is [`crate::store`]) nor
//! touch wasmtime directly (that is [`crate::runtime`]).

pub mod effects;
pub mod executor;
mod input;
pub mod journal;
pub mod router;

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Created or awake, waiting for the scheduler to activate it.
    Active,
    /// Suspended in a sleep until its timer is due.
    Waiting,
    Completed,
    Failed,
    Exited,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Active,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Exited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Active => "active",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Exited => "exited",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A terminal run is never activated again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Exited
        )
    }
}

/// How often one person may enter a journey (one live run at a time regardless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "periodMs")]
pub enum EntryLimit {
    Once,
    OncePer(u64),
    Unlimited,
}

/// What the store knows about a person's earlier runs of one journey.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriorRuns {
    pub total: u64,
    pub latest_started_at: Option<Timestamp>,
    pub live: bool,
}

/// Why an event that matched a journey's trigger did not start a run: one reason per
/// enrollment guard (domain-spec §3.3), in the order [`Enrollment::admit`] checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The module declares the journey disabled.
    JourneyDisabled,
    /// An admin disabled the journey (`PATCH /v1/journeys/{id}`).
    JourneyDisabledByAdmin,
    /// The journey's `trigger-where` does not hold on the event's properties.
    TriggerConditionsNotMet,
    /// Entry limit `once`, and the person has a run already (any status).
    AlreadyEnteredOnce,
    /// Entry limit `once-per`, and the person's latest run started within the period.
    PeriodNotElapsed,
    /// The person unsubscribed from email (they enter no journey at all, reactions and
    /// journeys that send nothing included: domain-spec §3.3 guard 5).
    UserUnsubscribed,
    /// The person has a live run of the journey.
    AlreadyActive,
}

impl SkipReason {
    pub const ALL: [SkipReason; 7] = [
        SkipReason::JourneyDisabled,
        SkipReason::JourneyDisabledByAdmin,
        SkipReason::TriggerConditionsNotMet,
        SkipReason::AlreadyEnteredOnce,
        SkipReason::PeriodNotElapsed,
        SkipReason::UserUnsubscribed,
        SkipReason::AlreadyActive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::JourneyDisabled => "journey_disabled",
            SkipReason::JourneyDisabledByAdmin => "journey_disabled_by_admin",
            SkipReason::TriggerConditionsNotMet => "trigger_conditions_not_met",
            SkipReason::AlreadyEnteredOnce => "already_entered_once",
            SkipReason::PeriodNotElapsed => "period_not_elapsed",
            SkipReason::UserUnsubscribed => "user_unsubscribed",
            SkipReason::AlreadyActive => "already_active",
        }
    }

    pub fn parse(text: &str) -> Option<SkipReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl EntryLimit {
    /// The entry-limit guard alone: has the person entered too recently (or at all, for
    /// `once`)? Live runs are a guard of their own ([`Enrollment::admit`]).
    pub fn admits(self, prior: &PriorRuns, now: Timestamp) -> Result<(), SkipReason> {
        match self {
            EntryLimit::Unlimited => Ok(()),
            EntryLimit::Once if prior.total > 0 => Err(SkipReason::AlreadyEnteredOnce),
            EntryLimit::Once => Ok(()),
            EntryLimit::OncePer(period_ms) => match prior.latest_started_at {
                Some(started) if started.saturating_add(Duration::from_millis(period_ms)) > now => {
                    Err(SkipReason::PeriodNotElapsed)
                }
                _ => Ok(()),
            },
        }
    }
}

/// Everything the enrollment guards look at for one person, journey and trigger event: what
/// the router knew from the manifest and the event, and what the store read inside the ingest
/// transaction (so an admin switch or a run started by an earlier event of the same batch
/// counts at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrollment {
    /// The journey as the module declares it.
    pub declared_enabled: bool,
    /// Whether the journey's `trigger-where` holds on the event (true without one).
    pub trigger_matches: bool,
    pub entry_limit: EntryLimit,
    /// An admin switched the journey off for the tenant.
    pub disabled_by_admin: bool,
    /// The person (by key or address) unsubscribed from email.
    pub unsubscribed: bool,
    pub prior: PriorRuns,
}

impl Enrollment {
    /// The enrollment guards, in the order of domain-spec §3.3; the first that fails names
    /// the skip.
    pub fn admit(&self, now: Timestamp) -> Result<(), SkipReason> {
        if !self.declared_enabled {
            return Err(SkipReason::JourneyDisabled);
        }
        if self.disabled_by_admin {
            return Err(SkipReason::JourneyDisabledByAdmin);
        }
        if !self.trigger_matches {
            return Err(SkipReason::TriggerConditionsNotMet);
        }
        self.entry_limit.admits(&self.prior, now)?;
        if self.unsubscribed {
            return Err(SkipReason::UserUnsubscribed);
        }
        if self.prior.live {
            return Err(SkipReason::AlreadyActive);
        }
        Ok(())
    }
}

/// The person a run is for, snapshotted when it starts so every activation sees the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonSnapshot {
    pub key: String,
    pub email: Option<String>,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// The event that started a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerEvent {
    pub name: String,
    pub occurred_at: Timestamp,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// Everything a run's handler is invoked with; stored with the run, identical on every activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    pub person: PersonSnapshot,
    pub trigger: TriggerEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn enrollment(limit: EntryLimit, prior: PriorRuns) -> Enrollment {
        Enrollment {
            declared_enabled: true,
            trigger_matches: true,
            entry_limit: limit,
            disabled_by_admin: false,
            unsubscribed: false,
            prior,
        }
    }

    #[test]
    fn an_unsubscribed_person_is_skipped_after_the_entry_limit_and_before_the_live_run() {
        let once_entered = PriorRuns {
            total: 1,
            latest_started_at: Some(Timestamp(0)),
            live: true,
        };
        let mut guards = enrollment(EntryLimit::Once, once_entered);
        guards.unsubscribed = true;
        assert_eq!(
            guards.admit(Timestamp(1)),
            Err(SkipReason::AlreadyEnteredOnce)
        );
        guards.entry_limit = EntryLimit::Unlimited;
        assert_eq!(
            guards.admit(Timestamp(1)),
            Err(SkipReason::UserUnsubscribed)
        );
        guards.unsubscribed = false;
        assert_eq!(guards.admit(Timestamp(1)), Err(SkipReason::AlreadyActive));
    }

    #[test]
    fn a_live_run_blocks_an_entry_the_entry_limit_would_admit() {
        let live = PriorRuns {
            total: 1,
            latest_started_at: Some(Timestamp(0)),
            live: true,
        };
        let now = Timestamp(10 * DAY as i64);
        for limit in [EntryLimit::OncePer(DAY), EntryLimit::Unlimited] {
            assert_eq!(
                enrollment(limit, live).admit(now),
                Err(SkipReason::AlreadyActive)
            );
        }
        // The entry limit is checked first, so a once-only journey says why it really refused.
        assert_eq!(
            enrollment(EntryLimit::Once, live).admit(now),
            Err(SkipReason::AlreadyEnteredOnce)
        );
    }

    #[test]
    fn the_guards_fail_in_the_documented_order() {
        let blocked_by_everything = Enrollment {
            declared_enabled: false,
            trigger_matches: false,
            entry_limit: EntryLimit::Once,
            disabled_by_admin: true,
            unsubscribed: true,
            prior: PriorRuns {
                total: 1,
                latest_started_at: Some(Timestamp(0)),
                live: true,
            },
        };
        let mut e = blocked_by_everything;
        let mut reasons = Vec::new();
        while let Err(reason) = e.admit(Timestamp(0)) {
            reasons.push(reason);
            match reason {
                SkipReason::JourneyDisabled => e.declared_enabled = true,
                SkipReason::JourneyDisabledByAdmin => e.disabled_by_admin = false,
                SkipReason::TriggerConditionsNotMet => e.trigger_matches = true,
                SkipReason::AlreadyEnteredOnce => e.entry_limit = EntryLimit::Unlimited,
                SkipReason::PeriodNotElapsed => unreachable!("no period"),
                SkipReason::UserUnsubscribed => e.unsubscribed = false,
                SkipReason::AlreadyActive => e.prior.live = false,
            }
        }
        assert_eq!(
            reasons,
            [
                SkipReason::JourneyDisabled,
                SkipReason::JourneyDisabledByAdmin,
                SkipReason::TriggerConditionsNotMet,
                SkipReason::AlreadyEnteredOnce,
                SkipReason::UserUnsubscribed,
                SkipReason::AlreadyActive,
            ]
        );
    }

    #[test]
    fn skip_reasons_round_trip_through_their_names() {
        for reason in SkipReason::ALL {
            assert_eq!(SkipReason::parse(reason.as_str()), Some(reason));
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::json!(reason.as_str())
            );
        }
    }

    #[test]
    fn once_admits_only_a_person_with_no_earlier_run() {
        assert_eq!(
            EntryLimit::Once.admits(&PriorRuns::default(), Timestamp(0)),
            Ok(())
        );
        let finished = PriorRuns {
            total: 1,
            latest_started_at: Some(Timestamp(0)),
            live: false,
        };
        assert_eq!(
            EntryLimit::Once.admits(&finished, Timestamp(0)),
            Err(SkipReason::AlreadyEnteredOnce)
        );
    }

    #[test]
    fn once_per_counts_the_period_from_the_latest_start() {
        let finished = PriorRuns {
            total: 3,
            latest_started_at: Some(Timestamp(0)),
            live: false,
        };
        let limit = EntryLimit::OncePer(DAY);
        assert_eq!(
            limit.admits(&finished, Timestamp(DAY as i64 - 1)),
            Err(SkipReason::PeriodNotElapsed)
        );
        assert_eq!(limit.admits(&finished, Timestamp(DAY as i64)), Ok(()));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert!(RunStatus::Exited.is_terminal() && !RunStatus::Waiting.is_terminal());
    }
}
