//! Real-time bucket membership inside ingest: joins and leaves with their epochs, the entry
//! limit's emit gate, the minDwell deferral, transitions stored once under their
//! deterministic keys (also under duplicate and concurrent events), reactions routed with
//! their extras, and manual membership changes.

use super::*;
use crate::buckets::{BucketDef, BucketKind, BucketRegistry, Condition};
use crate::store::{BucketTransition, IngestRouting, ManualChangeOutcome, MembershipChange};

/// Routing for these tests: the given buckets, and journeys started by exact trigger name.
pub(super) struct TestRouting {
    pub buckets: Arc<BucketRegistry>,
    pub journeys: Vec<(&'static str, RunCandidate)>,
}

impl IngestRouting for TestRouting {
    fn journeys(
        &self,
        _tenant: &TenantId,
        event_name: &str,
        _properties: &Map<String, Value>,
    ) -> Vec<RunCandidate> {
        self.journeys
            .iter()
            .filter(|(trigger, _)| *trigger == event_name)
            .map(|(_, candidate)| candidate.clone())
            .collect()
    }

    fn exits(&self, _: &TenantId, _: &str, _: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }

    fn buckets(&self, _tenant: &TenantId) -> Option<Arc<BucketRegistry>> {
        Some(self.buckets.clone())
    }
}

fn bucket(id: &str, criteria: Value) -> BucketDef {
    BucketDef::computed(
        id,
        &format!("Bucket {id}"),
        Some(Condition::from_json(&criteria).expect("valid criteria")),
    )
}

/// At least two `feature.used` within the hour.
fn power() -> BucketDef {
    bucket(
        "power",
        json!({"type": "event", "event": "feature.used", "check": "count",
               "operator": "gte", "value": 2, "withinMs": HOUR}),
    )
}

/// Contact property `plan` is "pro".
pub(super) fn pro() -> BucketDef {
    bucket(
        "pro",
        json!({"type": "property", "property": "plan", "operator": "eq", "value": "pro"}),
    )
}

fn routing(buckets: Vec<BucketDef>) -> Arc<dyn IngestRouting> {
    Arc::new(TestRouting {
        buckets: Arc::new(BucketRegistry::from_buckets(buckets)),
        journeys: vec![],
    })
}

/// `feature.used` by `user`, occurring at `at`.
fn used(f: &Fixture, user: &str, at: i64) -> NewEvent {
    let mut e = event(&f.tenant, user, at);
    e.name = "feature.used".into();
    e.occurred_at = Timestamp(at);
    e
}

/// Ingest one event with `routing`; its outcome.
async fn ingest_routed(
    f: &Fixture,
    event: NewEvent,
    routing: &Arc<dyn IngestRouting>,
) -> IngestOutcome {
    let mut outcomes = f
        .store
        .ingest(
            Arc::new([IngestItem {
                routing: None,
                event,
                candidates: vec![],
            }]),
            routing.clone(),
        )
        .await
        .unwrap();
    outcomes.pop().unwrap()
}

fn transitions(outcome: &IngestOutcome) -> Vec<BucketTransition> {
    match outcome {
        IngestOutcome::Stored { transitions, .. } => transitions.clone(),
        other => panic!("expected a stored event, got {other:?}"),
    }
}

fn change(
    bucket: &str,
    transition: &'static str,
    entry_count: u32,
    emitted: bool,
) -> BucketTransition {
    BucketTransition {
        bucket_id: bucket.into(),
        transition,
        entry_count,
        emitted,
    }
}

/// Stored events with this idempotency key.
async fn events_keyed(f: &Fixture, key: &str) -> i64 {
    f.db.count(
        "SELECT COUNT(*) FROM events WHERE idempotency_key = $1",
        &[key],
    )
    .await
}

async fn memberships(f: &Fixture, status: &str) -> i64 {
    f.db.count(
        "SELECT COUNT(*) FROM bucket_memberships WHERE status = $1",
        &[status],
    )
    .await
}

store_test!(
    given_a_windowed_count_when_the_threshold_is_reached_left_and_reached_again_then_epochs_advance,
    |f| async move {
        let routing = routing(vec![power()]);
        // Given one use: not yet a member
        assert!(transitions(&ingest_routed(&f, used(&f, "ada", T0), &routing).await).is_empty());
        // When the second use within the hour arrives, then ada joins with epoch 1
        let joined = ingest_routed(&f, used(&f, "ada", T0 + 1_000), &routing).await;
        assert_eq!(
            transitions(&joined),
            vec![change("power", "entered", 1, true)]
        );
        // And a third use changes nothing (a stable member)
        let stable = ingest_routed(&f, used(&f, "ada", T0 + 2_000), &routing).await;
        assert!(transitions(&stable).is_empty());

        // When a use arrives two hours later (one use within the hour), then she leaves epoch 1
        let left = ingest_routed(&f, used(&f, "ada", T0 + 2 * HOUR), &routing).await;
        assert_eq!(transitions(&left), vec![change("power", "left", 1, true)]);

        // When the threshold is reached again, then she re-joins with epoch 2
        let rejoined = ingest_routed(&f, used(&f, "ada", T0 + 2 * HOUR + 1), &routing).await;
        assert_eq!(
            transitions(&rejoined),
            vec![change("power", "entered", 2, true)]
        );

        // Then each transition was stored once, under its deterministic key
        for key in [
            "bucket:power:ada:entered:1",
            "bucket:power:ada:left:1",
            "bucket:power:ada:entered:2",
        ] {
            assert_eq!(events_keyed(&f, key).await, 1, "{key}");
        }
        assert_eq!(memberships(&f, "left").await, 1);
        assert_eq!(memberships(&f, "active").await, 1);
    }
);

store_test!(
    given_a_window_boundary_when_the_oldest_event_is_exactly_at_now_minus_within_then_it_counts,
    |f| async move {
        let routing = routing(vec![power()]);
        // Given a use exactly one hour before the next one
        ingest_routed(&f, used(&f, "ada", T0), &routing).await;
        let mut second = used(&f, "ada", T0 + HOUR);
        second.received_at = Timestamp(T0 + HOUR);
        // When the second arrives, then the first still counts (inclusive boundary)
        let joined = ingest_routed(&f, second, &routing).await;
        assert_eq!(
            transitions(&joined),
            vec![change("power", "entered", 1, true)]
        );
    }
);

store_test!(
    given_a_property_bucket_when_the_contact_patch_sets_and_removes_the_property_then_the_person_joins_and_leaves,
    |f| async move {
        let routing = routing(vec![pro()]);
        // Given an event whose EVENT properties say plan=pro: criteria never read the payload
        let mut payload_only = event(&f.tenant, "ada", T0);
        payload_only.event_properties = obj(json!({"plan": "pro"}));
        assert!(transitions(&ingest_routed(&f, payload_only, &routing).await).is_empty());

        // When the contact patch sets plan=pro, then ada joins
        let mut upgrade = event(&f.tenant, "ada", T0 + 1);
        upgrade.contact_properties = obj(json!({"plan": "pro"}));
        let joined = ingest_routed(&f, upgrade, &routing).await;
        assert_eq!(transitions(&joined), vec![change("pro", "entered", 1, true)]);

        // When a patch removes it (null), then she leaves
        let mut downgrade = event(&f.tenant, "ada", T0 + 2);
        downgrade.contact_properties = obj(json!({"plan": null}));
        let left = ingest_routed(&f, downgrade, &routing).await;
        assert_eq!(transitions(&left), vec![change("pro", "left", 1, true)]);
    }
);

store_test!(
    given_an_entry_limit_of_once_when_a_person_rejoins_then_the_row_advances_but_no_event_is_emitted,
    |f| async move {
        let mut once = pro();
        once.entry_limit = EntryLimit::Once;
        let routing = routing(vec![once]);
        let set = |plan: Value, at: i64| {
            let mut e = event(&f.tenant, "ada", at);
            e.contact_properties = obj(json!({ "plan": plan }));
            e
        };
        ingest_routed(&f, set(json!("pro"), T0), &routing).await;
        ingest_routed(&f, set(json!("free"), T0 + 1), &routing).await;
        // When ada re-joins
        let rejoined = ingest_routed(&f, set(json!("pro"), T0 + 2), &routing).await;
        // Then the join is quiet: epoch 2 written, no second entered event
        assert_eq!(transitions(&rejoined), vec![change("pro", "entered", 2, false)]);
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1").await, 1);
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:2").await, 0);
        assert_eq!(memberships(&f, "active").await, 1);
    }
);

store_test!(
    given_once_per_period_when_a_person_rejoins_before_and_after_the_period_since_the_last_leave_then_only_the_later_join_emits,
    |f| async move {
        let mut gated = pro();
        gated.entry_limit = EntryLimit::OncePer(HOUR as u64);
        let routing = routing(vec![gated]);
        let set = |plan: &str, at: i64| {
            let mut e = event(&f.tenant, "ada", at);
            e.contact_properties = obj(json!({ "plan": plan }));
            e
        };
        ingest_routed(&f, set("pro", T0), &routing).await;
        ingest_routed(&f, set("free", T0 + 10), &routing).await;
        // Rejoining 30 minutes after the leave: quiet
        let early = ingest_routed(&f, set("pro", T0 + 10 + HOUR / 2), &routing).await;
        assert_eq!(transitions(&early), vec![change("pro", "entered", 2, false)]);
        ingest_routed(&f, set("free", T0 + 20 + HOUR / 2), &routing).await;
        // Rejoining a full hour after the latest leave: emitted
        let late = ingest_routed(&f, set("pro", T0 + 20 + HOUR / 2 + HOUR), &routing).await;
        assert_eq!(transitions(&late), vec![change("pro", "entered", 3, true)]);
    }
);

store_test!(
    given_a_min_dwell_when_criteria_stop_matching_early_then_the_leave_waits_for_the_floor,
    |f| async move {
        let mut sticky = pro();
        sticky.min_dwell_ms = Some(HOUR as u64);
        let routing = routing(vec![sticky]);
        let set = |plan: &str, at: i64| {
            let mut e = event(&f.tenant, "ada", at);
            e.contact_properties = obj(json!({ "plan": plan }));
            e
        };
        ingest_routed(&f, set("pro", T0), &routing).await;
        // When the criteria stop matching ten minutes in, then she stays a member
        let early = ingest_routed(&f, set("free", T0 + HOUR / 6), &routing).await;
        assert!(transitions(&early).is_empty());
        assert_eq!(memberships(&f, "active").await, 1);
        // When a relevant event (one that changes her plan again) arrives after the floor,
        // then she leaves. (A pure-property bucket with a min dwell is also swept by the
        // reconcile job, so a deferred leave never waits for such an event: see reconcile.)
        let later = ingest_routed(&f, set("starter", T0 + HOUR), &routing).await;
        assert_eq!(transitions(&later), vec![change("pro", "left", 1, true)]);
    }
);

store_test!(
    given_a_duplicate_source_event_when_it_is_resent_then_no_second_transition_happens,
    |f| async move {
        let routing = routing(vec![pro()]);
        let mut upgrade = event(&f.tenant, "ada", T0);
        upgrade.contact_properties = obj(json!({"plan": "pro"}));
        upgrade.idempotency_key = Some("upgrade-1".into());
        let again = NewEvent {
            id: EventId::generate(),
            ..upgrade.clone()
        };
        ingest_routed(&f, upgrade, &routing).await;
        // When the same event is sent again
        let duplicate = ingest_routed(&f, again, &routing).await;
        // Then it is a duplicate and nothing moved
        assert!(matches!(duplicate, IngestOutcome::Duplicate { .. }));
        assert_eq!(
            f.db.count("SELECT COUNT(*) FROM bucket_memberships", &[])
                .await,
            1
        );
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1").await, 1);
    }
);

store_test!(
    given_concurrent_first_events_of_one_person_when_each_could_join_then_exactly_one_transition_is_stored,
    |f| async move {
        let routing = routing(vec![pro()]);
        // When ten events for one new person, each setting plan=pro, arrive at once
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = f.store.clone();
            let routing = routing.clone();
            let mut e = event(&f.tenant, "ada", T0 + i);
            e.contact_properties = obj(json!({"plan": "pro"}));
            tasks.push(tokio::spawn(async move {
                store
                    .ingest(Arc::new([IngestItem {
 routing: None, event: e, candidates: vec![] }]), routing)
                    .await
            }));
        }
        let mut entered = 0;
        for task in tasks {
            let outcome = task.await.unwrap().unwrap().pop().unwrap();
            entered += transitions(&outcome).len();
        }
        // Then one join, one membership row and one transition event
        assert_eq!(entered, 1);
        assert_eq!(f.db.count("SELECT COUNT(*) FROM bucket_memberships", &[]).await, 1);
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1").await, 1);
    }
);

