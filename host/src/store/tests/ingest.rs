//! Ingest: idempotency (across and within batches), batches all or nothing, entry limits, the
//! one-live-run rule and the person snapshot.

use super::*;
use crate::journeys::{PersonSnapshot, RunStatus, SkipReason};
use crate::store::IngestWithoutModules;
use crate::store::{SkippedRun, StoreError};

store_test!(
    given_an_event_with_an_idempotency_key_when_the_key_comes_again_then_nothing_changes,
    |f| async move {
        // Given an event stored with an idempotency key
        let mut first = event(&f.tenant, "ada", T0);
        first.idempotency_key = Some("k-1".into());
        first.contact_properties = obj(json!({"plan": "free"}));
        let first_id = first.id.clone();
        ingest(&f, first, &[]).await;

        // When another event arrives with the same key, a new property and a journey to start
        let mut again = event(&f.tenant, "ada", T0 + HOUR);
        again.idempotency_key = Some("k-1".into());
        again.contact_properties = obj(json!({"plan": "pro"}));
        let outcome = ingest(&f, again, &[welcome(EntryLimit::Unlimited)]).await;

        // Then it is a duplicate of the first, and neither the contact nor the runs changed
        assert_eq!(outcome, IngestOutcome::Duplicate { event_id: first_id });
        let ada = contact(&f, "ada").await;
        assert_eq!(ada.properties, obj(json!({"plan": "free"})));
        assert_eq!(ada.last_seen_at, Timestamp(T0));
        assert_eq!(f.db.rows("events").await, 1);
        assert_eq!(f.db.rows("runs").await, 0);
        assert_eq!(f.db.rows("timers").await, 0);
    }
);

store_test!(
    given_a_key_used_in_one_tenant_when_another_tenant_uses_it_then_it_is_stored,
    |f| async move {
        // Given an event with an idempotency key in one tenant
        let other = second_tenant(&f).await;
        let mut a = event(&f.tenant, "ada", T0);
        a.idempotency_key = Some("k-1".into());
        let mut b = event(&other, "ada", T0);
        b.idempotency_key = Some("k-1".into());
        ingest(&f, a, &[]).await;
        // When another tenant sends an event with the same key
        let outcome = ingest(&f, b, &[]).await;
        // Then it is stored, not taken for a duplicate
        assert!(
            matches!(outcome, IngestOutcome::Stored { .. }),
            "{outcome:?}"
        );
    }
);

store_test!(
    given_a_batch_repeating_a_key_when_ingested_then_the_later_item_is_a_duplicate_of_the_earlier,
    |f| async move {
        // Given a batch whose second item repeats the first one's idempotency key
        let mut first = event(&f.tenant, "ada", T0);
        first.idempotency_key = Some("k-1".into());
        first.contact_properties = obj(json!({"plan": "free"}));
        let mut repeat = event(&f.tenant, "ada", T0 + 1);
        repeat.idempotency_key = Some("k-1".into());
        repeat.contact_properties = obj(json!({"plan": "pro"}));
        let other = event(&f.tenant, "bob", T0 + 2);
        let first_id = first.id.clone();
        let other_id = other.id.clone();
        let item = |event| IngestItem {
            routing: None,
            event,
            candidates: vec![welcome(EntryLimit::Unlimited)],
        };

        // When the batch is ingested
        let outcomes = f
            .store
            .ingest_plain(vec![item(first), item(repeat), item(other)])
            .await
            .unwrap();

        // Then the outcomes are in input order: stored, duplicate of the first, stored
        assert_eq!(outcomes.len(), 3);
        assert!(
            matches!(&outcomes[0], IngestOutcome::Stored { event_id, contact_key, started, .. }
                if *event_id == first_id && contact_key == "ada" && started.len() == 1),
            "{:?}",
            outcomes[0]
        );
        assert_eq!(
            outcomes[1],
            IngestOutcome::Duplicate {
                event_id: first_id.clone()
            }
        );
        assert!(
            matches!(&outcomes[2], IngestOutcome::Stored { event_id, contact_key, .. }
                if *event_id == other_id && contact_key == "bob"),
            "{:?}",
            outcomes[2]
        );
        // And the duplicate changed nothing
        assert_eq!(
            contact(&f, "ada").await.properties,
            obj(json!({"plan": "free"}))
        );
        assert_eq!(f.db.rows("events").await, 2);
        assert_eq!(f.db.rows("runs").await, 2);
    }
);

