//! Journey administration in the store: the enrollment guards' skips counted by reason (in the
//! ingest transaction, per batch), the admin switch read by the next ingest, runs by status,
//! `exitOn` events ending live runs inside ingest (an activation in flight then commits
//! nothing), and admin cancels.

use super::*;
use crate::buckets::BucketRegistry;
use crate::journeys::{RunStatus, SkipReason};
use crate::store::{CancelOutcome, ExitedRun, IngestRouting, JourneyStats};
use std::collections::{BTreeMap, HashMap};

/// Routing with no journeys and no buckets, whose events exit journeys: (event name, journey).
struct ExitRouting(Vec<(&'static str, &'static str)>);

impl IngestRouting for ExitRouting {
    fn journeys(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<RunCandidate> {
        Vec::new()
    }

    fn exits(&self, _: &TenantId, event_name: &str, _: &Map<String, Value>) -> Vec<String> {
        self.0
            .iter()
            .filter(|(event, _)| *event == event_name)
            .map(|(_, journey)| (*journey).to_owned())
            .collect()
    }

    fn buckets(&self, _: &TenantId) -> Option<Arc<BucketRegistry>> {
        None
    }
}

/// Ingest one event with `candidates` under `routing`; its outcome.
async fn ingest_routed(
    f: &Fixture,
    event: NewEvent,
    candidates: &[RunCandidate],
    routing: ExitRouting,
) -> IngestOutcome {
    let mut outcomes = f
        .store
        .ingest(
            Arc::new([IngestItem {
                routing: None,
                event,
                candidates: candidates.to_vec(),
            }]),
            Arc::new(routing),
        )
        .await
        .unwrap();
    outcomes.pop().unwrap()
}

fn named(tenant: &TenantId, name: &str, user: &str, at: i64) -> NewEvent {
    let mut e = event(tenant, user, at);
    e.name = name.into();
    e
}

fn skips_of(outcome: &IngestOutcome) -> Vec<SkipReason> {
    match outcome {
        IngestOutcome::Stored { skipped, .. } => skipped.iter().map(|s| s.reason).collect(),
        other => panic!("expected a stored event, got {other:?}"),
    }
}

async fn stats(f: &Fixture, journey: &str) -> JourneyStats {
    f.store
        .journey_stats(&f.tenant, Some(journey))
        .await
        .unwrap()
        .remove(journey)
        .unwrap_or_default()
}

store_test!(
    given_each_guard_failing_when_triggers_arrive_then_every_skip_is_counted_by_reason,
    |f| async move {
        // Given candidates that each fail one guard: declared disabled, trigger filter missed,
        // a once-only journey entered before, a live run
        let mut disabled = journey("dormant", EntryLimit::Unlimited);
        disabled.declared_enabled = false;
        let mut filtered = journey("pro-only", EntryLimit::Unlimited);
        filtered.trigger_matches = false;
        start_run_limited(&f, "ada", T0, EntryLimit::Once).await;

        // When the trigger arrives twice, once alone and then in a batch of two
        let candidates = [disabled, filtered, welcome(EntryLimit::Once)];
        let first = ingest(&f, event(&f.tenant, "ada", T0 + 1), &candidates).await;
        let batch = f
            .store
            .ingest_plain(
                (0..2)
                    .map(|i| IngestItem {
                        routing: None,
                        event: event(&f.tenant, "ada", T0 + 2 + i),
                        candidates: candidates.to_vec(),
                    })
                    .collect(),
            )
            .await
            .unwrap();

        // Then each answer names the failing guard of each journey
        assert_eq!(
            skips_of(&first),
            [
                SkipReason::JourneyDisabled,
                SkipReason::TriggerConditionsNotMet,
                SkipReason::AlreadyEnteredOnce,
            ]
        );
        assert!(batch.iter().all(|o| skips_of(o) == skips_of(&first)));
        // And the counters hold every skip, by journey and reason
        assert_eq!(
            stats(&f, "dormant").await.skips,
            BTreeMap::from([(SkipReason::JourneyDisabled, 3)])
        );
        assert_eq!(
            stats(&f, "pro-only").await.skips,
            BTreeMap::from([(SkipReason::TriggerConditionsNotMet, 3)])
        );
        let welcome_stats = stats(&f, "welcome").await;
        assert_eq!(
            welcome_stats.skips,
            BTreeMap::from([(SkipReason::AlreadyEnteredOnce, 3)])
        );
        // And the runs are counted by status, the admin switch never set
        assert_eq!(welcome_stats.runs, BTreeMap::from([(RunStatus::Active, 1)]));
        assert_eq!(welcome_stats.admin_enabled, None);
        // And a duplicate event counts nothing
        let mut dup = event(&f.tenant, "ada", T0 + 9);
        dup.idempotency_key = Some("k".into());
        ingest(&f, dup.clone(), &candidates).await;
        dup.id = EventId::generate();
        assert!(matches!(
            ingest(&f, dup, &candidates).await,
            IngestOutcome::Duplicate { .. }
        ));
        assert_eq!(
            stats(&f, "dormant").await.skips[&SkipReason::JourneyDisabled],
            4
        );
    }
);

store_test!(
    given_a_live_run_when_the_trigger_repeats_then_it_is_skipped_as_already_active_and_counted,
    |f| async move {
        // Given a live run of a journey without entry limit
        start_run(&f, "ada", T0).await;
        // When the trigger comes again
        let again = ingest(
            &f,
            event(&f.tenant, "ada", T0 + 1),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        // Then it is skipped as already active, and counted
        assert_eq!(skips_of(&again), [SkipReason::AlreadyActive]);
        assert_eq!(
            stats(&f, "welcome").await.skips,
            BTreeMap::from([(SkipReason::AlreadyActive, 1)])
        );
    }
);

store_test!(
    given_an_admin_disabled_journey_when_its_trigger_arrives_then_it_is_skipped_until_re_enabled,
    |f| async move {
        // Given a journey an admin switched off
        f.store
            .set_journey_enabled(&f.tenant, "welcome", false, Timestamp(T0))
            .await
            .unwrap();

        // When its trigger arrives
        let off = ingest(
            &f,
            event(&f.tenant, "ada", T0),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;

        // Then no run starts: skipped by the admin switch, and counted
        assert_eq!(skips_of(&off), [SkipReason::JourneyDisabledByAdmin]);
        let s = stats(&f, "welcome").await;
        assert_eq!(s.admin_enabled, Some(false));
        assert_eq!(
            s.skips,
            BTreeMap::from([(SkipReason::JourneyDisabledByAdmin, 1)])
        );
        assert!(s.runs.is_empty());

        // When the admin switches it on again, then the next trigger starts a run
        f.store
            .set_journey_enabled(&f.tenant, "welcome", true, Timestamp(T0 + 1))
            .await
            .unwrap();
        let (_, started) = ingest_stored(
            &f,
            event(&f.tenant, "ada", T0 + 2),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        assert_eq!(started.len(), 1);
        assert_eq!(stats(&f, "welcome").await.admin_enabled, Some(true));
    }
);

store_test!(
    given_two_tenants_when_one_switches_a_journey_off_then_the_other_is_untouched,
    |f| async move {
        // Given a second tenant with the same journey id, and the first tenant's switch off
        let globex = second_tenant(&f).await;
        f.store
            .set_journey_enabled(&f.tenant, "welcome", false, Timestamp(T0))
            .await
            .unwrap();
        ingest(
            &f,
            event(&f.tenant, "ada", T0),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;

        // When the second tenant's trigger arrives, then its run starts
        let (_, started) = ingest_stored(
            &f,
            event(&globex, "ada", T0),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        assert_eq!(started.len(), 1);

        // And each tenant's stats are its own
        let theirs = f.store.journey_stats(&globex, None).await.unwrap();
        assert_eq!(
            theirs,
            HashMap::from([(
                "welcome".to_owned(),
                JourneyStats {
                    admin_enabled: None,
                    runs: BTreeMap::from([(RunStatus::Active, 1)]),
                    skips: BTreeMap::new(),
                }
            )])
        );
        let ours = stats(&f, "welcome").await;
        assert!(ours.runs.is_empty());
        assert_eq!(ours.admin_enabled, Some(false));
    }
);

store_test!(
    given_a_waiting_run_when_an_exit_event_arrives_then_it_exits_without_a_timer,
    |f| async move {
        // Given a waiting run of "welcome" for ada, and one for bob
        let run = claimed_run(&f, "ada", T0).await;
        assert!(
            f.store
                .commit_activation(waiting_commit(&f, &run, "w1", T0 + HOUR))
                .await
                .unwrap()
        );
        let bobs = start_run(&f, "bob", T0).await;

        // When ada fires the journey's exit event
        let outcome = ingest_routed(
            &f,
            named(&f.tenant, "account.deleted", "ada", T0 + 10),
            &[],
            ExitRouting(vec![("account.deleted", "welcome")]),
        )
        .await;

        // Then her run is listed as exited, and is exited with no timer left
        let IngestOutcome::Stored { exited, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            exited,
            &[ExitedRun {
                run_id: run.clone(),
                journey_id: "welcome".into()
            }]
        );
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Exited);
        assert_eq!(detail.run.wake_at, None);
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM timers WHERE run_id = $1",
                &[run.as_str()]
            )
            .await,
            0
        );
        // And it is never claimed again, while bob's run is untouched
        let due = claim_due(&f, "w2", T0 + 2 * HOUR).await;
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].run.id, bobs);

        // And an event of another name exits nothing
        let other = ingest_routed(
            &f,
            named(&f.tenant, "account.created", "bob", T0 + 20),
            &[],
            ExitRouting(vec![("account.deleted", "welcome")]),
        )
        .await;
        assert!(matches!(other, IngestOutcome::Stored { exited, .. } if exited.is_empty()));
    }
);

store_test!(
    given_an_activation_in_flight_when_its_run_exits_then_its_commit_and_email_are_dropped,
    |f| async move {
        // Given a run claimed by a worker that is running its activation
        let run = claimed_run(&f, "ada", T0).await;

        // When the exit event arrives before the activation commits
        ingest_routed(
            &f,
            named(&f.tenant, "account.deleted", "ada", T0 + 1),
            &[],
            ExitRouting(vec![("account.deleted", "welcome")]),
        )
        .await;

        // Then the activation's commit, with its email, is refused and writes nothing
        let mut c = commit(&f, &run, "w1", RunTransition::Completed);
        c.emails = vec![email(&f, &run, 0, "ada@example.com")];
        assert!(!f.store.commit_activation(c).await.unwrap());
        assert_eq!(f.db.rows("emails").await, 0);
        assert_eq!(f.db.count("SELECT COUNT(*) FROM journal", &[]).await, 0);
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Exited);
    }
);

