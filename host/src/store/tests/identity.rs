//! Identity resolution through the store: creating contacts, filling one in (its history
//! following its new key), merging several (survivor, properties, losers and their history),
//! and deleted contacts no longer resolving.

use super::*;
use crate::journeys::RunStatus;
use crate::store::{EmailFilter, RunFilter};

fn email_only(email: &str) -> Identity {
    Identity::new(None, Some(email), None)
}

async fn events_under(f: &Fixture, key: &str) -> i64 {
    f.db.count("SELECT COUNT(*) FROM events WHERE contact_key = $1", &[key])
        .await
}

async fn runs_of(f: &Fixture, key: &str) -> Vec<crate::store::RunRecord> {
    f.store
        .list_runs(
            &f.tenant,
            &RunFilter {
                contact_key: Some(key.into()),
                ..RunFilter::default()
            },
        )
        .await
        .unwrap()
}

store_test!(
    given_no_contact_when_events_name_a_person_then_a_contact_is_created_under_its_resolved_key,
    |f| async move {
        // When an event names a user id and an email
        let identity = Identity::new(Some(" u1 "), Some(" Ada@Example.COM "), None);
        let (key, _) = ingest_stored(&f, event_as(&f.tenant, identity, T0), &[]).await;
        // Then the contact is keyed by the user id and holds the normalised email
        assert_eq!(key, "u1");
        let ada = contact(&f, "u1").await;
        assert_eq!(ada.key, "u1");
        assert_eq!(ada.external_id.as_deref(), Some("u1"));
        assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
        assert_eq!(ada.anonymous_id, None);
        assert_eq!((ada.first_seen_at, ada.deleted_at), (Timestamp(T0), None));

        // When events name only an anonymous id, or only an email
        let (anon_key, _) = ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(None, None, Some("anon-1")), T0),
            &[],
        )
        .await;
        let (mail_key, _) = ingest_stored(
            &f,
            event_as(&f.tenant, email_only("bob@example.com"), T0),
            &[],
        )
        .await;
        // Then they are keyed by the anonymous id, and by the new contact's id
        assert_eq!(anon_key, "anon-1");
        assert_eq!(
            contact(&f, "anon-1").await.anonymous_id.as_deref(),
            Some("anon-1")
        );
        let bob = contact(&f, &mail_key).await;
        assert_eq!(bob.id.as_str(), mail_key);
        assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
        assert_eq!(f.db.rows("contacts").await, 3);
        assert_eq!(events_under(&f, &mail_key).await, 1);

        // And an upsert without an event creates, then links
        let cy = Identity::new(Some("cy"), None, None);
        let created = f
            .store
            .upsert_plain(&f.tenant, &cy, &obj(json!({"plan": "free"})), Timestamp(T0))
            .await
            .unwrap();
        assert!(created.created && !created.linked && created.merged.is_empty());
        let linked = f
            .store
            .upsert_plain(&f.tenant, &cy, &obj(json!({"age": 3})), Timestamp(T0 + 1))
            .await
            .unwrap();
        assert!(!linked.created && linked.linked);
        assert_eq!(linked.contact.id, created.contact.id);
        assert_eq!(
            linked.contact.properties,
            obj(json!({"plan": "free", "age": 3}))
        );
        assert_eq!(contact(&f, "cy").await, linked.contact);
    }
);

