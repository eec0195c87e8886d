//! Usage per tenant: counted by the transactions that do the work, once — an ingest batch (a
//! PostgreSQL batch run again included), a group commit of activations (not one whose lease
//! was lost), an email marked sent (not a late second report) — on the UTC day of the work,
//! and read back per day and per tenant.

use super::membership::{TestRouting, pro};
use super::*;
use crate::buckets::BucketRegistry;
use crate::store::{DeliveryResult, IngestRouting};
use crate::usage::{Day, DayRange, DayUsage, UsageCounts};

/// T0 is 2023-11-14T22:13:20Z: two hours later is the next day.
const NEXT_DAY: i64 = T0 + 2 * HOUR;

fn day(at: i64) -> Day {
    Day::of(Timestamp(at))
}

/// A week around T0.
fn week() -> DayRange {
    DayRange {
        from: day(T0).plus(-3),
        to: day(T0).plus(3),
    }
}

fn counts(events: u64, activations: u64, cpu_us: u64, emails_sent: u64) -> UsageCounts {
    UsageCounts {
        events,
        activations,
        cpu_us,
        emails_sent,
    }
}

/// The tenant's usage over [`week`], as (day, counts).
async fn usage(f: &Fixture, tenant: &TenantId) -> Vec<(Day, UsageCounts)> {
    f.store
        .usage_by_day(tenant, week())
        .await
        .unwrap()
        .into_iter()
        .map(|DayUsage { day, counts }| (day, counts))
        .collect()
}

fn item(event: NewEvent) -> IngestItem {
    IngestItem {
        routing: None,
        event,
        candidates: vec![],
    }
}

store_test!(
    given_a_batch_with_a_duplicate_when_ingested_then_each_stored_event_counts_on_the_day_it_was_received,
    |f| async move {
        // Given an event with an idempotency key, already ingested
        let mut first = event(&f.tenant, "ada", T0);
        first.idempotency_key = Some("k-1".into());
        ingest_stored(&f, first.clone(), &[]).await;

        // When a batch brings it again, another event that day and one the next day
        let mut again = first;
        again.id = EventId::generate();
        let outcomes = f
            .store
            .ingest_plain(vec![
                item(again),
                item(event(&f.tenant, "bob", T0 + 1)),
                item(event(&f.tenant, "cy", NEXT_DAY)),
            ])
            .await
            .unwrap();

        // Then the duplicate counts nothing, each stored event once, on its own day
        assert!(matches!(outcomes[0], IngestOutcome::Duplicate { .. }));
        assert_eq!(
            usage(&f, &f.tenant).await,
            [
                (day(T0), counts(2, 0, 0, 0)),
                (day(NEXT_DAY), counts(1, 0, 0, 0))
            ]
        );
    }
);

store_test!(
    given_a_transition_key_already_taken_when_a_batch_meets_it_and_runs_again_then_its_events_count_once,
    |f| async move {
        // Given a stored event holding ada's first-entry key of bucket pro (on PostgreSQL, a
        // batch that meets it rolls back and runs again, writing as it goes)
        let routing: Arc<dyn IngestRouting> = Arc::new(TestRouting {
            buckets: Arc::new(BucketRegistry::from_buckets(vec![pro()])),
            journeys: vec![("bucket:entered:pro", journey("on-enter", EntryLimit::Unlimited))],
        });
        let mut earlier = event(&f.tenant, "zed", T0);
        earlier.name = "legacy.import".into();
        earlier.idempotency_key = Some("bucket:pro:ada:entered:1".into());
        f.store
            .ingest(Arc::new([item(earlier)]), routing.clone())
            .await
            .unwrap();

        // When one batch makes ada and then bob join pro
        let upgrade = |user: &str, at: i64| {
            let mut e = event(&f.tenant, user, at);
            e.contact_properties = obj(json!({"plan": "pro"}));
            item(e)
        };
        f.store
            .ingest(
                Arc::new([upgrade("ada", T0 + 1), upgrade("bob", T0 + 2)]),
                routing.clone(),
            )
            .await
            .unwrap();

        // Then the three events ingested count once each; the transitions' events, the
        // host's, not at all
        assert_eq!(usage(&f, &f.tenant).await, [(day(T0), counts(3, 0, 0, 0))]);
        assert!(
            f.db.count("SELECT COUNT(*) FROM events", &[]).await > 3,
            "bob's transition was stored"
        );
    }
);

store_test!(
    given_a_lost_lease_when_the_activation_commits_then_nothing_is_counted,
    |f| async move {
        // Given a run claimed by w1
        let run = claimed_run(&f, "ada", T0).await;

        // When w2, whose lease it is not, commits an activation of it
        let committed = f
            .store
            .commit_activation(commit(&f, &run, "w2", RunTransition::Completed))
            .await
            .unwrap();

        // Then nothing is written and only the event counts
        assert!(!committed);
        assert_eq!(usage(&f, &f.tenant).await, [(day(T0), counts(1, 0, 0, 0))]);

        // And w1's commit counts its activation and the time its guest ran
        assert!(complete(&f, &run, "w1").await);
        assert_eq!(
            usage(&f, &f.tenant).await,
            [(day(T0), counts(1, 1, 1500, 0))]
        );
    }
);