store_test!(
    given_a_batch_with_an_invalid_item_when_ingested_then_nothing_of_it_is_written,
    |f| async move {
        // Given a batch whose second event identifies nobody
        let good = event(&f.tenant, "ada", T0);
        let nobody = event_as(&f.tenant, Identity::default(), T0 + 1);
        let batch = vec![
            IngestItem {
                routing: None,
                event: good,
                candidates: vec![welcome(EntryLimit::Unlimited)],
            },
            IngestItem {
                routing: None,
                event: nobody,
                candidates: vec![],
            },
        ];
        // When it is ingested
        let err = f.store.ingest_plain(batch).await.unwrap_err();
        // Then it fails as invalid and the first item was not written either
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(f.db.rows("events").await, 0);
        assert_eq!(f.db.rows("contacts").await, 0);
        assert_eq!(f.db.rows("runs").await, 0);
        // And an empty batch is simply empty
        assert!(f.store.ingest_plain(vec![]).await.unwrap().is_empty());
    }
);

store_test!(
    given_a_new_person_when_their_first_event_triggers_a_journey_then_the_run_is_due_at_once,
    |f| async move {
        // Given a new person
        // When their first event triggers a journey
        let run = start_run(&f, "ada", T0).await;
        // Then the run is active, created at the receive time, and claimable right then
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Active);
        assert_eq!(detail.run.contact_key, "ada");
        assert_eq!(detail.run.created_at, Timestamp(T0));
        assert_eq!(detail.run.activations, 0);
        assert_eq!(detail.input.trigger.name, "user.signed_up");
        assert_eq!(detail.input.trigger.occurred_at, Timestamp(T0 - 5));
        assert_eq!(
            detail.input.trigger.properties,
            obj(json!({"source": "web"}))
        );
        assert_eq!(
            detail.input.person.email.as_deref(),
            Some("ada@example.com")
        );
        assert!(detail.journal.is_empty());
        assert_eq!(f.store.next_due_at().await.unwrap(), Some(Timestamp(T0)));
        // and the claim carries what its activation needs
        let claimed = claim_due(&f, "w1", T0).await;
        assert_eq!(claimed, vec![detail]);
    }
);

store_test!(
    given_a_completed_once_only_run_when_the_trigger_comes_again_then_no_run_starts,
    |f| async move {
        // Given a person whose only run of a once-only journey has completed
        let run = start_run_limited(&f, "ada", T0, EntryLimit::Once).await;
        claim_due(&f, "w1", T0).await;
        assert!(complete(&f, &run, "w1").await);

        // When the trigger happens again, days later
        let second = ingest(
            &f,
            event(&f.tenant, "ada", T0 + 72 * HOUR),
            &[welcome(EntryLimit::Once)],
        )
        .await;

        // Then no run starts: the person already entered once
        let IngestOutcome::Stored {
            started, skipped, ..
        } = second
        else {
            panic!("{second:?}")
        };
        assert!(started.is_empty());
        assert_eq!(
            skipped,
            vec![SkippedRun {
                journey_id: "welcome".into(),
                reason: SkipReason::AlreadyEnteredOnce
            }]
        );
        assert_eq!(f.db.rows("runs").await, 1);
    }
);

