//! Bucket backfill in the store: registration queues the right backfill, claims are exclusive
//! and leased, a first-time backfill joins exactly the matchers silently (with dwell anchors),
//! a re-evaluation makes exactly the members who no longer match leave with events, progress
//! is reported and a failure is recorded until a restart.

use super::*;
use crate::buckets::backfill_rules::{BackfillMode, BackfillState};
use crate::buckets::{BucketDef, BucketRegistry, Condition};
use crate::store::{
    BackfillStatus, BackfillStep, BucketFingerprint, ClaimedBackfill, IngestRouting,
    MemberPageRequest,
};

/// Routing with the given buckets (for real-time joins) and no journeys.
struct Buckets(Arc<BucketRegistry>);

impl IngestRouting for Buckets {
    fn journeys(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<RunCandidate> {
        Vec::new()
    }

    fn exits(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }

    fn buckets(&self, _: &TenantId) -> Option<Arc<BucketRegistry>> {
        Some(self.0.clone()).filter(|r| !r.is_empty())
    }
}

fn routing(buckets: Vec<BucketDef>) -> Arc<dyn IngestRouting> {
    Arc::new(Buckets(Arc::new(BucketRegistry::from_buckets(buckets))))
}

fn bucket(id: &str, criteria: Value) -> BucketDef {
    BucketDef::computed(
        id,
        &format!("Bucket {id}"),
        Some(Condition::from_json(&criteria).expect("valid criteria")),
    )
}

/// At least `n` `purchase` events, all time.
fn buyers(n: u64) -> BucketDef {
    bucket(
        "buyers",
        json!({"type": "event", "event": "purchase", "check": "count", "operator": "gte",
               "value": n}),
    )
}

fn fingerprint(bucket: &BucketDef) -> BucketFingerprint {
    BucketFingerprint {
        bucket_id: bucket.id.clone(),
        fingerprint: bucket.criteria_fingerprint().unwrap(),
    }
}

/// `purchase` by `user` occurring at `at`, through `routing`.
async fn purchase(f: &Fixture, user: &str, at: i64, routing: &Arc<dyn IngestRouting>) {
    let mut e = event(&f.tenant, user, at);
    e.name = "purchase".into();
    e.occurred_at = Timestamp(at);
    f.store
        .ingest(
            Arc::new([IngestItem {
                routing: None,
                event: e,
                candidates: vec![],
            }]),
            routing.clone(),
        )
        .await
        .unwrap();
}

/// Purchases per person, ingested with no buckets loaded: history only.
async fn history(f: &Fixture, purchases: &[(&str, usize)]) {
    let none = routing(vec![]);
    for (user, times) in purchases {
        for i in 0..*times {
            purchase(f, user, T0 + i as i64, &none).await;
        }
    }
}

fn lease(owner: &str) -> Lease {
    Lease::starting_now(owner, std::time::Duration::from_secs(60))
}

async fn status(f: &Fixture, bucket_id: &str) -> Option<BackfillStatus> {
    f.store
        .backfill_statuses(&f.tenant)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.bucket_id == bucket_id)
}

async fn claim(f: &Fixture, bucket: &BucketDef, owner: &str) -> Option<ClaimedBackfill> {
    f.store
        .claim_backfill(
            &f.tenant,
            &[fingerprint(bucket)],
            &lease(owner),
            Timestamp(T0 + HOUR),
        )
        .await
        .unwrap()
}

/// Register `bucket`, claim its backfill and run it to the end in pages of `page_size`; the
/// steps' answers.
async fn backfill(
    f: &Fixture,
    bucket: &BucketDef,
    page_size: u32,
    routing: &Arc<dyn IngestRouting>,
) -> Vec<BackfillStep> {
    f.store
        .register_buckets(&f.tenant, &[fingerprint(bucket)], Timestamp(T0 + HOUR))
        .await
        .unwrap();
    let claimed = claim(f, bucket, "worker-1")
        .await
        .expect("a backfill to claim");
    let mut steps = Vec::new();
    loop {
        let step = f
            .store
            .backfill_step(
                &claimed,
                bucket,
                &lease("worker-1"),
                page_size,
                Timestamp(T0 + HOUR),
                routing.clone(),
            )
            .await
            .unwrap();
        steps.push(step);
        if !matches!(step, BackfillStep::Progress { .. }) {
            return steps;
        }
    }
}