store_test!(
    given_an_email_only_contact_when_it_gains_a_user_id_then_its_history_follows_the_new_key,
    |f| async move {
        // Given an email-only contact with an event, a waiting run and a queued email
        let (old_key, started) = ingest_stored(
            &f,
            event_as(&f.tenant, email_only("ada@example.com"), T0),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        let run = started[0].clone();
        queue_email_and_wait(&f, &run, &old_key, T0).await;
        let before = contact(&f, &old_key).await;

        // When an event names the same email with a user id
        let identity = Identity::new(Some("u1"), Some("ADA@example.com"), None);
        let (key, _) = ingest_stored(&f, event_as(&f.tenant, identity, T0 + HOUR), &[]).await;

        // Then the same contact now has the user id as its key
        assert_eq!(key, "u1");
        let ada = contact(&f, "u1").await;
        assert_eq!(ada.id, before.id);
        assert_eq!(ada.external_id.as_deref(), Some("u1"));
        assert_eq!(ada.last_seen_at, Timestamp(T0 + HOUR));
        assert_eq!(f.db.rows("contacts").await, 1);
        // And its events, runs and emails moved to the new key
        assert_eq!(events_under(&f, &old_key).await, 0);
        assert_eq!(events_under(&f, "u1").await, 2);
        assert!(runs_of(&f, &old_key).await.is_empty());
        let runs = runs_of(&f, "u1").await;
        assert_eq!(runs.len(), 1);
        assert_eq!((&runs[0].id, runs[0].status), (&run, RunStatus::Waiting));
        let emails = f
            .store
            .list_emails(
                &f.tenant,
                &EmailFilter {
                    contact_key: Some("u1".into()),
                    ..EmailFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(emails.len(), 1);
        // And the old key still finds the contact
        assert_eq!(contact(&f, &old_key).await.id, before.id);
    }
);

store_test!(
    given_two_contacts_when_an_event_names_both_then_they_merge_into_the_one_with_a_user_id,
    |f| async move {
        // Given an older email-only contact with two live runs (one with a queued email)
        let mut a = event_as(&f.tenant, email_only("a@example.com"), T0);
        a.contact_properties = obj(json!({"plan": "free", "a": 1}));
        let (a_key, a_runs) = ingest_stored(
            &f,
            a,
            &[
                welcome(EntryLimit::Unlimited),
                journey("onboarding", EntryLimit::Unlimited),
            ],
        )
        .await;
        queue_email_and_wait(&f, &a_runs[0], &a_key, T0).await;
        let loser = contact(&f, &a_key).await;
        // And a younger contact with a user id and a live run of the same journey
        let mut b = event_as(&f.tenant, Identity::new(Some("u1"), None, None), T0 + HOUR);
        b.contact_properties = obj(json!({"plan": "pro", "b": 2}));
        let (_, b_runs) = ingest_stored(&f, b, &[welcome(EntryLimit::Unlimited)]).await;
        let survivor = contact(&f, "u1").await;
        assert_eq!(f.db.rows("timers").await, 3);

        // When an event names the user id and the first contact's email, with a patch
        let mut both = event_as(
            &f.tenant,
            Identity::new(Some("u1"), Some("a@example.com"), None),
            T0 + 2 * HOUR,
        );
        both.contact_properties = obj(json!({"c": 3, "a": null}));
        let (key, _) = ingest_stored(&f, both, &[]).await;

        // Then the contact with the user id survives, with the loser's email, the properties
        // folded (loser, then survivor, then patch) and the earliest first-seen time
        assert_eq!(key, "u1");
        let merged = contact(&f, "u1").await;
        assert_eq!(merged.id, survivor.id);
        assert_eq!(merged.email.as_deref(), Some("a@example.com"));
        assert_eq!(
            merged.properties,
            obj(json!({"plan": "pro", "b": 2, "c": 3}))
        );
        assert_eq!(merged.first_seen_at, Timestamp(T0));
        assert_eq!(merged.last_seen_at, Timestamp(T0 + 2 * HOUR));
        // And the loser is soft-deleted, its old key leading to the survivor
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM contacts WHERE CAST(id AS TEXT) = $1 \
                 AND deleted_at IS NOT NULL",
                &[loser.id.as_str()]
            )
            .await,
            1
        );
        assert_eq!(contact(&f, &a_key).await.id, survivor.id);
        // And the loser's history is the survivor's: events, runs and emails
        assert_eq!(events_under(&f, &a_key).await, 0);
        assert_eq!(events_under(&f, "u1").await, 3);
        assert!(runs_of(&f, &a_key).await.is_empty());
        let status = |id: &RunId, runs: &[crate::store::RunRecord]| {
            runs.iter().find(|r| r.id == *id).map(|r| r.status)
        };
        let runs = runs_of(&f, "u1").await;
        assert_eq!(runs.len(), 3);
        // the loser's welcome run collided with the survivor's live one: it exited
        assert_eq!(status(&a_runs[0], &runs), Some(RunStatus::Exited));
        assert_eq!(status(&a_runs[1], &runs), Some(RunStatus::Active));
        assert_eq!(status(&b_runs[0], &runs), Some(RunStatus::Active));
        assert_eq!(
            f.db.rows("timers").await,
            2,
            "the exited run's timer is gone"
        );
        let live = f
            .store
            .list_runs(
                &f.tenant,
                &RunFilter {
                    contact_key: Some("u1".into()),
                    live_only: true,
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(live.len(), 2);
        let emails = f
            .store
            .list_emails(&f.tenant, &EmailFilter::default())
            .await
            .unwrap();
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].contact_key, "u1");
    }
);

store_test!(
    given_two_contacts_without_a_user_id_when_merged_then_the_oldest_survives,
    |f| async move {
        // Given an anonymous contact and an older email-only contact
        let anon = Identity::new(None, None, Some("anon-1"));
        let (anon_key, _) = ingest_stored(&f, event_as(&f.tenant, anon, T0 + HOUR), &[]).await;
        let (mail_key, _) = ingest_stored(
            &f,
            event_as(&f.tenant, email_only("x@example.com"), T0),
            &[],
        )
        .await;
        let younger = contact(&f, &anon_key).await;
        let older = contact(&f, &mail_key).await;

        // When one call names both
        let both = Identity::new(None, Some("x@example.com"), Some("anon-1"));
        let resolution = f
            .store
            .upsert_plain(&f.tenant, &both, &Map::new(), Timestamp(T0 + 2 * HOUR))
            .await
            .unwrap();

        // Then the older one survives, gaining the anonymous id (its new key)
        assert!(resolution.linked && !resolution.created);
        assert_eq!(resolution.merged, vec![younger.id.clone()]);
        assert_eq!(resolution.contact.id, older.id);
        assert_eq!(resolution.contact.key, "anon-1");
        assert_eq!(resolution.contact.anonymous_id.as_deref(), Some("anon-1"));
        assert_eq!(contact(&f, "anon-1").await, resolution.contact);
        // And both old keys lead to it, with all history under the new key
        assert_eq!(contact(&f, &mail_key).await.id, older.id);
        assert_eq!(events_under(&f, "anon-1").await, 2);
        assert_eq!(events_under(&f, &mail_key).await, 0);
    }
);

store_test!(
    given_two_contacts_with_user_ids_when_merged_then_the_losers_user_id_still_resolves,
    |f| async move {
        // Given an older contact u1 (with an email) and a younger contact u2
        ingest_stored(&f, event(&f.tenant, "u1", T0), &[]).await;
        let mut younger = event_as(&f.tenant, Identity::new(Some("u2"), None, None), T0 + 1);
        younger.contact_properties = obj(json!({"plan": "pro"}));
        ingest_stored(&f, younger, &[]).await;
        let u1 = contact(&f, "u1").await;

        // When an event names u2 with u1's email
        let both = Identity::new(Some("u2"), Some("u1@example.com"), None);
        let (key, _) = ingest_stored(&f, event_as(&f.tenant, both, T0 + 2), &[]).await;

        // Then u1 (the oldest with a user id) survives and history is under its key
        assert_eq!(key, "u1");
        assert_eq!(
            contact(&f, "u1").await.properties,
            obj(json!({"plan": "pro"}))
        );
        // And u2 still finds it: by key, by user id, and on the next event
        assert_eq!(contact(&f, "u2").await.id, u1.id);
        let by_user = f
            .store
            .find_contacts(
                &f.tenant,
                &ContactLookup::Any {
                    user_id: Some("u2".into()),
                    email: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            by_user.iter().map(|c| &c.id).collect::<Vec<_>>(),
            vec![&u1.id]
        );
        let (next, _) = ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(Some("u2"), None, None), T0 + 3),
            &[],
        )
        .await;
        assert_eq!(next, "u1");
        assert_eq!(f.db.rows("contacts").await, 2);
        assert_eq!(events_under(&f, "u1").await, 4);
    }
);

