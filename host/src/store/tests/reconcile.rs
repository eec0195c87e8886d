//! The reconcile job's passes over the store: absence joins by the clock, max-dwell leaves,
//! dwell reactions once per membership and coalesced after an outage, the first-backfill gate,
//! the look-ahead a catch-up coalesces with, and the per-tenant lease.

use super::*;
use crate::buckets::reconcile_rules::Pass;
use crate::buckets::{
    BucketDef, BucketRegistry, Condition, DwellSchedule, ReactionDef, ReactionOn,
};
use crate::store::{BucketTransition, IngestRouting, ReconcileClaim, ReconcileReport};

const DAY: i64 = 24 * HOUR;

struct BucketsOnly(Arc<BucketRegistry>);

impl IngestRouting for BucketsOnly {
    fn journeys(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<RunCandidate> {
        Vec::new()
    }

    fn exits(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }

    fn buckets(&self, _: &TenantId) -> Option<Arc<BucketRegistry>> {
        Some(self.0.clone())
    }
}

fn routing(bucket: &BucketDef) -> Arc<dyn IngestRouting> {
    Arc::new(BucketsOnly(Arc::new(BucketRegistry::from_buckets([
        bucket.clone(),
    ]))))
}

fn bucket(id: &str, criteria: Value) -> BucketDef {
    BucketDef::computed(
        id,
        &format!("Bucket {id}"),
        Some(Condition::from_json(&criteria).expect("valid criteria")),
    )
}

/// Active at some point, not in the last 7 days.
fn went_dormant() -> BucketDef {
    bucket(
        "went-dormant",
        json!({"type": "all", "conditions": [
            {"type": "event", "event": "app.active", "check": "exists"},
            {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 7 * DAY},
        ]}),
    )
}

/// Contact property `plan` is "pro", with a dwell reaction on `schedule`.
fn pro_with_dwell(schedule: DwellSchedule) -> BucketDef {
    let mut b = bucket(
        "pro",
        json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"}),
    );
    b.reactions.push(ReactionDef {
        journey_id: format!("bucket-pro-on-dwell-{}", schedule.label()),
        handler: "h".into(),
        on: ReactionOn::Dwell { schedule },
    });
    b
}

/// An event of ada named `name` at `at`, patching her properties with `props`.
async fn ada_does(f: &Fixture, bucket: &BucketDef, name: &str, at: i64, props: Value) {
    person_does(f, bucket, "ada", name, at, props).await;
}

/// An event of `user` named `name` at `at`, patching their properties with `props`.
async fn person_does(
    f: &Fixture,
    bucket: &BucketDef,
    user: &str,
    name: &str,
    at: i64,
    props: Value,
) {
    let mut e = event(&f.tenant, user, at);
    e.name = name.into();
    e.occurred_at = Timestamp(at);
    e.contact_properties = obj(props);
    f.store
        .ingest(
            Arc::new([IngestItem {
                routing: None,
                event: e,
                candidates: vec![],
            }]),
            routing(bucket),
        )
        .await
        .unwrap();
}

async fn pass(f: &Fixture, bucket: &BucketDef, pass: Pass, at: i64) -> ReconcileReport {
    pass_of(f, bucket, pass, at, 500).await
}

async fn pass_of(
    f: &Fixture,
    bucket: &BucketDef,
    pass: Pass,
    at: i64,
    batch: u32,
) -> ReconcileReport {
    f.store
        .reconcile_pass(
            &f.tenant,
            bucket,
            pass,
            Timestamp(at),
            batch,
            routing(bucket),
        )
        .await
        .unwrap()
}

fn changed(report: &ReconcileReport) -> Vec<(&str, u32)> {
    report
        .transitions
        .iter()
        .map(|t: &BucketTransition| (t.transition, t.entry_count))
        .collect()
}

/// Ada's stored events named `name`: (idempotency key, properties), oldest first.
async fn ada_events(f: &Fixture, name: &str) -> Vec<(String, Map<String, Value>)> {
    let mut events = f
        .store
        .contact_events(&f.tenant, "ada", Some(name), 0)
        .await
        .unwrap();
    events.reverse();
    events
        .into_iter()
        .map(|e| (e.idempotency_key.unwrap_or_default(), e.properties))
        .collect()
}

store_test!(
    given_an_active_person_when_seven_days_pass_without_activity_then_the_clock_joins_them_and_activity_makes_them_leave,
    |f| async move {
        let b = went_dormant();
        ada_does(&f, &b, "app.active", T0, json!({})).await;
        assert!(changed(&pass(&f, &b, Pass::AbsenceJoins, T0 + 7 * DAY - 1).await).is_empty());

        let at = T0 + 7 * DAY + 1;
        let joined = pass(&f, &b, Pass::AbsenceJoins, at).await;
        assert_eq!(changed(&joined), [("entered", 1)]);
        let member = f
            .store
            .bucket_membership(&f.tenant, "went-dormant", "ada")
            .await
            .unwrap()
            .expect("a member");
        assert_eq!(member.entered_at, Timestamp(at), "joined as of the pass");
        let entered = ada_events(&f, "bucket:entered:went-dormant").await;
        assert_eq!(entered.len(), 1);
        assert_eq!(entered[0].0, "bucket:went-dormant:ada:entered:1");
        assert_eq!(entered[0].1["source"], json!("reconcile"));
        // A second pass (another host, a retry) changes nothing.
        assert!(changed(&pass(&f, &b, Pass::AbsenceJoins, at + 1).await).is_empty());
        // Still dormant: the criteria pass keeps her.
        assert!(changed(&pass(&f, &b, Pass::CriteriaLeaves, at + DAY).await).is_empty());

        ada_does(&f, &b, "app.active", at + 2 * DAY, json!({})).await;
        assert!(
            f.store
                .bucket_membership(&f.tenant, "went-dormant", "ada")
                .await
                .unwrap()
                .is_none(),
            "the next app.active makes her leave"
        );
    }
);

store_test!(
    given_members_who_still_match_when_another_writer_holds_some_of_them_then_the_criteria_pass_marks_the_rest_without_waiting,
    |f| async move {
        // Given three members of a property bucket, all still matching
        let pro = bucket(
            "pro",
            json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"}),
        );
        for user in ["ada", "bob", "cy"] {
            person_does(&f, &pro, user, "plan.changed", T0, json!({"plan": "pro"})).await;
        }
        // And, on PostgreSQL, another transaction holding bob's membership row and cy's contact
        let mut holder = match f.db.pg_pool() {
            Some(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "SELECT 1 FROM bucket_memberships WHERE contact_key = 'bob' FOR UPDATE",
                )
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query("SELECT 1 FROM contacts WHERE key = 'cy' FOR UPDATE")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                Some(tx)
            }
            None => None,
        };

        // When the criteria pass runs (a pass that waited for the holder would never end)
        let at = T0 + DAY;
        let report = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            pass(&f, &pro, Pass::CriteriaLeaves, at),
        )
        .await
        .expect("the pass waited for the other writer");
        if let Some(tx) = holder.take() {
            tx.rollback().await.unwrap();
        }