store_test!(
    given_activations_of_two_tenants_when_committed_together_then_each_tenant_counts_each_of_its_own_once,
    |f| async move {
        // Given two runs of acme and one of globex, all claimed by w1
        let globex = second_tenant(&f).await;
        let ours = [start_run(&f, "ada", T0).await, start_run(&f, "bob", T0).await];
        let (_, theirs) = ingest_stored(
            &f,
            event(&globex, "cy", T0),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        assert_eq!(claim_due(&f, "w1", T0).await.len(), 3);

        // When their activations commit in one group commit, one of acme's a failure, with
        // one more activation whose lease w1 does not hold
        let stranger = start_run(&f, "dee", T0).await;
        let mut failed = commit(
            &f,
            &ours[1],
            "w1",
            RunTransition::Failed {
                error: "the journey trapped".into(),
            },
        );
        failed.guest_cpu = Duration::from_micros(2500);
        let mut globex_commit = waiting_commit(&f, &theirs[0], "w1", T0 + HOUR);
        globex_commit.tenant_id = globex.clone();
        globex_commit.guest_cpu = Duration::from_micros(700);
        let written = f
            .store
            .commit_activations(Arc::new([
                waiting_commit(&f, &ours[0], "w1", T0 + HOUR),
                failed,
                globex_commit,
                commit(&f, &stranger, "w1", RunTransition::Completed),
            ]))
            .await
            .unwrap();

        // Then each tenant counts its own activations and their guests' time, the failure
        // included, and nothing of the one not written
        assert_eq!(written, [true, true, true, false]);
        assert_eq!(
            usage(&f, &f.tenant).await,
            [(day(T0), counts(3, 2, 1500 + 2500, 0))]
        );
        assert_eq!(usage(&f, &globex).await, [(day(T0), counts(1, 1, 700, 0))]);
    }
);

store_test!(
    given_a_sent_email_when_its_delivery_is_reported_twice_then_it_counts_once_and_a_failure_never,
    |f| async move {
        // Given two queued emails, claimed for delivery
        run_with_queued_email(&f).await;
        let second = claimed_run(&f, "bob", T0).await;
        let mut c = commit(&f, &second, "w1", RunTransition::Completed);
        c.emails = vec![email(&f, &second, 0, "bob@example.com")];
        assert!(f.store.commit_activation(c).await.unwrap());
        let claimed = f.store.claim_outbox(&real_lease("d1"), 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let id_of = |to: &str| claimed.iter().find(|e| e.to == to).unwrap().id.clone();

        // When one is reported sent, the next day, twice (a late report of an expired
        // lease), and the other fails for good
        for _ in 0..2 {
            f.store
                .record_delivery(
                    &id_of("ada@example.com"),
                    DeliveryResult::Sent {
                        at: Timestamp(NEXT_DAY),
                    },
                )
                .await
                .unwrap();
        }
        f.store
            .record_delivery(
                &id_of("bob@example.com"),
                DeliveryResult::Failed {
                    error: "550 no such user".into(),
                    retry_at: None,
                },
            )
            .await
            .unwrap();

        // Then the sent one counts once, on the day it was sent
        assert_eq!(
            usage(&f, &f.tenant).await,
            [
                (day(T0), counts(2, 2, 3000, 0)),
                (day(NEXT_DAY), counts(0, 0, 0, 1))
            ]
        );
    }
);

store_test!(
    given_usage_on_several_days_when_read_for_a_range_then_only_its_days_count_and_every_tenant_is_listed,
    |f| async move {
        // Given acme's events on three days (one far outside the week), and globex with none
        let globex = second_tenant(&f).await;
        let far = T0 + 30 * 24 * HOUR;
        f.store
            .ingest_plain(vec![
                item(event(&f.tenant, "ada", T0)),
                item(event(&f.tenant, "bob", NEXT_DAY)),
                item(event(&f.tenant, "cy", NEXT_DAY + 1)),
                item(event(&f.tenant, "dee", far)),
            ])
            .await
            .unwrap();

        // When the week is read, per day and per tenant
        let days = usage(&f, &f.tenant).await;
        let tenants = f.store.usage_by_tenant(week()).await.unwrap();

        // Then only the week's days are there, summed, and both tenants oldest first
        assert_eq!(
            days,
            [
                (day(T0), counts(1, 0, 0, 0)),
                (day(NEXT_DAY), counts(2, 0, 0, 0))
            ]
        );
        let totals: Vec<(String, UsageCounts)> = tenants
            .into_iter()
            .map(|(tenant, counts)| (tenant.name, counts))
            .collect();
        assert_eq!(
            totals,
            [
                ("acme".into(), counts(3, 0, 0, 0)),
                ("globex".into(), counts(0, 0, 0, 0))
            ]
        );
        assert!(usage(&f, &globex).await.is_empty());
        // And a range of the far day alone finds it
        let far_day = DayRange {
            from: day(far),
            to: day(far),
        };
        let read = f.store.usage_by_day(&f.tenant, far_day).await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].counts, counts(1, 0, 0, 0));
    }
);

store_test!(
    given_two_hosts_ingesting_one_tenant_at_once_when_their_batches_commit_then_every_event_counts,
    |f| async move {
        // Given two stores (hosts) on one database
        let other = f.db.open_store().await.unwrap();

        // When both ingest 20 single-event batches of acme at once (on PostgreSQL, each
        // transaction adds to a shard of the day's counters)
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 {
                f.store.clone()
            } else {
                other.clone()
            };
            let tenant = f.tenant.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .ingest_plain(vec![item(event(&tenant, &format!("p{i}"), T0 + i))])
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }

        // Then the day counts every event, summed over its shards
        assert_eq!(usage(&f, &f.tenant).await, [(day(T0), counts(40, 0, 0, 0))]);
    }
);
