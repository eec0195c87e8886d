//! A run's journal: the ordered record of every step its handler took, and the replay cursor
//! that answers already-recorded steps and detects a handler that no longer does what it did.
//!
//! Pure logic: no wasm, no SQL. The runtime's host imports drive a [`Replay`]; the executor
//! commits the fresh entries it produced.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// What kind of step a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Now,
    Random,
    Sleep,
    SendEmail,
    /// `wasi:clocks/wall-clock.now`, virtualised through the journal.
    WasiWallClock,
    /// `wasi:clocks/monotonic-clock.now`, virtualised through the journal.
    WasiMonotonicClock,
    /// `wasi:random` bytes, virtualised through the journal.
    WasiRandom,
    /// `bucket-count`: a bucket's member count.
    BucketCount,
    /// `bucket-has`: whether a person is a bucket's member.
    BucketHas,
    /// `bucket-members`: one page of a bucket's members.
    BucketMembers,
    /// `sleep-until`: a sleep to an instant.
    SleepUntil,
    /// `wait-for-event` began: the event awaited, since when and until when.
    WaitForEvent,
    /// `wait-for-event` ended: the event that came, or the timeout.
    WaitResolved,
    /// `checkpoint`: where the run is.
    Checkpoint,
    /// `trigger`: an event to ingest after the commit.
    Trigger,
    /// `update-contact`: a contact patch to apply after the commit.
    UpdateContact,
    /// `is-subscribed`: whether the person still accepts email.
    IsSubscribed,
    /// `history-event-count`: how many events of a name a person has.
    HistoryEventCount,
    /// `history-journey`: a person's runs of a journey.
    HistoryJourney,
    /// `history-email`: the emails of a template to an address.
    HistoryEmail,
}

impl StepKind {
    pub const ALL: [StepKind; 20] = [
        StepKind::Now,
        StepKind::Random,
        StepKind::Sleep,
        StepKind::SendEmail,
        StepKind::WasiWallClock,
        StepKind::WasiMonotonicClock,
        StepKind::WasiRandom,
        StepKind::BucketCount,
        StepKind::BucketHas,
        StepKind::BucketMembers,
        StepKind::SleepUntil,
        StepKind::WaitForEvent,
        StepKind::WaitResolved,
        StepKind::Checkpoint,
        StepKind::Trigger,
        StepKind::UpdateContact,
        StepKind::IsSubscribed,
        StepKind::HistoryEventCount,
        StepKind::HistoryJourney,
        StepKind::HistoryEmail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Now => "now",
            StepKind::Random => "random",
            StepKind::Sleep => "sleep",
            StepKind::SendEmail => "send-email",
            StepKind::WasiWallClock => "wasi-wall-clock",
            StepKind::WasiMonotonicClock => "wasi-monotonic-clock",
            StepKind::WasiRandom => "wasi-random",
            StepKind::BucketCount => "bucket-count",
            StepKind::BucketHas => "bucket-has",
            StepKind::BucketMembers => "bucket-members",
            StepKind::SleepUntil => "sleep-until",
            StepKind::WaitForEvent => "wait-for-event",
            StepKind::WaitResolved => "wait-resolved",
            StepKind::Checkpoint => "checkpoint",
            StepKind::Trigger => "trigger",
            StepKind::UpdateContact => "update-contact",
            StepKind::IsSubscribed => "is-subscribed",
            StepKind::HistoryEventCount => "history-event-count",
            StepKind::HistoryJourney => "history-journey",
            StepKind::HistoryEmail => "history-email",
        }
    }

    pub fn parse(text: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// Position in the run's journal, from 0.
    pub seq: u32,
    pub kind: StepKind,
    /// What the handler asked for; compared on replay.
    pub request: Value,
    /// What the host answered; returned on replay.
    pub response: Value,
    pub recorded_at: Timestamp,
}

/// A handler that replays differently from its journal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "non-deterministic replay at step {seq}: the journal recorded {expected_kind} {expected_request} \
     but the handler called {actual_kind} {actual_request}"
)]
pub struct Divergence {
    pub seq: u32,
    pub expected_kind: String,
    pub expected_request: String,
    pub actual_kind: String,
    pub actual_request: String,
}

/// Why the journal refused a step: the activation fails with this reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepRefused {
    #[error(transparent)]
    Diverged(#[from] Divergence),
    /// A run may record at most this many steps: a journey that loops without end fails with
    /// a clear reason instead of growing its journal (and every replay) forever.
    #[error(
        "the run reached its cap of {0} journal steps (a handler that loops without end?); \
         the operator raises it for the tenant (runSteps) or for every tenant \
         (`waymark serve --max-run-steps`)"
    )]
    StepCap(u32),
    /// A replay that checks a journal against a candidate version reached the end of the
    /// journal: the candidate called every recorded step again. Not a failure of the run.
    #[error("the replay reached the end of the journal")]
    ReplayEnded,
}