store_test!(
    given_journeys_bound_to_transitions_when_a_person_joins_then_they_start_with_the_transition_as_trigger,
    |f| async move {
        // Given a reaction on bucket:entered:pro and a journey on the generic bucket:entered
        let routing: Arc<dyn IngestRouting> = Arc::new(TestRouting {
            buckets: Arc::new(BucketRegistry::from_buckets(vec![pro()])),
            journeys: vec![
                ("bucket:entered:pro", journey("on-enter", EntryLimit::Unlimited)),
                ("bucket:entered", journey("any-enter", EntryLimit::Unlimited)),
            ],
        });
        let mut upgrade = event(&f.tenant, "ada", T0);
        upgrade.contact_properties = obj(json!({"plan": "pro"}));
        // When ada joins
        let outcome = ingest_routed(&f, upgrade, &routing).await;
        // Then both journeys started, and both events were stored under their keys
        let IngestOutcome::Stored { started, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        let mut journeys: Vec<&str> = started.iter().map(|s| s.journey_id.as_str()).collect();
        journeys.sort();
        assert_eq!(journeys, ["any-enter", "on-enter"]);
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1").await, 1);
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1:generic").await, 1);
        // And the reaction's trigger carries the extras
        let run = f.store.run_detail(&f.tenant, &started[0].run_id).await.unwrap().unwrap();
        let trigger = serde_json::to_value(&run.input.trigger).unwrap();
        let properties = &trigger["properties"];
        assert_eq!(properties["entryCount"], json!(1));
        assert_eq!(properties["isFirstEntry"], json!(true));
        assert_eq!(properties["bucketId"], json!("pro"));
        assert_eq!(properties["userId"], json!("ada"));
    }
);

store_test!(
    given_one_batch_when_a_new_person_joins_leaves_and_rejoins_then_each_event_sees_the_ones_before,
    |f| async move {
        let routing = routing(vec![pro(), power()]);
        let set = |plan: &str, at: i64| {
            let mut e = used(&f, "ada", at);
            e.contact_properties = obj(json!({ "plan": plan }));
            IngestItem {
                routing: None,
                event: e,
                candidates: vec![],
            }
        };
        // When one batch creates ada on pro, downgrades her and upgrades her again, each
        // event a feature use
        let outcomes = f
            .store
            .ingest(
                Arc::new([set("pro", T0), set("free", T0 + 1), set("pro", T0 + 2)]),
                routing.clone(),
            )
            .await
            .unwrap();
        // Then she joins pro, leaves it and joins again with the next epoch, and joins power
        // at the second use (the first counted though not yet written)
        let moved: Vec<Vec<BucketTransition>> = outcomes.iter().map(transitions).collect();
        assert_eq!(
            moved,
            vec![
                vec![change("pro", "entered", 1, true)],
                vec![
                    change("pro", "left", 1, true),
                    change("power", "entered", 1, true)
                ],
                vec![change("pro", "entered", 2, true)],
            ]
        );
        for key in [
            "bucket:pro:ada:entered:1",
            "bucket:pro:ada:left:1",
            "bucket:pro:ada:entered:2",
            "bucket:power:ada:entered:1",
        ] {
            assert_eq!(events_keyed(&f, key).await, 1, "{key}");
        }
        assert_eq!(memberships(&f, "active").await, 2);
        assert_eq!(memberships(&f, "left").await, 1);
        // ...and the rows stored say so: the first epoch closed by the downgrade, the second
        // open since the upgrade
        let stored = |sql: &'static str| f.db.count(sql, &[]);
        assert_eq!(
            stored(
                "SELECT COUNT(*) FROM bucket_memberships WHERE bucket_id = 'pro' \
                 AND entry_count = 1 AND status = 'left' AND leave_reason = 'criteria' \
                 AND left_at = 1700000000001 AND entered_at = 1700000000000"
            )
            .await,
            1
        );
        assert_eq!(
            stored(
                "SELECT COUNT(*) FROM bucket_memberships WHERE bucket_id = 'pro' \
                 AND entry_count = 2 AND status = 'active' AND left_at IS NULL \
                 AND entered_at = 1700000000002"
            )
            .await,
            1
        );
    }
);

store_test!(
    given_two_members_and_one_other_when_one_batch_moves_all_three_then_each_sees_their_own_memberships,
    |f| async move {
        // Given ada and bob on pro (members) and cy on free
        let routing = routing(vec![pro()]);
        let on = |user: &str, plan: &str, at: i64| {
            let mut e = event(&f.tenant, user, at);
            e.contact_properties = obj(json!({ "plan": plan }));
            e
        };
        for (i, (user, plan)) in [("ada", "pro"), ("bob", "pro"), ("cy", "free")]
            .into_iter()
            .enumerate()
        {
            ingest_routed(&f, on(user, plan, T0 + i as i64), &routing).await;
        }
        assert_eq!(memberships(&f, "active").await, 2);

        // When one batch downgrades ada, sends bob's plan unchanged with a new seat count, and
        // upgrades cy (the batch reads all three people's memberships up front)
        let mut bob = on("bob", "pro", T0 + 11);
        bob.contact_properties = obj(json!({"plan": "pro", "seats": 12}));
        let item = |event| IngestItem {
 routing: None,
            event,
            candidates: vec![],
        };
        let outcomes = f
            .store
            .ingest(
                Arc::new([
                    item(on("ada", "free", T0 + 10)),
                    item(bob),
                    item(on("cy", "pro", T0 + 12)),
                ]),
                routing.clone(),
            )
            .await
            .unwrap();

        // Then ada leaves, bob stays, cy joins
        let moved: Vec<Vec<BucketTransition>> = outcomes.iter().map(transitions).collect();
        assert_eq!(
            moved,
            vec![
                vec![change("pro", "left", 1, true)],
                vec![],
                vec![change("pro", "entered", 1, true)],
            ]
        );
        assert_eq!(memberships(&f, "active").await, 2);
        assert_eq!(memberships(&f, "left").await, 1);
    }
);

store_test!(
    given_one_batch_when_a_visitor_it_created_joins_and_then_links_to_a_member_then_one_membership_remains_under_the_survivor,
    |f| async move {
        // Given ada, a member of pro
        let routing = routing(vec![pro()]);
        let mut known = event(&f.tenant, "ada", T0);
        known.contact_properties = obj(json!({"plan": "pro"}));
        ingest_routed(&f, known, &routing).await;

        // When one batch creates an anonymous visitor on pro (a join of a contact the batch
        // created) and then links the visitor to ada
        let mut visitor = event_as(&f.tenant, Identity::new(None, None, Some("anon-1")), T0 + 1);
        visitor.contact_properties = obj(json!({"plan": "pro"}));
        let linking = event_as(
            &f.tenant,
            Identity::new(Some("ada"), None, Some("anon-1")),
            T0 + 2,
        );
        let item = |event| IngestItem {
 routing: None,
            event,
            candidates: vec![],
        };
        let outcomes = f
            .store
            .ingest(Arc::new([item(visitor), item(linking)]), routing.clone())
            .await
            .unwrap();

        // Then the visitor joined, the link moved nothing, and ada's membership is the one
        // active row: the visitor's closed as merged, both under ada's key
        let moved: Vec<Vec<BucketTransition>> = outcomes.iter().map(transitions).collect();
        assert_eq!(moved, vec![vec![change("pro", "entered", 1, true)], vec![]]);
        assert_merged_into_ada(&f).await;
    }
);

store_test!(
    given_a_transition_key_already_taken_when_a_batch_joins_that_person_then_only_the_other_transitions_are_stored_and_routed,
    |f| async move {
        // Given a reaction on bucket:entered:pro, and ada's first-entry key already used by a
        // stored event (as when a deleted contact's key is taken by a new person)
        let routing: Arc<dyn IngestRouting> = Arc::new(TestRouting {
            buckets: Arc::new(BucketRegistry::from_buckets(vec![pro()])),
            journeys: vec![("bucket:entered:pro", journey("on-enter", EntryLimit::Unlimited))],
        });
        let mut earlier = event(&f.tenant, "zed", T0);
        earlier.name = "legacy.import".into();
        earlier.idempotency_key = Some("bucket:pro:ada:entered:1".into());
        ingest_routed(&f, earlier, &routing).await;

        // When one batch makes ada and then bob join
        let upgrade = |user: &str, at: i64| {
            let mut e = event(&f.tenant, user, at);
            e.contact_properties = obj(json!({"plan": "pro"}));
            IngestItem {
 routing: None, event: e, candidates: vec![] }
        };
        let outcomes = f
            .store
            .ingest(Arc::new([upgrade("ada", T0 + 1), upgrade("bob", T0 + 2)]), routing.clone())
            .await
            .unwrap();

        // Then both joined (epoch 1)...
        for outcome in &outcomes {
            assert_eq!(transitions(outcome), vec![change("pro", "entered", 1, true)]);
        }
        assert_eq!(memberships(&f, "active").await, 2);
        // ...ada's transition was not stored again and started nothing: the key's one event
        // is still the earlier one
        let started = |outcome: &IngestOutcome| match outcome {
            IngestOutcome::Stored { started, .. } => started.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(started(&outcomes[0]), 0);
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM events WHERE idempotency_key = $1 AND name = $2",
                &["bucket:pro:ada:entered:1", "legacy.import"],
            )
            .await,
            1
        );
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1").await, 1);
        // ...and bob's was stored once and started his reaction
        assert_eq!(started(&outcomes[1]), 1);
        assert_eq!(events_keyed(&f, "bucket:pro:bob:entered:1").await, 1);
        assert_eq!(f.db.count("SELECT COUNT(*) FROM runs", &[]).await, 1);
        // And both source events were stored
        assert_eq!(
            f.db.count("SELECT COUNT(*) FROM events WHERE name NOT LIKE 'bucket:%'", &[]).await,
            3
        );
    }
);

