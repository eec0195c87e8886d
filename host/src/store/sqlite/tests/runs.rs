//! Runs: claims and leases, releases, committing activations, listing, and corrupt rows.

use super::*;
use crate::journeys::RunStatus;
use crate::journeys::journal::{JournalEntry, StepKind};
use crate::store::{EmailFilter, EmailStatus, RunFilter, StoreError};

#[tokio::test]
async fn claims_respect_due_time_and_leases() {
    // Given one run due now and one run due in an hour
    let f = fixture().await;
    let now_run = start_run(&f, "ada", T0).await;
    let later_run = start_run(&f, "bob", T0 + HOUR).await;
    let real = Clock::real_now().0;

    // When a worker claims at T0, then another worker claims at the same time
    let first = f
        .store
        .claim_due_runs(Timestamp(T0), &lease("w1", real), 10)
        .await
        .unwrap();
    let second = f
        .store
        .claim_due_runs(Timestamp(T0), &lease("w2", real), 10)
        .await
        .unwrap();

    // Then only the due run is claimed, and only once
    assert_eq!(
        first.iter().map(|c| &c.run_id).collect::<Vec<_>>(),
        vec![&now_run]
    );
    assert!(second.is_empty());
    assert_eq!(
        f.store.next_due_at().await.unwrap(),
        Some(Timestamp(T0 + HOUR)),
        "the leased timer does not count"
    );

    // When the lease expires (real clock) and the host clock reaches the second run
    let after_lease = lease("w2", real + 31_000);
    let reclaimed = f
        .store
        .claim_due_runs(Timestamp(T0 + HOUR), &after_lease, 10)
        .await
        .unwrap();

    // Then both are claimable, oldest due first, and the first worker's commit is refused
    assert_eq!(
        reclaimed.iter().map(|c| &c.run_id).collect::<Vec<_>>(),
        vec![&now_run, &later_run]
    );
    assert!(!complete(&f, &now_run, "w1").await);
}

#[tokio::test]
async fn claims_take_at_most_the_limit_oldest_first() {
    let f = fixture().await;
    let runs = [
        start_run(&f, "c", T0 + 2).await,
        start_run(&f, "a", T0).await,
        start_run(&f, "b", T0 + 1).await,
    ];
    let claimed = f
        .store
        .claim_due_runs(Timestamp(T0 + 10), &real_lease("w1"), 2)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| &c.run_id).collect::<Vec<_>>(),
        vec![&runs[1], &runs[2]]
    );
}

#[tokio::test]
async fn a_released_run_is_due_again_at_the_retry_time() {
    // Given a run claimed by w1
    let f = fixture().await;
    let run = claimed_run(&f, "ada", T0).await;
    // When another owner releases it, then nothing changes
    f.store
        .release_run(&run, "w2", Timestamp(T0 + 5))
        .await
        .unwrap();
    assert_eq!(f.store.next_due_at().await.unwrap(), None);
    // When its owner releases it with a retry time, then it is due at that time and not before
    f.store
        .release_run(&run, "w1", Timestamp(T0 + 5))
        .await
        .unwrap();
    assert_eq!(
        f.store.next_due_at().await.unwrap(),
        Some(Timestamp(T0 + 5))
    );
    let early = claim_due(&f, "w2", T0 + 4).await;
    assert!(early.is_empty());
    let due = claim_due(&f, "w2", T0 + 5).await;
    assert_eq!(due.len(), 1);
}

#[tokio::test]
async fn commit_activation_writes_journal_emails_timer_and_status_together() {
    // Given a claimed run
    let f = fixture().await;
    let run = claimed_run(&f, "ada", T0).await;

    // When its activation sends an email and sleeps for an hour
    let mut first = waiting_commit(&f, &run, "w1", T0 + HOUR);
    first.journal = vec![
        JournalEntry {
            seq: 0,
            kind: StepKind::SendEmail,
            request: json!({"template": "welcome"}),
            response: json!("e1"),
            recorded_at: Timestamp(T0 + 1),
        },
        JournalEntry {
            seq: 1,
            kind: StepKind::Sleep,
            request: json!({"durationMs": HOUR}),
            response: json!(null),
            recorded_at: Timestamp(T0 + 1),
        },
    ];
    first.emails = vec![email(&f, &run, 0, " Ada@Example.com ")];
    assert!(f.store.commit_activation(first.clone()).await.unwrap());

    // Then everything is there: journal, queued email, timer, waiting status
    let detail = f.store.load_activation(&run).await.unwrap().unwrap();
    assert_eq!(detail.journal, first.journal);
    assert_eq!(detail.run.status, RunStatus::Waiting);
    assert_eq!(detail.run.wake_at, Some(Timestamp(T0 + HOUR)));
    assert_eq!(detail.run.activations, 1);
    assert_eq!(detail.run.updated_at, Timestamp(T0 + 1));
    assert_eq!(
        f.store.next_due_at().await.unwrap(),
        Some(Timestamp(T0 + HOUR))
    );
    let emails = f
        .store
        .list_emails(&f.tenant, &EmailFilter::default())
        .await
        .unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].status, EmailStatus::Queued);
    assert_eq!(emails[0].to, "ada@example.com");
    assert_eq!(emails[0].run_id.as_ref(), Some(&run));

    // And a commit whose email step is already queued rolls back entirely
    let before_wake = claim_due(&f, "w1", T0 + HOUR - 1).await;
    assert!(before_wake.is_empty(), "the sleeping run is not due yet");
    claim_due(&f, "w1", T0 + HOUR).await;
    let mut clash = commit(&f, &run, "w1", RunTransition::Completed);
    clash.journal = vec![JournalEntry {
        seq: 2,
        kind: StepKind::Now,
        request: json!(null),
        response: json!(T0),
        recorded_at: Timestamp(T0 + HOUR),
    }];
    clash.emails = vec![email(&f, &run, 0, "ada@example.com")];
    assert!(f.store.commit_activation(clash).await.is_err());
    let detail = f.store.load_activation(&run).await.unwrap().unwrap();
    assert_eq!(detail.journal.len(), 2);
    assert_eq!(detail.run.status, RunStatus::Waiting);

    // When it then completes
    assert!(complete(&f, &run, "w1").await);
    // Then the run is completed and has no timer left
    let detail = f.store.load_activation(&run).await.unwrap().unwrap();
    assert_eq!(detail.run.status, RunStatus::Completed);
    assert_eq!(detail.run.wake_at, None);
    assert_eq!(detail.run.activations, 2);
    assert_eq!(f.store.next_due_at().await.unwrap(), None);
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM timers").await, 0);
}