async fn members(f: &Fixture, bucket_id: &str) -> Vec<String> {
    let page = f
        .store
        .bucket_members(
            &f.tenant,
            bucket_id,
            &MemberPageRequest {
                limit: Some(100),
                cursor: None,
            },
        )
        .await
        .unwrap();
    let mut keys: Vec<String> = page.members.into_iter().map(|m| m.contact_key).collect();
    keys.sort();
    keys
}

async fn events_named(f: &Fixture, name: &str) -> i64 {
    f.db.count("SELECT COUNT(*) FROM events WHERE name = $1", &[name])
        .await
}

store_test!(
    given_a_new_bucket_when_registered_then_its_config_has_no_fingerprint_and_a_pending_first_time_backfill,
    |f| async move {
        let v1 = buyers(2);
        // When a bucket is registered for the first time
        f.store
            .register_buckets(&f.tenant, &[fingerprint(&v1)], Timestamp(T0))
            .await
            .unwrap();
        // Then its first backfill is pending and no fingerprint is stored yet
        let first = status(&f, "buyers").await.unwrap();
        assert_eq!(first.criteria_hash, None);
        assert_eq!(first.state, BackfillState::Pending);
        assert_eq!(first.mode, BackfillMode::FirstTime);
        assert_eq!(first.target_hash, fingerprint(&v1).fingerprint);

        // When it is registered again with the same criteria, then nothing changes
        f.store
            .register_buckets(&f.tenant, &[fingerprint(&v1)], Timestamp(T0 + 1))
            .await
            .unwrap();
        assert_eq!(status(&f, "buyers").await.unwrap(), first);
    }
);

store_test!(
    given_a_pending_backfill_when_two_workers_claim_then_only_one_gets_it_and_a_lapsed_lease_is_taken_over,
    |f| async move {
        let v1 = buyers(2);
        history(&f, &[("ada", 2)]).await;
        f.store
            .register_buckets(&f.tenant, &[fingerprint(&v1)], Timestamp(T0))
            .await
            .unwrap();
        // A worker with other criteria for the bucket never claims it
        assert_eq!(claim(&f, &buyers(3), "worker-x").await, None);
        // When two workers claim, then one gets it, running, with the contacts counted
        let first = claim(&f, &v1, "worker-1").await.expect("the first claim");
        assert_eq!(first.mode, BackfillMode::FirstTime);
        assert_eq!(claim(&f, &v1, "worker-2").await, None);
        let running = status(&f, "buyers").await.unwrap();
        assert_eq!(running.state, BackfillState::Running);
        assert_eq!(running.total, Some(1));
        assert!(running.started_at.is_some());

        // When worker-1's lease lapses, then worker-2 takes it over
        f.db.execute("UPDATE bucket_configs SET lease_until = 0", &[])
            .await
            .unwrap();
        let taken = claim(&f, &v1, "worker-2").await.expect("a takeover");
        assert_eq!(taken.bucket_id, "buyers");
        // And worker-1's next page writes nothing: it lost the backfill
        let lost = f
            .store
            .backfill_step(
                &first,
                &v1,
                &lease("worker-1"),
                10,
                Timestamp(T0 + HOUR),
                routing(vec![]),
            )
            .await
            .unwrap();
        assert_eq!(lost, BackfillStep::Lost);
        assert!(members(&f, "buyers").await.is_empty());
    }
);