store_test!(
    given_a_manual_bucket_when_a_person_is_added_twice_and_removed_then_one_entered_and_one_manual_left_are_stored,
    |f| async move {
        let mut vip = bucket("vip", json!({"type": "property", "property": "x", "operator": "exists"}));
        vip.kind = BucketKind::Manual;
        vip.criteria = None;
        let routing = routing(vec![vip.clone()]);
        ingest_stored(&f, event(&f.tenant, "ada", T0), &[]).await;
        let add = |at| {
            f.store.change_membership(
                &f.tenant,
                &vip,
                "ada",
                MembershipChange::Add,
                Timestamp(at),
                routing.clone(),
            )
        };
        assert_eq!(
            add(T0 + 1).await.unwrap(),
            ManualChangeOutcome::Moved(change("vip", "entered", 1, true))
        );
        // Adding again changes nothing
        assert_eq!(add(T0 + 2).await.unwrap(), ManualChangeOutcome::Unchanged);
        let removed = f
            .store
            .change_membership(&f.tenant, &vip, "ada", MembershipChange::Remove, Timestamp(T0 + 3), routing.clone())
            .await
            .unwrap();
        assert_eq!(removed, ManualChangeOutcome::Moved(change("vip", "left", 1, true)));
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM events WHERE idempotency_key = $1 AND CAST(properties AS TEXT) LIKE $2",
                &["bucket:vip:ada:left:1", "%manual%"],
            )
            .await,
            1
        );
        // An unknown person is answered as such
        let unknown = f
            .store
            .change_membership(&f.tenant, &vip, "nobody", MembershipChange::Add, Timestamp(T0 + 4), routing.clone())
            .await
            .unwrap();
        assert_eq!(unknown, ManualChangeOutcome::UnknownContact);
    }
);