        // Then nobody left, cy (whose contact was held, not her membership) and ada are marked
        // evaluated, and bob's held row is left for the next pass
        assert!(changed(&report).is_empty());
        assert_eq!(report.examined, 3);
        let evaluated_at = |user: &'static str| {
            let db = f.db.clone();
            async move {
                db.count(
                    "SELECT last_evaluated_at FROM bucket_memberships WHERE contact_key = $1",
                    &[user],
                )
                .await
            }
        };
        assert_eq!(evaluated_at("ada").await, at);
        assert_eq!(evaluated_at("cy").await, at);
        let bob_marked = f.db.pg_pool().is_none();
        assert_eq!(evaluated_at("bob").await == at, bob_marked);
    }
);

/// Dormant for 7 days and on the pro plan.
fn dormant_pro() -> BucketDef {
    bucket(
        "dormant-pro",
        json!({"type": "all", "conditions": [
            {"type": "event", "event": "app.active", "check": "not_exists", "withinMs": 7 * DAY},
            {"type": "property", "property": "plan", "operator": "eq", "value": "pro"},
        ]}),
    )
}

store_test!(
    given_many_absent_people_failing_another_condition_when_passes_run_then_a_matching_person_behind_them_still_joins,
    |f| async move {
        let b = dormant_pro();
        // Thirty free-plan people went quiet at the same instant as zed, and sort before him.
        for i in 0..30 {
            person_does(&f, &b, &format!("a{i:02}"), "app.active", T0, json!({"plan": "free"}))
                .await;
        }
        person_does(&f, &b, "zed", "app.active", T0, json!({"plan": "pro"})).await;

        let at = T0 + 7 * DAY + 1;
        let mut joined = Vec::new();
        for tick in 0..4 {
            let report = pass_of(&f, &b, Pass::AbsenceJoins, at + tick, 10).await;
            joined.extend(changed(&report).into_iter().map(|(t, n)| (t.to_owned(), n)));
        }
        assert_eq!(joined, [("entered".to_owned(), 1)], "zed joins, nobody else");
        assert!(
            f.store
                .bucket_membership(&f.tenant, "dormant-pro", "zed")
                .await
                .unwrap()
                .is_some()
        );
        // The scan moved past everyone: another pass reads nothing and changes nothing.
        assert!(changed(&pass_of(&f, &b, Pass::AbsenceJoins, at + 10, 10).await).is_empty());
    }
);

