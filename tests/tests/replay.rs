//! Durable execution at the runtime level, with real compiled modules: replaying a journal
//! answers recorded steps without repeating their effects, and a handler that replays
//! differently from its journal fails as non-deterministic, naming the step.

mod support;

use std::time::Duration;
use support::runtime::RuntimeFixture;
use waymark::journeys::journal::{JournalEntry, StepKind};
use waymark::modules::LoadedModule;
use waymark::runtime::{ActivationOutcome, ActivationReport};

struct Fixture(RuntimeFixture);

impl std::ops::Deref for Fixture {
    type Target = RuntimeFixture;

    fn deref(&self) -> &RuntimeFixture {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        Fixture(RuntimeFixture::new("test.steps", Default::default()))
    }

    async fn activate(
        &self,
        module: &LoadedModule,
        journal: Vec<JournalEntry>,
    ) -> ActivationReport {
        self.registry
            .runtime()
            .activate(&module.compiled, self.request(module, "steps", journal))
            .await
            .unwrap()
    }
}

fn kinds(journal: &[JournalEntry]) -> Vec<StepKind> {
    journal.iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn replaying_a_journal_answers_recorded_steps_without_repeating_their_effects() {
    // Given a run of steps-v1 that queued an email and went to sleep
    let fx = Fixture::new();
    let v1 = fx.load("steps-v1").await;
    let first = fx.activate(&v1, vec![]).await;
    assert!(
        matches!(first.outcome, ActivationOutcome::Suspended { .. }),
        "{:?}",
        first.outcome
    );
    assert_eq!(first.emails.len(), 1);
    assert!(
        kinds(&first.journal).contains(&StepKind::SendEmail)
            && kinds(&first.journal).last() == Some(&StepKind::Sleep)
    );

    // When it is activated again before its wake time
    let early = fx.activate(&v1, first.journal.clone()).await;
    // Then it suspends again having done nothing new
    assert_eq!(early.outcome, first.outcome);
    assert!(early.journal.is_empty() && early.emails.is_empty());

    // When the day has passed
    fx.clock.advance(Duration::from_secs(86_400));
    let woken = fx.activate(&v1, first.journal.clone()).await;
    // Then only the step after the sleep happens: one new email, and the run completes
    assert_eq!(woken.outcome, ActivationOutcome::Completed);
    assert_eq!(woken.emails.len(), 1);
    assert_ne!(woken.emails[0].template, first.emails[0].template);
    assert_eq!(
        woken.journal.first().map(|e| e.seq),
        Some(first.journal.len() as u32),
        "new steps continue the sequence"
    );
}

#[tokio::test]
async fn a_handler_that_replays_differently_fails_as_non_deterministic_naming_the_step() {
    // Given the journal of a steps-v1 run (email first, then sleep)
    let fx = Fixture::new();
    let v1 = fx.load("steps-v1").await;
    let v2 = fx.load("steps-v2").await;
    let first = fx.activate(&v1, vec![]).await;
    let email_step = first
        .journal
        .iter()
        .find(|e| e.kind == StepKind::SendEmail)
        .unwrap()
        .seq;

    // When steps-v2 (sleep first) replays that journal
    let replayed = fx.activate(&v2, first.journal.clone()).await;

    // Then the run fails as non-deterministic, naming the step, what was recorded and what was called
    let ActivationOutcome::Failed { reason } = replayed.outcome else {
        panic!("expected a failure, got {:?}", replayed.outcome)
    };
    assert!(
        reason.contains(&format!("non-deterministic replay at step {email_step}")),
        "{reason}"
    );
    assert!(reason.contains("recorded send-email"), "{reason}");
    assert!(reason.contains("called sleep"), "{reason}");
    assert!(replayed.emails.is_empty());
}