store_test!(
    given_two_contacts_in_one_bucket_when_they_merge_then_one_active_membership_remains_under_the_survivor,
    |f| async move {
        let routing = routing(vec![pro()]);
        // Given an anonymous visitor and a known user, both members
        let mut anonymous = event_as(&f.tenant, Identity::new(None, None, Some("anon-1")), T0);
        anonymous.contact_properties = obj(json!({"plan": "pro"}));
        ingest_routed(&f, anonymous, &routing).await;
        let mut known = event(&f.tenant, "ada", T0 + 1);
        known.contact_properties = obj(json!({"plan": "pro"}));
        ingest_routed(&f, known, &routing).await;
        assert_eq!(memberships(&f, "active").await, 2);

        // When an event links them
        let linking = event_as(
            &f.tenant,
            Identity::new(Some("ada"), None, Some("anon-1")),
            T0 + 2,
        );
        let outcome = ingest_routed(&f, linking, &routing).await;

        // Then the survivor stays a member, the other membership closed as merged, and every
        // row is under the survivor's key
        assert!(transitions(&outcome).is_empty());
        assert_merged_into_ada(&f).await;
    }
);

/// After two members of pro merged into ada: hers is the one active membership, the other
/// closed as merged, and both rows are under her key.
async fn assert_merged_into_ada(f: &Fixture) {
    assert_eq!(memberships(f, "active").await, 1);
    assert_eq!(
        f.db.count(
            "SELECT COUNT(*) FROM bucket_memberships WHERE leave_reason = $1",
            &["merged"],
        )
        .await,
        1
    );
    assert_eq!(
        f.db.count(
            "SELECT COUNT(*) FROM bucket_memberships WHERE contact_key = $1",
            &["ada"],
        )
        .await,
        2
    );
}