#[tokio::test]
async fn a_failed_activation_records_the_error() {
    // Given a claimed run
    let f = fixture().await;
    let run = claimed_run(&f, "ada", T0).await;
    // When its activation fails
    let failed = RunTransition::Failed {
        error: "non-deterministic replay at step 0".into(),
    };
    assert!(
        f.store
            .commit_activation(commit(&f, &run, "w1", failed))
            .await
            .unwrap()
    );
    // Then the run is failed with the error, and has no timer left
    let runs = f
        .store
        .list_runs(
            &f.tenant,
            &RunFilter {
                status: Some(RunStatus::Failed),
                ..RunFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].error.as_deref(),
        Some("non-deterministic replay at step 0")
    );
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM timers").await, 0);
}

#[tokio::test]
async fn commit_activation_refuses_an_exited_run_or_a_lost_lease() {
    // Given a run claimed by w1
    let f = fixture().await;
    let run = claimed_run(&f, "ada", T0).await;
    let mut sleep = waiting_commit(&f, &run, "w2", T0 + HOUR);
    sleep.journal = vec![JournalEntry {
        seq: 0,
        kind: StepKind::Sleep,
        request: json!({"durationMs": HOUR}),
        response: json!(null),
        recorded_at: Timestamp(T0),
    }];
    sleep.emails = vec![email(&f, &run, 0, "ada@example.com")];

    // When a worker that does not hold the lease commits
    // Then nothing is written
    assert!(!f.store.commit_activation(sleep.clone()).await.unwrap());

    // When the run exited meanwhile and the lease holder commits
    raw_update(
        &f,
        "UPDATE runs SET status = 'exited' WHERE id = ?",
        run.as_str(),
    )
    .await;
    sleep.lease_owner = "w1".into();
    // Then nothing is written either
    assert!(!f.store.commit_activation(sleep).await.unwrap());

    // And a tenant mismatch is refused the same way
    let mut foreign = commit(&f, &run, "w1", RunTransition::Completed);
    foreign.tenant_id = TenantId::generate();
    assert!(!f.store.commit_activation(foreign).await.unwrap());

    let detail = f.store.load_activation(&run).await.unwrap().unwrap();
    assert!(detail.journal.is_empty());
    assert_eq!(detail.run.status, RunStatus::Exited);
    assert_eq!(detail.run.activations, 0);
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM emails").await, 0);
    // The exited run's leftover timer is never claimed again
    let again = f
        .store
        .claim_due_runs(
            Timestamp(T0 + HOUR),
            &lease("w3", Clock::real_now().0 + 60_000),
            10,
        )
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(f.store.next_due_at().await.unwrap(), None);
}

#[tokio::test]
async fn list_runs_filters_and_returns_newest_first_within_the_limit() {
    let f = fixture().await;
    let ada = start_run(&f, "ada", T0).await;
    let bob = start_run(&f, "bob", T0 + 1).await;
    let cy = start_run(&f, "cy", T0 + 2).await;
    let all = f
        .store
        .list_runs(&f.tenant, &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| &r.id).collect::<Vec<_>>(),
        vec![&cy, &bob, &ada]
    );
    let limited = f
        .store
        .list_runs(
            &f.tenant,
            &RunFilter {
                limit: 2,
                ..RunFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    let for_bob = f
        .store
        .list_runs(
            &f.tenant,
            &RunFilter {
                contact_key: Some("bob".into()),
                status: Some(RunStatus::Active),
                ..RunFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        for_bob.iter().map(|r| &r.id).collect::<Vec<_>>(),
        vec![&bob]
    );
    let other_journey = f
        .store
        .list_runs(
            &f.tenant,
            &RunFilter {
                journey_id: Some("win-back".into()),
                ..RunFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(other_journey.is_empty());
}

#[tokio::test]
async fn unreadable_rows_are_reported_as_corrupt_not_panics() {
    // Given a run whose stored input is not JSON
    let f = fixture().await;
    let run = start_run(&f, "ada", T0).await;
    raw_update(
        &f,
        "UPDATE runs SET input = 'not json' WHERE id = ?",
        run.as_str(),
    )
    .await;
    // Then loading it is a clear corruption error
    let err = f.store.load_activation(&run).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                what: "run input",
                ..
            }
        ),
        "{err}"
    );

    // Given a run whose status is unknown (bypassing the CHECK constraint)
    let mut conn = f.store.pool.acquire().await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET status = 'sleeping' WHERE id = ?")
        .bind(run.as_str())
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = OFF")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    // Then listing runs names the bad status
    let err = f
        .store
        .list_runs(&f.tenant, &RunFilter::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                what: "run status",
                ..
            }
        ),
        "{err}"
    );
}