store_test!(
    given_history_when_a_first_time_backfill_runs_in_pages_then_exactly_the_matchers_join_silently,
    |f| async move {
        // Given five people's purchases before the bucket existed
        history(
            &f,
            &[("ada", 3), ("bob", 1), ("cyd", 2), ("dan", 0), ("eve", 5)],
        )
        .await;
        let mut dan = event(&f.tenant, "dan", T0);
        dan.name = "login".into();
        ingest(&f, dan, &[]).await;
        let v1 = buyers(2);

        // When its first backfill runs in pages of two
        let steps = backfill(&f, &v1, 2, &routing(vec![v1.clone()])).await;

        // Then it scanned every contact page by page and completed
        assert_eq!(
            steps,
            vec![
                BackfillStep::Progress { done: 2, total: 5 },
                BackfillStep::Progress { done: 4, total: 5 },
                BackfillStep::Completed {
                    done: 5,
                    joined: 3,
                    left: 0
                },
            ]
        );
        // And exactly the matchers are members, first entries from the backfill
        assert_eq!(members(&f, "buyers").await, vec!["ada", "cyd", "eve"]);
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM bucket_memberships WHERE source = $1 AND entry_count = 1",
                &["backfill"]
            )
            .await,
            3
        );
        // And no transition event was stored: historical joins are silent
        assert_eq!(events_named(&f, "bucket:entered:buyers").await, 0);
        // And the fingerprint is stored, the state completed
        let done = status(&f, "buyers").await.unwrap();
        assert_eq!(done.criteria_hash, Some(fingerprint(&v1).fingerprint));
        assert_eq!(done.state, BackfillState::Completed);
        assert_eq!((done.done, done.total, done.joined), (5, Some(5), 3));
        assert!(done.finished_at.is_some());
        // And nothing is left to claim
        assert_eq!(claim(&f, &v1, "worker-2").await, None);
    }
);

store_test!(
    given_members_when_the_criteria_change_then_exactly_the_non_matchers_leave_with_events_and_new_matchers_join_silently,
    |f| async move {
        // Given v1 (at least two purchases) computed, and people joining it in real time
        let v1 = buyers(2);
        let live_v1 = routing(vec![v1.clone()]);
        backfill(&f, &v1, 10, &live_v1).await;
        for (user, times) in [("ada", 2), ("bob", 4), ("cyd", 1)] {
            for i in 0..times {
                purchase(&f, user, T0 + i, &live_v1).await;
            }
        }
        assert_eq!(members(&f, "buyers").await, vec!["ada", "bob"]);

        // When the criteria become "at least three" and the re-evaluation runs
        let v2 = buyers(3);
        f.store
            .register_buckets(&f.tenant, &[fingerprint(&v2)], Timestamp(T0 + HOUR))
            .await
            .unwrap();
        let queued = status(&f, "buyers").await.unwrap();
        assert_eq!(queued.mode, BackfillMode::Reeval);
        assert_eq!(queued.criteria_hash, Some(fingerprint(&v1).fingerprint));
        let steps = backfill(&f, &v2, 2, &routing(vec![v2.clone()])).await;

        // Then only ada left, with one bucket:left event (reason criteria, source backfill)
        assert_eq!(
            steps.last(),
            Some(&BackfillStep::Completed {
                done: 3,
                joined: 0,
                left: 1
            })
        );
        assert_eq!(members(&f, "buyers").await, vec!["bob"]);
        assert_eq!(events_named(&f, "bucket:left:buyers").await, 1);
        let leave = f
            .store
            .contact_events(&f.tenant, "ada", Some("bucket:left:buyers"), 0)
            .await
            .unwrap();
        assert_eq!(leave.len(), 1);
        assert_eq!(leave[0].properties["reason"], json!("criteria"));
        assert_eq!(leave[0].properties["source"], json!("backfill"));
        assert_eq!(leave[0].properties["entryCount"], json!(1));

        // When the criteria go back to "at least one", then cyd joins and ada re-joins with
        // epoch 2, silently
        let v3 = buyers(1);
        backfill(&f, &v3, 2, &routing(vec![v3.clone()])).await;
        assert_eq!(members(&f, "buyers").await, vec!["ada", "bob", "cyd"]);
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM bucket_memberships WHERE contact_key = $1 \
                 AND status = 'active' AND entry_count = 2 AND source = 'backfill'",
                &["ada"]
            )
            .await,
            1
        );
        assert_eq!(events_named(&f, "bucket:entered:buyers").await, 2); // real time: ada, bob
        assert_eq!(
            status(&f, "buyers").await.unwrap().criteria_hash,
            Some(fingerprint(&v3).fingerprint)
        );
    }
);