store_test!(
    given_members_joining_in_turn_when_the_recent_ones_are_read_then_the_newest_come_first,
    |f| async move {
        let routing = routing(vec![pro()]);
        for (i, user) in ["ada", "bob", "cy"].into_iter().enumerate() {
            let mut upgrade = event(&f.tenant, user, T0 + i as i64);
            upgrade.contact_properties = obj(json!({"plan": "pro"}));
            ingest_routed(&f, upgrade, &routing).await;
        }
        let recent = f.store.recent_members(&f.tenant, "pro", 2).await.unwrap();
        let keys: Vec<&str> = recent.iter().map(|m| m.contact_key.as_str()).collect();
        assert_eq!(keys, ["cy", "bob"]);
    }
);

// The SQLite writer remembers the active memberships ingest read and wrote; these pin that
// what other writers change is never answered from that memory.

store_test!(
    given_a_member_ingest_knows_when_another_writer_removes_her_then_her_next_matching_event_joins_her_again,
    |f| async move {
        // Given ada, a member of pro through ingest, and a second event that keeps her one
        let routing = routing(vec![pro()]);
        let mut upgrade = event(&f.tenant, "ada", T0);
        upgrade.contact_properties = obj(json!({"plan": "pro"}));
        ingest_routed(&f, upgrade, &routing).await;
        let mut again = event(&f.tenant, "ada", T0 + 1);
        again.contact_properties = obj(json!({"plan": "pro"}));
        assert!(transitions(&ingest_routed(&f, again, &routing).await).is_empty());

        // When her membership is removed outside ingest (a manual change)
        let removed = f
            .store
            .change_membership(&f.tenant, &pro(), "ada", MembershipChange::Remove, Timestamp(T0 + 2), routing.clone())
            .await
            .unwrap();
        assert_eq!(removed, ManualChangeOutcome::Moved(change("pro", "left", 1, true)));

        // Then her next events, moving her plan away and back to pro, do not try to leave the
        // membership that is gone, and join her again, as the second epoch
        let mut downgrade = event(&f.tenant, "ada", T0 + 3);
        downgrade.contact_properties = obj(json!({"plan": "free"}));
        assert!(transitions(&ingest_routed(&f, downgrade, &routing).await).is_empty());
        let mut back = event(&f.tenant, "ada", T0 + 4);
        back.contact_properties = obj(json!({"plan": "pro"}));
        let rejoined = ingest_routed(&f, back, &routing).await;
        assert_eq!(transitions(&rejoined), vec![change("pro", "entered", 2, true)]);
        assert_eq!(memberships(&f, "active").await, 1);
    }
);

