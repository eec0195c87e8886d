//! Ingest: idempotency, entry limits, the one-live-run rule and the person snapshot.

use super::*;
use crate::journeys::{PersonSnapshot, RunStatus, SkipReason};
use crate::store::{ClaimedRun, SkippedRun};

#[tokio::test]
async fn a_duplicate_idempotency_key_changes_nothing_and_names_the_original_event() {
    // Given an event stored with an idempotency key
    let f = fixture().await;
    let mut first = event(&f.tenant, "ada", T0);
    first.idempotency_key = Some("k-1".into());
    first.contact_properties = obj(json!({"plan": "free"}));
    let first_id = first.id.clone();
    f.store.ingest(first, &[]).await.unwrap();

    // When another event arrives with the same key, a new property and a journey to start
    let mut again = event(&f.tenant, "ada", T0 + HOUR);
    again.idempotency_key = Some("k-1".into());
    again.contact_properties = obj(json!({"plan": "pro"}));
    let outcome = f
        .store
        .ingest(again, &[welcome(EntryLimit::Unlimited)])
        .await
        .unwrap();

    // Then it is a duplicate of the first, and neither the contact nor the runs changed
    assert_eq!(outcome, IngestOutcome::Duplicate { event_id: first_id });
    let (props, last_seen): (String, i64) =
        sqlx::query_as("SELECT properties, last_seen_at FROM contacts WHERE key = 'ada'")
            .fetch_one(&f.store.pool)
            .await
            .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&props).unwrap(),
        json!({"plan": "free"})
    );
    assert_eq!(last_seen, T0);
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM runs").await, 0);
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM timers").await, 0);
}

#[tokio::test]
async fn the_same_idempotency_key_in_another_tenant_is_not_a_duplicate() {
    // Given an event with an idempotency key in one tenant
    let f = fixture().await;
    let other = second_tenant(&f).await;
    let mut a = event(&f.tenant, "ada", T0);
    a.idempotency_key = Some("k-1".into());
    let mut b = event(&other, "ada", T0);
    b.idempotency_key = Some("k-1".into());
    f.store.ingest(a, &[]).await.unwrap();
    // When another tenant sends an event with the same key
    let outcome = f.store.ingest(b, &[]).await.unwrap();
    // Then it is stored, not taken for a duplicate
    assert!(
        matches!(outcome, IngestOutcome::Stored { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_admitted_run_starts_active_with_a_timer_due_at_once() {
    // Given a new person
    let f = fixture().await;
    // When their first event triggers a journey
    let run = start_run(&f, "ada", T0).await;
    // Then the run is active, created at the receive time, and claimable right then
    let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
    assert_eq!(detail.run.status, RunStatus::Active);
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
    let claimed = claim_due(&f, "w1", T0).await;
    assert_eq!(
        claimed,
        vec![ClaimedRun {
            run_id: run,
            tenant_id: f.tenant.clone()
        }]
    );
}

#[tokio::test]
async fn entry_limit_once_blocks_a_second_run_after_the_first_completed() {
    // Given a person whose only run of a once-only journey has completed
    let f = fixture().await;
    let run = start_run_limited(&f, "ada", T0, EntryLimit::Once).await;
    claim_due(&f, "w1", T0).await;
    assert!(complete(&f, &run, "w1").await);

    // When the trigger happens again, days later
    let second = f
        .store
        .ingest(
            event(&f.tenant, "ada", T0 + 72 * HOUR),
            &[welcome(EntryLimit::Once)],
        )
        .await
        .unwrap();

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
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM runs").await, 1);
}

#[tokio::test]
async fn entry_limit_once_per_period_counts_from_the_latest_start() {
    // Given a person whose run started at T0 and completed
    let f = fixture().await;
    let limit = EntryLimit::OncePer(24 * HOUR as u64);
    let run = claimed_run(&f, "ada", T0).await;
    complete(&f, &run, "w1").await;
    // When the trigger happens again within a day, then no run starts
    let early = f
        .store
        .ingest(event(&f.tenant, "ada", T0 + HOUR), &[welcome(limit)])
        .await
        .unwrap();
    assert!(
        matches!(&early, IngestOutcome::Stored { skipped, .. } if skipped[0].reason == SkipReason::PeriodNotElapsed),
        "{early:?}"
    );
    // When it happens again a day after the start, then a run starts
    let later = f
        .store
        .ingest(event(&f.tenant, "ada", T0 + 24 * HOUR), &[welcome(limit)])
        .await
        .unwrap();
    assert!(
        matches!(&later, IngestOutcome::Stored { started, .. } if started.len() == 1),
        "{later:?}"
    );
}

#[tokio::test]
async fn one_live_run_per_person_and_journey() {
    // Given a person with a live (waiting) run of a journey without entry limit
    let f = fixture().await;
    let run = claimed_run(&f, "ada", T0).await;
    f.store
        .commit_activation(waiting_commit(&f, &run, "w1", T0 + HOUR))
        .await
        .unwrap();

    // When the trigger fires again for them, listing the journey twice, and for someone else
    let again = f
        .store
        .ingest(
            event(&f.tenant, "ada", T0 + 10),
            &[
                welcome(EntryLimit::Unlimited),
                welcome(EntryLimit::Unlimited),
            ],
        )
        .await
        .unwrap();
    let other = f
        .store
        .ingest(
            event(&f.tenant, "bob", T0 + 10),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await
        .unwrap();

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

    // And the database itself refuses a second live run
    let duplicate = sqlx::query(
        "INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, status, \
         input, created_at, updated_at) \
         SELECT 'x', tenant_id, journey_id, module_hash, contact_key, 'active', input, 0, 0 \
         FROM runs WHERE id = ?",
    )
    .bind(run.as_str())
    .execute(&f.store.pool)
    .await;
    assert!(
        duplicate.is_err(),
        "the partial unique index must refuse it"
    );
}

#[tokio::test]
async fn a_run_snapshots_the_person_after_the_property_merge() {
    // Given a contact with properties
    let f = fixture().await;
    let mut first = event(&f.tenant, "ada", T0);
    first.contact_properties = obj(json!({"plan": "free", "name": "Ada", "age": 36}));
    f.store.ingest(first, &[]).await.unwrap();

    // When an event patches them (overwrite, add, null removes) and starts a run
    let mut second = event(&f.tenant, "ada", T0 + HOUR);
    second.email = None;
    second.contact_properties = obj(json!({"plan": "pro", "name": null, "city": "London"}));
    let outcome = f
        .store
        .ingest(second, &[welcome(EntryLimit::Unlimited)])
        .await
        .unwrap();
    let IngestOutcome::Stored { started, .. } = outcome else {
        panic!("{outcome:?}")
    };

    // Then the run's person is the merged contact, keeping the email it already had
    let detail = f
        .store
        .load_activation(&started[0].run_id)
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
    let (first_seen, last_seen): (i64, i64) =
        sqlx::query_as("SELECT first_seen_at, last_seen_at FROM contacts WHERE key = 'ada'")
            .fetch_one(&f.store.pool)
            .await
            .unwrap();
    assert_eq!((first_seen, last_seen), (T0, T0 + HOUR));
}