store_test!(
    given_an_absent_person_the_clock_passed_over_when_their_property_then_matches_they_join_in_real_time,
    |f| async move {
        let b = dormant_pro();
        ada_does(&f, &b, "app.active", T0, json!({"plan": "free"})).await;
        let at = T0 + 8 * DAY;
        assert!(changed(&pass(&f, &b, Pass::AbsenceJoins, at).await).is_empty());

        ada_does(&f, &b, "plan.changed", at + HOUR, json!({"plan": "pro"})).await;
        let member = f
            .store
            .bucket_membership(&f.tenant, "dormant-pro", "ada")
            .await
            .unwrap()
            .expect("the property change joins her");
        assert_eq!(member.entry_count, 1);
    }
);

store_test!(
    given_a_member_who_came_back_and_went_quiet_again_when_the_window_passes_then_the_clock_joins_them_again,
    |f| async move {
        let b = went_dormant();
        ada_does(&f, &b, "app.active", T0, json!({})).await;
        let first = T0 + 7 * DAY + 1;
        assert_eq!(
            changed(&pass(&f, &b, Pass::AbsenceJoins, first).await),
            [("entered", 1)]
        );
        ada_does(&f, &b, "app.active", first + DAY, json!({})).await;
        // A week after her return, not before.
        assert!(
            changed(&pass(&f, &b, Pass::AbsenceJoins, first + 8 * DAY - 2).await).is_empty()
        );
        assert_eq!(
            changed(&pass(&f, &b, Pass::AbsenceJoins, first + 8 * DAY + 1).await),
            [("entered", 2)]
        );
    }
);

store_test!(
    given_someone_who_never_was_active_when_the_clock_passes_then_they_never_join,
    |f| async move {
        let b = went_dormant();
        ada_does(&f, &b, "user.signed_up", T0, json!({})).await;
        assert!(changed(&pass(&f, &b, Pass::AbsenceJoins, T0 + 30 * DAY).await).is_empty());
    }
);

store_test!(
    given_a_max_dwell_when_its_deadline_passes_then_the_member_leaves_with_reason_max_dwell,
    |f| async move {
        let mut b = pro_with_dwell(DwellSchedule::After(DAY as u64));
        b.reactions.clear();
        b.max_dwell_ms = Some(HOUR as u64);
        ada_does(&f, &b, "plan.changed", T0, json!({"plan": "pro"})).await;
        assert!(changed(&pass(&f, &b, Pass::MaxDwell, T0 + HOUR - 1).await).is_empty());
        assert_eq!(
            changed(&pass(&f, &b, Pass::MaxDwell, T0 + HOUR).await),
            [("left", 1)]
        );
        let left = ada_events(&f, "bucket:left:pro").await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, "bucket:pro:ada:left:1");
        assert_eq!(left[0].1["reason"], json!("maxDwell"));
        assert_eq!(left[0].1["source"], json!("reconcile"));
    }
);