store_test!(
    given_a_person_ingest_knows_as_no_member_when_a_member_merges_into_her_then_that_event_sees_the_membership,
    |f| async move {
        // Given ada, evaluated for pro by ingest and no member, and an anonymous visitor who
        // is a member of pro
        let routing = routing(vec![pro()]);
        let mut free = event(&f.tenant, "ada", T0);
        free.contact_properties = obj(json!({"plan": "free"}));
        assert!(transitions(&ingest_routed(&f, free, &routing).await).is_empty());
        let mut anonymous = event_as(&f.tenant, Identity::new(None, None, Some("anon-1")), T0 + 1);
        anonymous.contact_properties = obj(json!({"plan": "pro"}));
        ingest_routed(&f, anonymous, &routing).await;

        // When one event links them (the visitor's membership moves to ada) and removes the plan
        let mut linking = event_as(&f.tenant, Identity::new(Some("ada"), None, Some("anon-1")), T0 + 2);
        linking.contact_properties = obj(json!({"plan": null}));
        let linked = ingest_routed(&f, linking, &routing).await;

        // Then that event sees the membership the merge gave her and closes it
        assert_eq!(transitions(&linked), vec![change("pro", "left", 1, true)]);
        assert_eq!(memberships(&f, "active").await, 0);
    }
);

