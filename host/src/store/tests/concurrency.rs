//! Concurrency: two stores (hosts) on one database, concurrent writers, and concurrent first
//! events of one new person.

use super::*;
use crate::store::IngestWithoutModules;

store_test!(
    given_two_stores_on_one_database_when_both_claim_then_no_run_is_claimed_twice,
    |f| async move {
        // Given two hosts (separate pools, separate writer locks) on the same database
        let other = f.db.open_store().await.unwrap();
        for i in 0..30 {
            start_run(&f, &format!("p{i}"), T0 + i).await;
        }

        // When both claim in small batches at the same time
        let claim_all = |store: Arc<dyn Store>, owner: &'static str| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_due_runs(Timestamp(T0 + 100), &real_lease(owner), 3, IN_FLIGHT)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.run.id));
                }
            })
        };
        let a = claim_all(f.store.clone(), "host-a");
        let b = claim_all(other, "host-b");
        let (a, b) = (a.await.unwrap(), b.await.unwrap());

        // Then every run is claimed exactly once
        let mut all: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(a.len() + b.len(), 30);
        assert_eq!(all.len(), 30);
    }
);

store_test!(
    given_concurrent_writers_when_they_ingest_then_they_wait_instead_of_failing,
    |f| async move {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = f.store.clone();
            let tenant = f.tenant.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .ingest_plain(vec![IngestItem {
                        routing: None,
                        event: event(&tenant, &format!("p{}", i % 5), T0 + i),
                        candidates: vec![welcome(EntryLimit::Unlimited)],
                    }])
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(f.db.rows("events").await, 40);
        assert_eq!(f.db.rows("runs").await, 5);
        assert_eq!(f.db.rows("contacts").await, 5);
    }
);

store_test!(
    given_a_new_person_when_twenty_first_events_arrive_at_once_then_exactly_one_contact_exists,
    |f| async move {
        // Given a person nobody has seen; when twenty events for them arrive concurrently,
        // half naming only the email, half the user id and the email, all triggering a journey
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = f.store.clone();
            let tenant = f.tenant.clone();
            tasks.push(tokio::spawn(async move {
                let user = (i % 2 == 1).then_some("ada");
                let identity = Identity::new(user, Some("Ada@Example.com"), None);
                store
                    .ingest_plain(vec![IngestItem {
                        routing: None,
                        event: event_as(&tenant, identity, T0 + i),
                        candidates: vec![welcome(EntryLimit::Unlimited)],
                    }])
                    .await
            }));
        }
        for task in tasks {
            let outcomes = task.await.unwrap().unwrap();
            assert!(
                matches!(&outcomes[..], [IngestOutcome::Stored { .. }]),
                "{outcomes:?}"
            );
        }

        // Then exactly one contact was ever created, and all history is under its final key
        assert_eq!(f.db.rows("contacts").await, 1);
        let ada = contact(&f, "ada").await;
        assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM events WHERE contact_key = $1",
                &["ada"]
            )
            .await,
            20
        );
        // And the journey started once (one live run per person)
        assert_eq!(f.db.rows("runs").await, 1);
        assert_eq!(
            f.db.count("SELECT COUNT(*) FROM runs WHERE contact_key = $1", &["ada"])
                .await,
            1
        );
    }
);