store_test!(
    given_an_after_dwell_when_due_then_it_fires_once_per_membership_and_again_after_a_rejoin,
    |f| async move {
        let schedule = DwellSchedule::After(3 * DAY as u64);
        let b = pro_with_dwell(schedule);
        let dwell = Pass::Dwell(schedule);
        ada_does(&f, &b, "plan.changed", T0, json!({"plan": "pro"})).await;
        assert!(changed(&pass(&f, &b, dwell, T0 + 3 * DAY - 1).await).is_empty());
        assert_eq!(
            changed(&pass(&f, &b, dwell, T0 + 3 * DAY).await),
            [("dwell", 1)]
        );
        assert!(changed(&pass(&f, &b, dwell, T0 + 4 * DAY).await).is_empty());

        // Leaves, re-joins: a new membership, whose dwell fires again.
        ada_does(
            &f,
            &b,
            "plan.changed",
            T0 + 5 * DAY,
            json!({"plan": "free"}),
        )
        .await;
        ada_does(
            &f,
            &b,
            "plan.changed",
            T0 + 5 * DAY + 1,
            json!({"plan": "pro"}),
        )
        .await;
        assert!(changed(&pass(&f, &b, dwell, T0 + 7 * DAY).await).is_empty());
        assert_eq!(
            changed(&pass(&f, &b, dwell, T0 + 8 * DAY + 1).await),
            [("dwell", 2)]
        );
        let fired = ada_events(&f, "bucket:dwell:pro:after-259200000").await;
        let keys: Vec<&str> = fired.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "bucket:pro:ada:dwell:after-259200000:1:1",
                "bucket:pro:ada:dwell:after-259200000:2:1"
            ]
        );
        assert_eq!(fired[1].1["dwellCount"], json!(1));
        assert_eq!(fired[1].1["entryCount"], json!(2));
    }
);

store_test!(
    given_an_every_dwell_when_three_days_pass_unswept_then_it_fires_once_with_the_interval_index,
    |f| async move {
        let schedule = DwellSchedule::Every(DAY as u64);
        let b = pro_with_dwell(schedule);
        let dwell = Pass::Dwell(schedule);
        ada_does(&f, &b, "plan.changed", T0, json!({"plan": "pro"})).await;
        assert_eq!(
            changed(&pass(&f, &b, dwell, T0 + DAY).await),
            [("dwell", 1)]
        );
        // The host was down from day 1 to day 4 and a half.
        let back = T0 + 4 * DAY + DAY / 2;
        assert_eq!(changed(&pass(&f, &b, dwell, back).await), [("dwell", 1)]);
        assert!(changed(&pass(&f, &b, dwell, back + DAY - 1).await).is_empty());
        let counts: Vec<Value> = ada_events(&f, "bucket:dwell:pro:every-86400000")
            .await
            .into_iter()
            .map(|(_, p)| p["dwellCount"].clone())
            .collect();
        assert_eq!(counts, [json!(1), json!(4)]);
    }
);

store_test!(
    given_a_first_backfill_pending_when_the_clock_passes_then_joins_and_dwell_wait_but_max_dwell_does_not,
    |f| async move {
        let schedule = DwellSchedule::After(DAY as u64);
        let mut b = pro_with_dwell(schedule);
        b.max_dwell_ms = Some(2 * DAY as u64);
        ada_does(&f, &b, "plan.changed", T0, json!({"plan": "pro"})).await;
        f.db.execute(
            "INSERT INTO bucket_configs (tenant_id, bucket_id, criteria_hash, backfill_state, \
             backfill_mode, target_hash, updated_at) \
             VALUES ($1, 'pro', NULL, 'running', 'first-time', 'h', 0)",
            &[f.tenant.as_str()],
        )
        .await
        .unwrap();
        assert!(changed(&pass(&f, &b, Pass::Dwell(schedule), T0 + DAY).await).is_empty());
        assert_eq!(
            f.store
                .reconcile_next_work(&f.tenant, &b, Timestamp(T0 + DAY))
                .await
                .unwrap(),
            Some(Timestamp(T0 + 2 * DAY)),
            "only the max dwell is ahead"
        );
        f.db.execute(
            "UPDATE bucket_configs SET criteria_hash = 'h' WHERE tenant_id = $1",
            &[f.tenant.as_str()],
        )
        .await
        .unwrap();
        assert_eq!(
            changed(&pass(&f, &b, Pass::Dwell(schedule), T0 + DAY).await),
            [("dwell", 1)]
        );
        assert_eq!(
            changed(&pass(&f, &b, Pass::MaxDwell, T0 + 2 * DAY).await),
            [("left", 1)]
        );
    }
);

