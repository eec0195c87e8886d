//! Journeys: the per-person durable programs that modules define.
//!
//! This module owns the journey vocabulary (run status, entry limits, the run's input), the
//! router that decides which journeys an event starts ([`router`]), and the executor that runs
//! one activation of a run ([`executor`]). It must not talk SQL (that is [`crate::store`]) nor
//! touch wasmtime directly (that is [`crate::runtime`]).

pub mod effects;
pub mod executor;
pub mod journal;
pub mod router;

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Why an event that matched a journey's trigger did not start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    AlreadyActive,
    AlreadyEnteredOnce,
    PeriodNotElapsed,
}

impl EntryLimit {
    /// The enrollment guard: may this person start another run now?
    pub fn admits(self, prior: &PriorRuns, now: Timestamp) -> Result<(), SkipReason> {
        if prior.live {
            return Err(SkipReason::AlreadyActive);
        }
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

    #[test]
    fn a_live_run_blocks_every_entry_limit() {
        let prior = PriorRuns {
            total: 1,
            latest_started_at: Some(Timestamp(0)),
            live: true,
        };
        for limit in [
            EntryLimit::Once,
            EntryLimit::OncePer(DAY),
            EntryLimit::Unlimited,
        ] {
            assert_eq!(
                limit.admits(&prior, Timestamp(10 * DAY as i64)),
                Err(SkipReason::AlreadyActive)
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