// Property buckets follow the contact's properties where they change, and only there.

/// Upsert ada's contact with `properties` through `routing`.
async fn upsert_routed(
    f: &Fixture,
    properties: Value,
    at: i64,
    routing: &Arc<dyn IngestRouting>,
) -> crate::store::ContactUpsert {
    f.store
        .upsert_contact(
            &f.tenant,
            &crate::contacts::Identity::new(Some("ada"), None, None),
            &obj(properties),
            Timestamp(at),
            routing.clone(),
        )
        .await
        .unwrap()
}

store_test!(
    given_a_property_bucket_when_the_contact_is_upserted_without_an_event_then_she_joins_and_leaves,
    |f| async move {
        // Given ada, known from an event, and a bucket about plan = pro
        let routing = routing(vec![pro()]);
        ingest_routed(&f, event(&f.tenant, "ada", T0), &routing).await;

        // When the contacts API sets her plan to pro
        let upgrade = upsert_routed(&f, json!({"plan": "pro"}), T0 + 1, &routing).await;

        // Then she joins at once, and the transition is stored as an event under its key
        assert_eq!(upgrade.transitions, vec![change("pro", "entered", 1, true)]);
        assert_eq!(memberships(&f, "active").await, 1);
        assert_eq!(events_keyed(&f, "bucket:pro:ada:entered:1").await, 1);

        // When it sets the same plan again, then nothing moves
        let same = upsert_routed(&f, json!({"plan": "pro"}), T0 + 2, &routing).await;
        assert!(same.transitions.is_empty());

        // When it sets another plan, then she leaves
        let downgrade = upsert_routed(&f, json!({"plan": "free"}), T0 + 3, &routing).await;
        assert_eq!(downgrade.transitions, vec![change("pro", "left", 1, true)]);
        assert_eq!(memberships(&f, "active").await, 0);
    }
);