/// The answer to a step the handler is taking.
#[derive(Debug, PartialEq)]
pub enum StepLookup<'a> {
    /// Already recorded: answer with this entry, do nothing else.
    Recorded(&'a JournalEntry),
    /// New: perform it and [`Replay::record`] the result at this `seq`.
    Frontier { seq: u32 },
}

/// A cursor over one run's journal during one activation.
#[derive(Debug, Default)]
pub struct Replay {
    recorded: Vec<JournalEntry>,
    cursor: usize,
    fresh: Vec<JournalEntry>,
}

impl Replay {
    pub fn new(recorded: Vec<JournalEntry>) -> Self {
        Self {
            recorded,
            cursor: 0,
            fresh: Vec::new(),
        }
    }

    /// True while the handler is still re-walking recorded steps.
    pub fn is_replaying(&self) -> bool {
        self.cursor < self.recorded.len()
    }

    /// Advance to the handler's next step: answer it from the journal or mark the frontier.
    pub fn step(&mut self, kind: StepKind, request: &Value) -> Result<StepLookup<'_>, Divergence> {
        if let Some(entry) = self.recorded.get(self.cursor) {
            if entry.kind != kind || &entry.request != request {
                return Err(Divergence {
                    seq: entry.seq,
                    expected_kind: entry.kind.to_string(),
                    expected_request: entry.request.to_string(),
                    actual_kind: kind.to_string(),
                    actual_request: request.to_string(),
                });
            }
            self.cursor += 1;
            return Ok(StepLookup::Recorded(&self.recorded[self.cursor - 1]));
        }
        Ok(StepLookup::Frontier {
            seq: self.next_seq(),
        })
    }

    fn next_seq(&self) -> u32 {
        u32::try_from(self.recorded.len() + self.fresh.len()).unwrap_or(u32::MAX)
    }

    /// Record the result of a frontier step.
    pub fn record(
        &mut self,
        kind: StepKind,
        request: Value,
        response: Value,
        at: Timestamp,
    ) -> u32 {
        let seq = self.next_seq();
        self.fresh.push(JournalEntry {
            seq,
            kind,
            request,
            response,
            recorded_at: at,
        });
        seq
    }

    /// When the handler finished: every recorded step must have been walked again, or the
    /// handler took a shorter path than it did before.
    pub fn check_fully_replayed(&self) -> Result<(), Divergence> {
        match self.recorded.get(self.cursor) {
            None => Ok(()),
            Some(entry) => Err(Divergence {
                seq: entry.seq,
                expected_kind: entry.kind.to_string(),
                expected_request: entry.request.to_string(),
                actual_kind: "return".into(),
                actual_request: "(the handler finished)".into(),
            }),
        }
    }

    /// Entries produced in this activation, to be committed with it.
    pub fn into_fresh(self) -> Vec<JournalEntry> {
        self.fresh
    }

    pub fn fresh(&self) -> &[JournalEntry] {
        &self.fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: u32, kind: StepKind, request: Value, response: Value) -> JournalEntry {
        JournalEntry {
            seq,
            kind,
            request,
            response,
            recorded_at: Timestamp(seq as i64),
        }
    }

    #[test]
    fn recorded_steps_answer_from_the_journal_then_the_frontier_follows() {
        let mut replay = Replay::new(vec![entry(0, StepKind::Now, json!(null), json!(42))]);
        assert!(replay.is_replaying());
        match replay.step(StepKind::Now, &json!(null)).unwrap() {
            StepLookup::Recorded(e) => assert_eq!(e.response, json!(42)),
            other => panic!("expected a recorded step, got {other:?}"),
        }
        assert!(!replay.is_replaying());
        assert_eq!(
            replay.step(StepKind::Random, &json!(null)).unwrap(),
            StepLookup::Frontier { seq: 1 }
        );
        assert_eq!(
            replay.record(StepKind::Random, json!(null), json!(7), Timestamp(9)),
            1
        );
        assert_eq!(replay.into_fresh().len(), 1);
    }

    #[test]
    fn a_different_call_at_a_recorded_step_names_the_step_expected_and_actual() {
        let mut replay = Replay::new(vec![entry(
            0,
            StepKind::SendEmail,
            json!({"template": "welcome"}),
            json!("e1"),
        )]);
        let err = replay
            .step(StepKind::Sleep, &json!({"durationMs": 1000}))
            .unwrap_err();
        assert_eq!(err.seq, 0);
        let text = err.to_string();
        assert!(text.contains("step 0"), "{text}");
        assert!(text.contains("send-email"), "{text}");
        assert!(text.contains("sleep"), "{text}");
    }

    #[test]
    fn finishing_before_the_journal_ends_is_a_divergence() {
        let mut replay = Replay::new(vec![
            entry(0, StepKind::Now, json!(null), json!(1)),
            entry(1, StepKind::Now, json!(null), json!(2)),
        ]);
        replay.step(StepKind::Now, &json!(null)).unwrap();
        let err = replay.check_fully_replayed().unwrap_err();
        assert_eq!(err.seq, 1);
    }
}
