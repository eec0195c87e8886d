//! Runs: claims and leases, releases, committing activations, listing, and corrupt rows.

use super::*;
use crate::journeys::RunStatus;
use crate::journeys::journal::{JournalEntry, StepKind};
use crate::store::{EmailFilter, EmailStatus, RunFilter, StoreError};

store_test!(
    given_runs_due_now_and_later_when_workers_claim_then_due_time_and_leases_are_respected,
    |f| async move {
        // Given one run due now and one run due in an hour
        let now_run = start_run(&f, "ada", T0).await;
        let later_run = start_run(&f, "bob", T0 + HOUR).await;
        let real = Clock::real_now().0;

        // When a worker claims at T0, then another worker claims at the same time
        let first = f
            .store
            .claim_due_runs(Timestamp(T0), &lease("w1", real), 10, IN_FLIGHT)
            .await
            .unwrap();
        let second = f
            .store
            .claim_due_runs(Timestamp(T0), &lease("w2", real), 10, IN_FLIGHT)
            .await
            .unwrap();

        // Then only the due run is claimed, and only once
        assert_eq!(
            first.iter().map(|c| &c.run.id).collect::<Vec<_>>(),
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
            .claim_due_runs(Timestamp(T0 + HOUR), &after_lease, 10, IN_FLIGHT)
            .await
            .unwrap();

        // Then both are claimable, oldest due first, and the first worker's commit is refused
        assert_eq!(
            reclaimed.iter().map(|c| &c.run.id).collect::<Vec<_>>(),
            vec![&now_run, &later_run]
        );
        assert!(!complete(&f, &now_run, "w1").await);
    }
);

store_test!(
    given_three_due_runs_when_claiming_two_then_the_oldest_two_are_taken,
    |f| async move {
        let runs = [
            start_run(&f, "c", T0 + 2).await,
            start_run(&f, "a", T0).await,
            start_run(&f, "b", T0 + 1).await,
        ];
        let claimed = f
            .store
            .claim_due_runs(Timestamp(T0 + 10), &real_lease("w1"), 2, IN_FLIGHT)
            .await
            .unwrap();
        assert_eq!(
            claimed.iter().map(|c| &c.run.id).collect::<Vec<_>>(),
            vec![&runs[1], &runs[2]]
        );
    }
);

store_test!(
    given_a_claimed_run_when_released_then_it_is_due_again_at_the_retry_time,
    |f| async move {
        // Given a run claimed by w1
        let run = claimed_run(&f, "ada", T0).await;
        // When another owner releases it, then nothing changes
        f.store
            .release_run(&run, "w2", Timestamp(T0 + 5))
            .await
            .unwrap();
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
        // When its owner releases it with a retry time, then it is due at that time and not
        // before
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
);

store_test!(
    given_a_claimed_run_when_an_activation_commits_then_journal_emails_timer_and_status_land_together,
    |f| async move {
        // Given a claimed run
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
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
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
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert_eq!(detail.journal.len(), 2);
        assert_eq!(detail.run.status, RunStatus::Waiting);

        // When it then completes
        assert!(complete(&f, &run, "w1").await);
        // Then the run is completed and has no timer left
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Completed);
        assert_eq!(detail.run.wake_at, None);
        assert_eq!(detail.run.activations, 2);
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
        assert_eq!(f.db.rows("timers").await, 0);
    }
);

store_test!(
    given_a_claimed_run_when_its_activation_fails_then_the_error_is_recorded,
    |f| async move {
        // Given a claimed run
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
        assert_eq!(f.db.rows("timers").await, 0);
    }
);

store_test!(
    given_activations_of_several_runs_when_they_commit_as_one_group_then_each_is_written_or_refused_on_its_own,
    |f| async move {
        // Given three claimed runs, one of which another worker holds now
        let ada = claimed_run(&f, "ada", T0).await;
        let bob = claimed_run(&f, "bob", T0).await;
        let cy = claimed_run(&f, "cy", T0).await;
        let mut ada_sleeps = waiting_commit(&f, &ada, "w1", T0 + HOUR);
        ada_sleeps.journal = vec![JournalEntry {
            seq: 0,
            kind: StepKind::Sleep,
            request: json!({"durationMs": HOUR}),
            response: json!(null),
            recorded_at: Timestamp(T0),
        }];
        let mut bob_completes = commit(&f, &bob, "w1", RunTransition::Completed);
        bob_completes.emails = vec![email(&f, &bob, 0, "bob@example.com")];
        let cy_by_a_stranger = commit(&f, &cy, "w2", RunTransition::Completed);

        // When they commit in one group
        let written = f
            .store
            .commit_activations(Arc::new([ada_sleeps.clone(), cy_by_a_stranger, bob_completes]))
            .await
            .unwrap();

        // Then the outcomes are in input order, the stranger's alone is refused
        assert_eq!(written, vec![true, false, true]);
        let ada_now = f.store.run_detail(&f.tenant, &ada).await.unwrap().unwrap();
        assert_eq!(ada_now.run.status, RunStatus::Waiting);
        assert_eq!(ada_now.journal, ada_sleeps.journal);
        let bob_now = f.store.run_detail(&f.tenant, &bob).await.unwrap().unwrap();
        assert_eq!(bob_now.run.status, RunStatus::Completed);
        let cy_now = f.store.run_detail(&f.tenant, &cy).await.unwrap().unwrap();
        assert_eq!(cy_now.run.status, RunStatus::Active);
        assert_eq!(cy_now.run.activations, 0);
        assert_eq!(f.db.rows("emails").await, 1, "bob's email is queued");

        // And a group with a failing commit writes nothing at all (the caller retries each
        // alone): ada's step 0 is already recorded
        claim_due(&f, "w1", T0 + HOUR).await;
        let mut clash = commit(&f, &ada, "w1", RunTransition::Completed);
        clash.journal = ada_sleeps.journal.clone();
        let cy_completes = commit(&f, &cy, "w1", RunTransition::Completed);
        assert!(f
            .store
            .commit_activations(Arc::new([cy_completes, clash]))
            .await
            .is_err());
        let cy_now = f.store.run_detail(&f.tenant, &cy).await.unwrap().unwrap();
        assert_eq!(cy_now.run.status, RunStatus::Active, "rolled back with the group");
    }
);

store_test!(
    given_an_exited_run_or_a_lost_lease_when_an_activation_commits_then_nothing_is_written,
    |f| async move {
        // Given a run claimed by w1
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
        let exited =
            f.db.execute(
                "UPDATE runs SET status = 'exited' WHERE CAST(id AS TEXT) = $1",
                &[run.as_str()],
            )
            .await
            .unwrap();
        assert_eq!(exited, 1);
        sleep.lease_owner = "w1".into();
        // Then nothing is written either
        assert!(!f.store.commit_activation(sleep).await.unwrap());

        // And a tenant mismatch is refused the same way
        let mut foreign = commit(&f, &run, "w1", RunTransition::Completed);
        foreign.tenant_id = TenantId::generate();
        assert!(!f.store.commit_activation(foreign).await.unwrap());

        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert!(detail.journal.is_empty());
        assert_eq!(detail.run.status, RunStatus::Exited);
        assert_eq!(detail.run.activations, 0);
        assert_eq!(f.db.rows("emails").await, 0);
        // The exited run's leftover timer is never claimed again
        let again = f
            .store
            .claim_due_runs(
                Timestamp(T0 + HOUR),
                &lease("w3", Clock::real_now().0 + 60_000),
                10,
                IN_FLIGHT,
            )
            .await
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
    }
);

store_test!(
    given_runs_when_listed_then_filters_apply_newest_first_within_the_limit,
    |f| async move {
        let ada = start_run(&f, "ada", T0).await;
        let bob = start_run(&f, "bob", T0 + 1).await;
        let cy = start_run(&f, "cy", T0 + 2).await;
        let list = |filter: RunFilter| {
            let store = f.store.clone();
            let tenant = f.tenant.clone();
            async move {
                store
                    .list_runs(&tenant, &filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            list(RunFilter::default()).await,
            vec![cy.clone(), bob.clone(), ada.clone()]
        );
        let limited = list(RunFilter {
            limit: 2,
            ..RunFilter::default()
        })
        .await;
        assert_eq!(limited.len(), 2);
        let for_bob = list(RunFilter {
            contact_key: Some("bob".into()),
            status: Some(RunStatus::Active),
            ..RunFilter::default()
        })
        .await;
        assert_eq!(for_bob, vec![bob.clone()]);
        let other_journey = list(RunFilter {
            journey_id: Some("win-back".into()),
            ..RunFilter::default()
        })
        .await;
        assert!(other_journey.is_empty());

        // When one run completes and another fails, then live_only lists the one left
        claim_due(&f, "w1", T0 + 2).await;
        assert!(complete(&f, &ada, "w1").await);
        let failed = RunTransition::Failed {
            error: "boom".into(),
        };
        assert!(
            f.store
                .commit_activation(commit(&f, &cy, "w1", failed))
                .await
                .unwrap()
        );
        let live = list(RunFilter {
            live_only: true,
            ..RunFilter::default()
        })
        .await;
        assert_eq!(live, vec![bob.clone()]);
        let live_ada = list(RunFilter {
            contact_key: Some("ada".into()),
            live_only: true,
            ..RunFilter::default()
        })
        .await;
        assert!(live_ada.is_empty());
    }
);

store_test!(
    given_unreadable_rows_when_read_then_they_are_reported_as_corrupt_not_panics,
    |f| async move {
        // Given a run whose stored input is not a run input
        let run = start_run(&f, "ada", T0).await;
        f.db.execute(
            "UPDATE runs SET input = '{\"not\": \"a run input\"}' WHERE CAST(id AS TEXT) = $1",
            &[run.as_str()],
        )
        .await
        .unwrap();
        // Then loading it is a clear corruption error
        let err = f.store.run_detail(&f.tenant, &run).await.unwrap_err();
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

        // Given a run whose status is unknown (bypassing the schema's checks)
        f.db.force_run_status(run.as_str(), "sleeping").await;
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
);
