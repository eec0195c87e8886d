//! TypeScript guests on the real runtime: a module written with `@waymark/guest` (the
//! `ts-edge` test guest) suspends and replays like a Rust one, fails with the JavaScript
//! error's message and stack, is held to the CPU and memory limits, and a replay that differs
//! from the journal fails naming the step.

mod support;

use std::time::Duration;
use support::runtime::RuntimeFixture;
use waymark::journeys::journal::StepKind;
use waymark::runtime::{ActivationLimits, ActivationOutcome};

fn failure(outcome: &ActivationOutcome) -> &str {
    match outcome {
        ActivationOutcome::Failed { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_typescript_module_suspends_replays_fails_clearly_and_is_held_to_its_limits() {
    // Given the ts-edge module on a runtime with a short CPU budget and a 64 MiB memory cap
    let fx = RuntimeFixture::with_limits(
        "ts.steps",
        Default::default(),
        ActivationLimits {
            cpu_budget: Duration::from_millis(500),
            memory_bytes: 64 << 20,
            ..ActivationLimits::default()
        },
    );
    let module = fx.load("ts-edge").await;
    let runtime = fx.registry.runtime();
    let activate = async |journey: &str, journal| {
        runtime
            .activate(&module.compiled, fx.request(&module, journey, journal))
            .await
            .unwrap()
    };

    // When the async `ts-steps` handler first runs
    let first = activate("ts-steps", vec![]).await;
    // Then it checkpoints, queues its first email and suspends on the hour's sleep
    assert!(
        matches!(first.outcome, ActivationOutcome::Suspended { .. }),
        "{:?}",
        first.outcome
    );
    let kinds: Vec<StepKind> = first.journal.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [StepKind::Checkpoint, StepKind::SendEmail, StepKind::Sleep]
    );
    assert_eq!(first.emails.len(), 1);
    assert_eq!(first.emails[0].subject, "Step 1");

    // When the hour has passed and it replays its journal
    fx.clock.advance(Duration::from_secs(3_600));
    let woken = activate("ts-steps", first.journal.clone()).await;
    // Then only the second email is new, and the run completes
    assert_eq!(woken.outcome, ActivationOutcome::Completed);
    assert_eq!(woken.emails.len(), 1);
    assert_eq!(woken.emails[0].subject, "Step 2");

    // When a handler that sleeps before its email replays that journal
    let replayed = activate("ts-steps-reordered", first.journal.clone()).await;
    // Then it fails as non-deterministic, naming the step, what was recorded and what was called
    let reason = failure(&replayed.outcome);
    assert!(
        reason.contains("non-deterministic replay at step 1"),
        "{reason}"
    );
    assert!(
        reason.contains("recorded send-email") && reason.contains("called sleep"),
        "{reason}"
    );
    assert!(replayed.emails.is_empty());

    // When a handler throws an Error from a nested function
    let thrown = activate("ts-throws", vec![]).await;
    // Then the run fails with the error's name and message, then its stack, and queues nothing
    let reason = failure(&thrown.outcome);
    assert!(reason.contains("Error: card declined for p1\n"), "{reason}");
    assert!(
        reason.contains("chargeCard"),
        "the stack names the function: {reason}"
    );

    // When a handler loops forever
    let spun = activate("ts-spins", vec![]).await;
    // Then the CPU budget ends it
    let reason = failure(&spun.outcome);
    assert!(reason.contains("CPU budget"), "{reason}");

    // When a handler allocates without bound
    let grown = activate("ts-grows", vec![]).await;
    // Then the memory cap ends it
    let reason = failure(&grown.outcome);
    assert!(reason.contains("memory limit of 64 MiB"), "{reason}");
}