store_test!(
    given_a_deleted_contact_when_its_user_id_comes_again_then_a_new_contact_is_created,
    |f| async move {
        // Given a contact that was deleted
        let mut first = event(&f.tenant, "ada", T0);
        first.contact_properties = obj(json!({"plan": "pro"}));
        ingest_stored(&f, first, &[]).await;
        let old = contact(&f, "ada").await;
        f.store
            .delete_contact(&f.tenant, "ada", Timestamp(T0 + 1))
            .await
            .unwrap()
            .unwrap();

        // When an event names its user id (and email) again
        let mut again = event(&f.tenant, "ada", T0 + HOUR);
        again.contact_properties = obj(json!({"city": "London"}));
        let (key, _) = ingest_stored(&f, again, &[]).await;

        // Then a new contact is created: nothing of the old one comes back
        assert_eq!(key, "ada");
        let new = contact(&f, "ada").await;
        assert_ne!(new.id, old.id);
        assert_eq!(new.properties, obj(json!({"city": "London"})));
        assert_eq!(new.first_seen_at, Timestamp(T0 + HOUR));
        assert_eq!(new.email.as_deref(), Some("ada@example.com"));
        assert_eq!(f.db.rows("contacts").await, 2);
    }
);

store_test!(
    given_chained_merges_when_the_first_losers_id_returns_then_it_finds_the_final_survivor,
    |f| async move {
        // Given S (oldest), then L (with an anonymous id of its own), then an anonymous visitor M
        let at = |t: i64| T0 + t;
        ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(Some("s"), None, None), at(0)),
            &[],
        )
        .await;
        ingest_stored(
            &f,
            event_as(
                &f.tenant,
                Identity::new(Some("l"), Some("l@example.com"), Some("anon-l")),
                at(1),
            ),
            &[],
        )
        .await;
        ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(None, None, Some("anon-m")), at(2)),
            &[],
        )
        .await;
        // And M merged into L (L has a user id), then L into S (both do; S is older)
        let (into_l, _) = ingest_stored(
            &f,
            event_as(
                &f.tenant,
                Identity::new(Some("l"), None, Some("anon-m")),
                at(3),
            ),
            &[],
        )
        .await;
        assert_eq!(into_l, "l");
        let (into_s, _) = ingest_stored(
            &f,
            event_as(
                &f.tenant,
                Identity::new(Some("s"), Some("l@example.com"), None),
                at(4),
            ),
            &[],
        )
        .await;
        assert_eq!(into_s, "s");

        // When M's anonymous id comes back
        let (key, _) = ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(None, None, Some("anon-m")), at(5)),
            &[],
        )
        .await;

        // Then it resolves to the final survivor rather than starting a new person
        assert_eq!(key, "s");
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL",
                &[]
            )
            .await,
            1
        );
    }
);