store_test!(
    given_members_and_history_when_looking_ahead_then_the_next_work_is_the_earliest_edge,
    |f| async move {
        let b = went_dormant();
        assert_eq!(
            f.store
                .reconcile_next_work(&f.tenant, &b, Timestamp(T0))
                .await
                .unwrap(),
            None,
            "no history: nothing can change"
        );
        ada_does(&f, &b, "app.active", T0, json!({})).await;
        assert_eq!(
            f.store
                .reconcile_next_work(&f.tenant, &b, Timestamp(T0 + DAY))
                .await
                .unwrap(),
            Some(Timestamp(T0 + 7 * DAY + 1)),
            "when her app.active leaves the window"
        );
        let schedule = DwellSchedule::After(3 * DAY as u64);
        let p = pro_with_dwell(schedule);
        ada_does(&f, &p, "plan.changed", T0 + DAY, json!({"plan": "pro"})).await;
        assert_eq!(
            f.store
                .reconcile_next_work(&f.tenant, &p, Timestamp(T0 + DAY))
                .await
                .unwrap(),
            Some(Timestamp(T0 + 4 * DAY))
        );
    }
);

store_test!(
    given_a_tenant_reconciled_by_one_host_when_another_claims_it_then_it_skips_until_released,
    |f| async move {
        let now = Clock::real_now().0;
        assert_eq!(
            f.store
                .claim_reconcile(&f.tenant, &lease("a", now))
                .await
                .unwrap(),
            ReconcileClaim::Taken { last_tick: None }
        );
        assert_eq!(
            f.store
                .claim_reconcile(&f.tenant, &lease("b", now))
                .await
                .unwrap(),
            ReconcileClaim::HeldElsewhere,
            "held by a"
        );
        assert!(
            f.store
                .finish_reconcile(&f.tenant, "a", Some(Timestamp(T0)), true)
                .await
                .unwrap()
        );
        assert!(
            !f.store
                .finish_reconcile(&f.tenant, "a", Some(Timestamp(T0 + 1)), true)
                .await
                .unwrap(),
            "released: a holds nothing"
        );
        assert_eq!(
            f.store
                .claim_reconcile(&f.tenant, &lease("b", now))
                .await
                .unwrap(),
            ReconcileClaim::Taken {
                last_tick: Some(Timestamp(T0))
            },
            "b resumes after a's last tick"
        );
        // A lapsed lease can be taken over.
        assert_eq!(
            f.store
                .claim_reconcile(&f.tenant, &lease("c", now + 60_000))
                .await
                .unwrap(),
            ReconcileClaim::Taken {
                last_tick: Some(Timestamp(T0))
            }
        );
    }
);

store_test!(
    given_a_fast_expiry_bucket_when_a_members_timer_passes_then_they_leave_at_once,
    |f| async move {
        let mut b = bucket(
            "power",
            json!({"type": "event", "event": "feature.used", "check": "count",
                   "operator": "gte", "value": 2, "withinMs": HOUR}),
        );
        b.fast_expiry = true;
        ada_does(&f, &b, "feature.used", T0 - 10, json!({})).await;
        ada_does(&f, &b, "feature.used", T0, json!({})).await;
        assert!(
            f.store
                .bucket_membership(&f.tenant, "power", "ada")
                .await
                .unwrap()
                .is_some()
        );
        // Her timer is the window's end after the join: not due a millisecond before.
        assert!(changed(&pass(&f, &b, Pass::Expiry, T0 + HOUR - 1).await).is_empty());
        assert_eq!(
            changed(&pass(&f, &b, Pass::Expiry, T0 + HOUR).await),
            [("left", 1)]
        );
        let left = ada_events(&f, "bucket:left:power").await;
        assert_eq!(left[0].1["reason"], json!("criteria"));
        assert_eq!(left[0].1["source"], json!("reconcile"));
    }
);