store_test!(
    given_a_windowed_bucket_when_backfilled_then_each_member_is_anchored_at_their_latest_event,
    |f| async move {
        // Given ada purchased at T0 and T0+5, bob never
        let none = routing(vec![]);
        purchase(&f, "ada", T0, &none).await;
        purchase(&f, "ada", T0 + 5, &none).await;
        let mut bob = event(&f.tenant, "bob", T0);
        bob.name = "login".into();
        ingest(&f, bob, &[]).await;
        let recent = bucket(
            "recent",
            json!({"type": "event", "event": "purchase", "check": "exists", "withinMs": 2 * HOUR}),
        );
        // When it is backfilled
        backfill(&f, &recent, 10, &routing(vec![recent.clone()])).await;
        // Then ada's dwell clock starts at her latest purchase
        assert_eq!(members(&f, "recent").await, vec!["ada"]);
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM bucket_memberships WHERE contact_key = $1 \
                 AND dwell_anchor_at = CAST($2 AS BIGINT)",
                &["ada", &(T0 + 5).to_string()]
            )
            .await,
            1
        );
    }
);

store_test!(
    given_a_failed_backfill_when_restarted_then_it_is_pending_again_from_the_beginning,
    |f| async move {
        let v1 = buyers(2);
        history(&f, &[("ada", 2)]).await;
        f.store
            .register_buckets(&f.tenant, &[fingerprint(&v1)], Timestamp(T0))
            .await
            .unwrap();
        let claimed = claim(&f, &v1, "worker-1").await.unwrap();
        // When the worker records a failure
        f.store
            .fail_backfill(&claimed, "worker-1", "disk on fire", Timestamp(T0 + 1))
            .await
            .unwrap();
        let failed = status(&f, "buyers").await.unwrap();
        assert_eq!(failed.state, BackfillState::Failed);
        assert_eq!(failed.error.as_deref(), Some("disk on fire"));
        // Then a failed backfill is not claimed again on its own
        assert_eq!(claim(&f, &v1, "worker-2").await, None);
        // When it is restarted, then it is pending, first-time (none completed), error cleared
        let restarted = f
            .store
            .restart_backfill(&f.tenant, &fingerprint(&v1), Timestamp(T0 + 2))
            .await
            .unwrap();
        assert_eq!(restarted.state, BackfillState::Pending);
        assert_eq!(restarted.mode, BackfillMode::FirstTime);
        assert_eq!(
            (restarted.error, restarted.done, restarted.total),
            (None, 0, None)
        );
        // And it runs to completion
        let claimed = claim(&f, &v1, "worker-2").await.unwrap();
        let step = f
            .store
            .backfill_step(
                &claimed,
                &v1,
                &lease("worker-2"),
                10,
                Timestamp(T0 + HOUR),
                routing(vec![]),
            )
            .await
            .unwrap();
        assert!(matches!(step, BackfillStep::Completed { joined: 1, .. }));
        assert_eq!(members(&f, "buyers").await, vec!["ada"]);
    }
);

/// `name` by `user` at `at`, through `routing`.
async fn fired(f: &Fixture, user: &str, name: &str, at: i64, routing: &Arc<dyn IngestRouting>) {
    let mut e = event(&f.tenant, user, at);
    e.name = name.into();
    e.occurred_at = Timestamp(at);
    f.store
        .ingest(
            Arc::new([IngestItem {
                routing: None,
                event: e,
                candidates: vec![],
            }]),
            routing.clone(),
        )
        .await
        .unwrap();
}