store_test!(
    given_a_member_when_her_events_send_her_property_again_unchanged_then_the_bucket_is_not_re_evaluated,
    |f| async move {
        // Given ada, who joined pro by an event that set her plan
        let routing = routing(vec![pro()]);
        let mut upgrade = event(&f.tenant, "ada", T0);
        upgrade.contact_properties = obj(json!({"plan": "pro"}));
        assert_eq!(
            transitions(&ingest_routed(&f, upgrade, &routing).await),
            vec![change("pro", "entered", 1, true)]
        );
        // And her membership closed behind ingest's back (as a reconcile pass would)
        f.store
            .change_membership(
                &f.tenant,
                &pro(),
                "ada",
                MembershipChange::Remove,
                Timestamp(T0 + 1),
                routing.clone(),
            )
            .await
            .unwrap();

        // When her next event sends plan = pro again
        let mut again = event(&f.tenant, "ada", T0 + 2);
        again.contact_properties = obj(json!({"plan": "pro"}));
        let outcome = ingest_routed(&f, again, &routing).await;

        // Then nothing is evaluated: the value did not change, so neither can the bucket
        assert!(transitions(&outcome).is_empty());
        assert_eq!(memberships(&f, "active").await, 0);
    }
);

store_test!(
    given_one_batch_spanning_a_window_edge_when_counts_age_out_then_each_event_counts_its_own_window,
    |f| async move {
        // Given ada and bob, each with one feature use at T0 (power: two within the hour)
        let routing = routing(vec![power()]);
        for user in ["ada", "bob"] {
            ingest_routed(&f, used(&f, user, T0), &routing).await;
        }
        let item = |user: &str, at: i64| IngestItem {
            routing: None,
            event: used(&f, user, at),
            candidates: vec![],
        };

        // When one batch brings ada's use just inside the hour of her first, bob's just past
        // his, and ada's again once her first two have aged out
        let outcomes = f
            .store
            .ingest(
                Arc::new([
                    item("ada", T0 + HOUR - 10),
                    item("bob", T0 + HOUR + 5),
                    item("ada", T0 + 2 * HOUR),
                ]),
                routing.clone(),
            )
            .await
            .unwrap();

        // Then ada joins power, bob does not (his first use left the window), and ada leaves
        // with her third, which counts only itself
        let moved: Vec<Vec<BucketTransition>> = outcomes.iter().map(transitions).collect();
        assert_eq!(
            moved,
            vec![
                vec![change("power", "entered", 1, true)],
                vec![],
                vec![change("power", "left", 1, true)],
            ]
        );
        assert_eq!(memberships(&f, "active").await, 0);
        assert_eq!(memberships(&f, "left").await, 1);
    }
);
