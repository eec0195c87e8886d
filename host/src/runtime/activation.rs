//! One activation's shared state: its journal (replayed steps, the frontier, the step cap),
//! the emails and effects it buffers for the commit, and what the run is about. The `context`
//! imports ([`super::host`]) and `send-email`'s work ([`super::send`]) both use it.

use super::events::EventReader;
use super::mail::MailReader;
use super::members::BucketReader;
use crate::clock::{Clock, Timestamp};
use crate::delivery::templates::TemplateSet;
use crate::ids::EmailId;
use crate::journeys::PersonSnapshot;
use crate::journeys::journal::{Replay, StepKind, StepLookup, StepRefused};
use crate::store::{Effect, EmailStatus, SuppressedReason};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};

/// An email rendered during the activation, committed with it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEmail {
    pub id: EmailId,
    pub step_seq: u32,
    pub to: String,
    pub template: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    pub unsubscribe_url: Option<String>,
    /// Queued for delivery, or suppressed (recorded, never sent).
    pub status: EmailStatus,
    pub suppressed_reason: Option<SuppressedReason>,
}

/// The journal and the effects of one activation, shared by the `context` imports and the
/// virtualised WASI clocks and random.
#[derive(Debug)]
pub struct ActivationJournal {
    pub replay: Replay,
    pub emails: Vec<QueuedEmail>,
    /// Effects recorded in this activation (by journal step), committed with it.
    pub effects: Vec<(u32, Effect)>,
    /// Set when a step was refused (a divergence, the step cap), also by a WASI import that
    /// cannot fail: the activation fails with it.
    pub stopped: Option<StepRefused>,
    /// Most journal entries a run may have.
    max_steps: u32,
    /// Checking a journal against a candidate version: stop at the first step the journal
    /// does not hold, performing nothing ([`StepRefused::ReplayEnded`]).
    replay_only: bool,
    pub(super) clock: Clock,
}

pub type SharedJournal = Arc<Mutex<ActivationJournal>>;

impl ActivationJournal {
    pub fn new(replay: Replay, clock: Clock, max_steps: u32) -> SharedJournal {
        Arc::new(Mutex::new(Self {
            replay,
            emails: Vec::new(),
            effects: Vec::new(),
            stopped: None,
            max_steps,
            replay_only: false,
            clock,
        }))
    }

    /// A journal that only replays `replay`: its first new step ends the activation, with
    /// nothing performed.
    pub fn replay_only(replay: Replay, clock: Clock) -> SharedJournal {
        let journal = Self::new(replay, clock, u32::MAX);
        lock(&journal).replay_only = true;
        journal
    }

    /// Answer a step from the journal, or perform it with `perform` and record the result.
    pub(super) fn journaled(
        &mut self,
        kind: StepKind,
        request: Value,
        perform: impl FnOnce(&mut Self, u32) -> Value,
    ) -> Result<Value, StepRefused> {
        match self.lookup(kind, &request)? {
            Lookup::Recorded(response) => Ok(response),
            Lookup::Frontier { seq } => {
                let response = perform(self, seq);
                self.record(kind, request, response.clone());
                Ok(response)
            }
        }
    }

    /// The recorded answer to a step, or the frontier where a new step is to be performed
    /// and then [`Self::record`]ed (by a caller that awaits in between).
    pub(super) fn lookup(
        &mut self,
        kind: StepKind,
        request: &Value,
    ) -> Result<Lookup, StepRefused> {
        if let Some(stopped) = &self.stopped {
            return Err(stopped.clone());
        }
        let refused = match self.replay.step(kind, request) {
            Ok(StepLookup::Recorded(entry)) => return Ok(Lookup::Recorded(entry.response.clone())),
            Ok(StepLookup::Frontier { .. }) if self.replay_only => StepRefused::ReplayEnded,
            Ok(StepLookup::Frontier { seq }) if seq < self.max_steps => {
                return Ok(Lookup::Frontier { seq });
            }
            Ok(StepLookup::Frontier { .. }) => StepRefused::StepCap(self.max_steps),
            Err(divergence) => StepRefused::Diverged(divergence),
        };
        self.stopped = Some(refused.clone());
        Err(refused)
    }

    /// Record the answer to the frontier step.
    pub(super) fn record(&mut self, kind: StepKind, request: Value, response: Value) {
        let now = self.clock.now();
        self.replay.record(kind, request, response, now);
    }
}

/// Where a step stands in the journal.
pub(super) enum Lookup {
    Recorded(Value),
    Frontier { seq: u32 },
}

pub(super) fn lock(journal: &SharedJournal) -> MutexGuard<'_, ActivationJournal> {
    // A poisoned lock only means another import panicked; the data is still consistent.
    journal.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the activation is about, for the imports that need it.
pub struct RunScope {
    pub run_id: String,
    pub journey_id: String,
    pub person: PersonSnapshot,
    pub templates: Arc<TemplateSet>,
    /// The run's tenant's bucket membership, for the `bucket-*` imports.
    pub buckets: Arc<dyn BucketReader>,
    /// The run's person's events, for `wait-for-event`.
    pub events: Arc<dyn EventReader>,
    /// When the run started: its trigger was received then, and is never what a wait gets.
    pub started_at: Timestamp,
    /// The run's tenant's templates, preferences and unsubscribe links, for `send-email` and
    /// `is-subscribed`.
    pub mail: Arc<dyn MailReader>,
    /// The journey's suppress window in ms (zero: none).
    pub suppress_ms: u64,
}