store_test!(
    given_a_user_id_that_is_another_contacts_anonymous_key_when_it_arrives_then_they_are_one_person,
    |f| async move {
        // Given an anonymous-only contact keyed "x"
        let (anon, _) = ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(None, None, Some("x")), T0),
            &[],
        )
        .await;
        assert_eq!(anon, "x");

        // When a user id "x" arrives
        let (key, _) = ingest_stored(
            &f,
            event_as(&f.tenant, Identity::new(Some("x"), None, None), T0 + 1),
            &[],
        )
        .await;

        // Then it is the same contact (keys identify people), not a database error
        assert_eq!(key, "x");
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL",
                &[]
            )
            .await,
            1
        );
    }
);

store_test!(
    given_a_person_one_handle_has_seen_when_another_handle_changes_them_then_the_first_builds_on_the_change,
    |f| async move {
        // Given a person the store has resolved (and so may remember)
        let ada = Identity::new(Some("ada"), None, None);
        let mut first = event_as(&f.tenant, ada.clone(), T0);
        first.contact_properties = obj(json!({"plan": "free"}));
        ingest_stored(&f, first, &[]).await;

        // When a second handle on the same database (a second process) changes their plan
        let other = f.db.open_store().await.unwrap();
        other
            .upsert_plain(&f.tenant, &ada, &obj(json!({"plan": "pro"})), Timestamp(T0 + 1))
            .await
            .unwrap();

        // And the first store takes another event of theirs
        let mut next = event_as(&f.tenant, ada, T0 + 2);
        next.contact_properties = obj(json!({"seats": 3}));
        ingest_stored(&f, next, &[]).await;

        // Then the contact holds both changes: the first store did not write over the second's
        assert_eq!(
            contact(&f, "ada").await.properties,
            obj(json!({"plan": "pro", "seats": 3}))
        );
    }
);