store_test!(
    given_a_once_per_day_journey_when_the_trigger_repeats_then_the_period_counts_from_the_latest_start,
    |f| async move {
        // Given a person whose run started at T0 and completed
        let limit = EntryLimit::OncePer(24 * HOUR as u64);
        let run = claimed_run(&f, "ada", T0).await;
        complete(&f, &run, "w1").await;
        // When the trigger happens again within a day, then no run starts
        let early = ingest(&f, event(&f.tenant, "ada", T0 + HOUR), &[welcome(limit)]).await;
        assert!(
            matches!(&early, IngestOutcome::Stored { skipped, .. } if skipped[0].reason == SkipReason::PeriodNotElapsed),
            "{early:?}"
        );
        // When it happens again a day after the start, then a run starts
        let later = ingest(&f, event(&f.tenant, "ada", T0 + 24 * HOUR), &[welcome(limit)]).await;
        assert!(
            matches!(&later, IngestOutcome::Stored { started, .. } if started.len() == 1),
            "{later:?}"
        );
    }
);

store_test!(
    given_a_live_run_when_the_trigger_fires_again_then_no_second_live_run_starts,
    |f| async move {
        // Given a person with a live (waiting) run of a journey without entry limit
        let run = claimed_run(&f, "ada", T0).await;
        f.store
            .commit_activation(waiting_commit(&f, &run, "w1", T0 + HOUR))
            .await
            .unwrap();

        // When the trigger fires again for them, listing the journey twice, and for someone else
        let again = ingest(
            &f,
            event(&f.tenant, "ada", T0 + 10),
            &[
                welcome(EntryLimit::Unlimited),
                welcome(EntryLimit::Unlimited),
            ],
        )
        .await;
        let other = ingest(
            &f,
            event(&f.tenant, "bob", T0 + 10),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;

        // Then the person gets no second run, while the other person gets theirs
        let IngestOutcome::Stored {
            started, skipped, ..
        } = again
        else {
            panic!("{again:?}")
        };
        assert!(started.is_empty());
        assert_eq!(skipped.len(), 2);
        assert!(
            skipped
                .iter()
                .all(|s| s.reason == SkipReason::AlreadyActive)
        );
        assert!(matches!(other, IngestOutcome::Stored { started, .. } if started.len() == 1));

        // And the database itself refuses a second live run of the journey for a person
        let err =
            f.db.execute(
                "UPDATE runs SET contact_key = $1 WHERE contact_key = $2",
                &["ada", "bob"],
            )
            .await
            .unwrap_err();
        assert!(
            err.as_database_error()
                .is_some_and(|e| e.is_unique_violation()),
            "the partial unique index must refuse it: {err}"
        );
    }
);

store_test!(
    given_a_contact_with_properties_when_an_event_patches_them_then_the_run_snapshots_the_merge,
    |f| async move {
        // Given a contact with properties
        let mut first = event(&f.tenant, "ada", T0);
        first.contact_properties = obj(json!({"plan": "free", "name": "Ada", "age": 36}));
        ingest(&f, first, &[]).await;

        // When an event without the email patches them (overwrite, add, null removes) and
        // starts a run
        let mut second = event(&f.tenant, "ada", T0 + HOUR);
        second.identity.email = None;
        second.contact_properties = obj(json!({"plan": "pro", "name": null, "city": "London"}));
        let (_, started) = ingest_stored(&f, second, &[welcome(EntryLimit::Unlimited)]).await;

        // Then the run's person is the merged contact, keeping the email it already had
        let detail = f
            .store
            .run_detail(&f.tenant, &started[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            detail.input.person,
            PersonSnapshot {
                key: "ada".into(),
                email: Some("ada@example.com".into()),
                properties: obj(json!({"plan": "pro", "age": 36, "city": "London"})),
            }
        );
        let ada = contact(&f, "ada").await;
        assert_eq!(ada.first_seen_at, Timestamp(T0));
        assert_eq!(ada.last_seen_at, Timestamp(T0 + HOUR));
    }
);

store_test!(
    given_a_known_person_when_events_change_nothing_or_their_properties_then_last_seen_is_the_latest,
    |f| async move {
        // Given a person first seen at T0 with a property
        let mut first = event(&f.tenant, "ada", T0);
        first.contact_properties = obj(json!({"plan": "free"}));
        ingest(&f, first, &[]).await;

        // When an event that changes nothing about them arrives an hour later
        ingest(&f, event(&f.tenant, "ada", T0 + HOUR), &[]).await;

        // Then they were last seen then, and nothing else changed
        let ada = contact(&f, "ada").await;
        assert_eq!(ada.first_seen_at, Timestamp(T0));
        assert_eq!(ada.last_seen_at, Timestamp(T0 + HOUR));
        assert_eq!(ada.properties, obj(json!({"plan": "free"})));

        // When one changes a property, and a later one changes nothing again
        let mut upgrade = event(&f.tenant, "ada", T0 + 2 * HOUR);
        upgrade.contact_properties = obj(json!({"plan": "pro"}));
        ingest(&f, upgrade, &[]).await;
        assert_eq!(
            contact(&f, "ada").await.last_seen_at,
            Timestamp(T0 + 2 * HOUR)
        );
        ingest(&f, event(&f.tenant, "ada", T0 + 3 * HOUR), &[]).await;

        // Then each read shows the latest time and the latest properties
        let ada = contact(&f, "ada").await;
        assert_eq!(ada.last_seen_at, Timestamp(T0 + 3 * HOUR));
        assert_eq!(ada.properties, obj(json!({"plan": "pro"})));
    }
);

store_test!(
    given_one_batch_of_triggers_when_the_guards_read_up_front_then_each_sees_the_ones_before,
    |f| async move {
        // Given bob with a live welcome run, carol who opted out (by address), and dave
        // whose only run of the once-only journey completed
        start_run(&f, "bob", T0).await;
        ingest(&f, event(&f.tenant, "carol", T0), &[]).await;
        f.store
            .unsubscribe(
                &f.tenant,
                "someone-else",
                "carol@example.com",
                Timestamp(T0),
            )
            .await
            .unwrap();
        let dave = start_run_limited(&f, "dave", T0, EntryLimit::Once).await;
        claim_due(&f, "w1", T0).await;
        assert!(complete(&f, &dave, "w1").await);
        let trigger = |user: &str, at: i64, limit: EntryLimit| IngestItem {
            routing: None,
            event: event(&f.tenant, user, at),
            candidates: vec![welcome(limit)],
        };

        // When one batch triggers the journey for a new person twice, then for each of them
        let once = EntryLimit::Once;
        let outcomes = f
            .store
            .ingest_plain(vec![
                trigger("ada", T0 + HOUR, once),
                trigger("ada", T0 + HOUR + 1, once),
                trigger("bob", T0 + HOUR + 2, EntryLimit::Unlimited),
                trigger("carol", T0 + HOUR + 3, EntryLimit::Unlimited),
                trigger("dave", T0 + HOUR + 4, once),
            ])
            .await
            .unwrap();

        // Then ada's first starts a run, which her second sees; bob's live run, carol's
        // opt-out and dave's completed run each keep a run from starting
        let summary: Vec<(usize, Option<SkipReason>)> = outcomes
            .iter()
            .map(|outcome| match outcome {
                IngestOutcome::Stored {
                    started, skipped, ..
                } => (started.len(), skipped.first().map(|s| s.reason)),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, None),
                (0, Some(SkipReason::AlreadyEnteredOnce)),
                (0, Some(SkipReason::AlreadyActive)),
                (0, Some(SkipReason::UserUnsubscribed)),
                (0, Some(SkipReason::AlreadyEnteredOnce)),
            ]
        );
        assert_eq!(f.db.rows("runs").await, 3);
    }
);