store_test!(
    given_an_event_that_both_exits_and_triggers_a_journey_then_the_old_run_exits_and_a_new_one_starts,
    |f| async move {
        // Given a live run of "welcome"
        let old = start_run(&f, "ada", T0).await;

        // When an event arrives that is both its exit event and its trigger
        let outcome = ingest_routed(
            &f,
            named(&f.tenant, "user.signed_up", "ada", T0 + 1),
            &[welcome(EntryLimit::Unlimited)],
            ExitRouting(vec![("user.signed_up", "welcome")]),
        )
        .await;

        // Then only the run that existed before exits, and a new one starts
        let IngestOutcome::Stored {
            exited, started, ..
        } = &outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(exited.len(), 1);
        assert_eq!(exited[0].run_id, old);
        assert_eq!(started.len(), 1);
        assert_ne!(started[0].run_id, old);
        let welcome_stats = stats(&f, "welcome").await;
        assert_eq!(
            welcome_stats.runs,
            BTreeMap::from([(RunStatus::Active, 1), (RunStatus::Exited, 1)])
        );
    }
);

store_test!(
    given_runs_in_every_state_when_cancelled_then_only_a_live_run_of_the_tenant_exits,
    |f| async move {
        // Given a live run, and another tenant
        let run = start_run(&f, "ada", T0).await;
        let globex = second_tenant(&f).await;

        // When another tenant cancels it, then it is not found there
        assert_eq!(
            f.store
                .cancel_run(&globex, &run, Timestamp(T0 + 1))
                .await
                .unwrap(),
            CancelOutcome::NotFound
        );
        // When its tenant cancels it, then it exits and loses its timer
        assert_eq!(
            f.store
                .cancel_run(&f.tenant, &run, Timestamp(T0 + 1))
                .await
                .unwrap(),
            CancelOutcome::Cancelled {
                journey_id: "welcome".into()
            }
        );
        assert_eq!(f.db.rows("timers").await, 0);
        assert!(claim_due(&f, "w1", T0 + HOUR).await.is_empty());
        // When cancelled again, then it has already finished
        assert_eq!(
            f.store
                .cancel_run(&f.tenant, &run, Timestamp(T0 + 2))
                .await
                .unwrap(),
            CancelOutcome::AlreadyFinished(RunStatus::Exited)
        );
        // And an unknown run is not found
        assert_eq!(
            f.store
                .cancel_run(&f.tenant, &RunId("nope".into()), Timestamp(T0 + 2))
                .await
                .unwrap(),
            CancelOutcome::NotFound
        );
    }
);