store_test!(
    given_identity_changes_when_ingested_as_one_batch_then_the_contacts_are_those_of_one_by_one,
    |f| async move {
        // Given a sequence of events that creates, updates, links, re-keys and merges people,
        // the same person often several times (what a batch keeps in memory between items)
        let steps: Vec<(Identity, Value)> = vec![
            (
                Identity::new(Some("ada"), Some("ada@example.com"), None),
                json!({"plan": "free"}),
            ),
            (Identity::new(Some("ada"), None, None), json!({"seats": 3})),
            (
                Identity::new(None, Some("ada@example.com"), None),
                json!({"plan": "pro"}),
            ),
            (Identity::new(None, None, Some("v1")), json!({"ref": "ads"})),
            (
                Identity::new(None, Some("bob@example.com"), Some("v1")),
                json!({}),
            ),
            (
                Identity::new(Some("bob"), None, Some("v1")),
                json!({"seats": 1}),
            ),
            (
                Identity::new(None, Some("bob@example.com"), None),
                json!({"plan": "team"}),
            ),
            (Identity::new(None, None, Some("v1")), json!({"ref": null})),
            (
                Identity::new(Some("ada"), None, Some("v1")),
                json!({"merged": true}),
            ),
            (Identity::new(None, None, Some("v1")), json!({"last": "v1"})),
            (
                Identity::new(Some("bob"), None, None),
                json!({"last": "bob"}),
            ),
            (Identity::new(Some("ada"), None, None), json!({"seats": 5})),
        ];
        let events = |tenant: &TenantId| -> Vec<NewEvent> {
            steps
                .iter()
                .enumerate()
                .map(|(i, (identity, patch))| {
                    let mut e = event_as(tenant, identity.clone(), T0 + i as i64 * HOUR);
                    e.contact_properties = obj(patch.clone());
                    e
                })
                .collect()
        };
        let one_by_one = second_tenant(&f).await;

        // When they are ingested as one batch in one tenant, and one at a time in another
        let item = |event| IngestItem {
            routing: None,
            event,
            candidates: vec![],
        };
        f.store
            .ingest_plain(events(&f.tenant).into_iter().map(item).collect())
            .await
            .unwrap();
        for event in events(&one_by_one) {
            f.store.ingest_plain(vec![item(event)]).await.unwrap();
        }

        // Then every way of naming the people finds the same contacts in both tenants
        let lookups = [
            ContactLookup::Key("ada".into()),
            ContactLookup::Key("bob".into()),
            ContactLookup::Key("v1".into()),
            ContactLookup::Any {
                user_id: None,
                email: Some("bob@example.com".into()),
            },
        ];
        for lookup in &lookups {
            let seen = |tenant: TenantId| {
                let store = f.store.clone();
                let lookup = lookup.clone();
                async move {
                    let found = store.find_contacts(&tenant, &lookup).await.unwrap();
                    found
                        .into_iter()
                        .map(|c| {
                            (
                                c.key,
                                c.external_id,
                                c.email,
                                c.anonymous_id,
                                c.properties,
                                c.first_seen_at,
                                c.last_seen_at,
                            )
                        })
                        .collect::<Vec<_>>()
                }
            };
            let batched = seen(f.tenant.clone()).await;
            assert!(!batched.is_empty(), "{lookup:?} finds someone");
            assert_eq!(batched, seen(one_by_one.clone()).await, "{lookup:?}");
        }
        // And the merge left one live person holding every property, last seen at the end
        let ada = contact(&f, "ada").await;
        assert_eq!(contact(&f, "bob").await.id, ada.id);
        assert_eq!(ada.properties["seats"], json!(5));
        assert_eq!(ada.properties["merged"], json!(true));
        assert_eq!(ada.properties["last"], json!("bob"));
        assert!(!ada.properties.contains_key("ref"), "{:?}", ada.properties);
        assert_eq!(ada.last_seen_at, Timestamp(T0 + 11 * HOUR));
        assert_eq!(ada.first_seen_at, Timestamp(T0));
    }
);