/// "Signed up and never purchased": a count that zero satisfies, guarded by a positive leg.
fn never_bought(id: &str) -> BucketDef {
    bucket(
        id,
        json!({"type": "all", "conditions": [
            {"type": "event", "event": "signed_up", "check": "exists"},
            {"type": "event", "event": "purchase", "check": "count", "operator": "lt", "value": 1}
        ]}),
    )
}

store_test!(
    given_a_zero_satisfied_count_guarded_by_a_positive_leg_when_evaluated_in_real_time_and_by_backfill_then_the_members_agree,
    |f| async move {
        use crate::buckets::validate::validate_bucket;
        // Given the count alone is refused (it would join everyone in a backfill and nobody in
        // real time), and the guarded form accepted
        let unguarded = bucket(
            "unguarded",
            json!({"type": "event", "event": "purchase", "check": "count", "operator": "lt",
                   "value": 1}),
        );
        assert!(
            validate_bucket(&unguarded)
                .unwrap_err()
                .starts_with("criteria must have at least one positive condition"),
        );
        let live = never_bought("live");
        assert_eq!(validate_bucket(&live), Ok(()));

        // When five people's events are ingested with "live" evaluated in real time: ada
        // signed up; bob and eve signed up, then bought (each joins, then leaves); cyd only
        // logged in; dan only bought
        let realtime = routing(vec![live.clone()]);
        for (user, name, at) in [
            ("ada", "signed_up", T0),
            ("bob", "signed_up", T0),
            ("bob", "purchase", T0 + 1),
            ("cyd", "login", T0),
            ("dan", "purchase", T0),
            ("eve", "signed_up", T0),
            ("eve", "purchase", T0 + 2),
        ] {
            fired(&f, user, name, at, &realtime).await;
        }
        assert_eq!(members(&f, "live").await, vec!["ada"]);
        assert_eq!(events_named(&f, "bucket:left:live").await, 2); // bob, eve

        // And the same criteria, as a bucket that appears afterwards, are backfilled from
        // that history
        let late = never_bought("late");
        backfill(&f, &late, 2, &routing(vec![live, late.clone()])).await;

        // Then both paths chose the same members
        assert_eq!(members(&f, "late").await, members(&f, "live").await);
    }
);

store_test!(
    given_a_bare_windowed_absence_when_backfilled_then_only_the_lapsed_join_as_the_clock_would_join_them,
    |f| async move {
        use crate::buckets::reconcile_rules::Pass;
        const DAY: i64 = 24 * HOUR;
        let quiet = |id: &str| {
            bucket(
                id,
                json!({"type": "event", "event": "app.active", "check": "not_exists",
                       "withinMs": 7 * DAY}),
            )
        };
        // Given ada was active eight days ago, bob never was, cyd was just now
        let none = routing(vec![]);
        fired(&f, "ada", "app.active", T0 - 8 * DAY, &none).await;
        fired(&f, "bob", "login", T0, &none).await;
        fired(&f, "cyd", "app.active", T0, &none).await;

        // When the bucket is backfilled, and a twin bucket is left to the clock
        let backfilled = quiet("quiet");
        backfill(&f, &backfilled, 10, &routing(vec![backfilled.clone()])).await;
        let clock = quiet("quiet-clock");
        f.store
            .reconcile_pass(
                &f.tenant,
                &clock,
                Pass::AbsenceJoins,
                Timestamp(T0 + HOUR),
                500,
                routing(vec![clock.clone()]),
            )
            .await
            .unwrap();

        // Then both hold the lapsed ada only: bob, who never did it, is joined by neither
        assert_eq!(members(&f, "quiet").await, vec!["ada"]);
        assert_eq!(members(&f, "quiet-clock").await, vec!["ada"]);
    }
);
