//! Contacts: finding them by key or by user id / email, and deleting one (it stops resolving,
//! its live runs exit, its queued emails are cancelled and its personal data is erased).

use super::*;
use crate::journeys::RunStatus;
use crate::store::{DeletedContact, DeliveryResult, EmailFilter, EmailStatus, RunFilter};

async fn find_any(f: &Fixture, user_id: Option<&str>, email: Option<&str>) -> Vec<ContactRecord> {
    f.store
        .find_contacts(
            &f.tenant,
            &ContactLookup::Any {
                user_id: user_id.map(str::to_owned),
                email: email.map(str::to_owned),
            },
        )
        .await
        .unwrap()
}

store_test!(
    given_contacts_when_looked_up_by_user_id_or_email_then_each_match_is_listed_once,
    |f| async move {
        // Given a contact with a user id and email, and an email-only contact
        ingest_stored(&f, event(&f.tenant, "ada", T0), &[]).await;
        let bob_identity = Identity::new(None, Some("bob@example.com"), None);
        let (bob_key, _) = ingest_stored(&f, event_as(&f.tenant, bob_identity, T0 + 1), &[]).await;
        let ada = contact(&f, "ada").await;
        let bob = contact(&f, &bob_key).await;

        // When looked up by one's user id and the other's email (not normalised)
        let both = find_any(&f, Some("ada"), Some(" BOB@example.com")).await;
        // Then both are found, oldest first
        assert_eq!(both, vec![ada.clone(), bob.clone()]);
        // When both values point to the same contact, then it is listed once
        assert_eq!(
            find_any(&f, Some("ada"), Some("ada@example.com")).await,
            vec![ada]
        );
        // And lookups that match nothing find nothing
        assert!(find_any(&f, None, None).await.is_empty());
        assert!(find_any(&f, Some("nobody"), Some("  ")).await.is_empty());
        let by_key = f
            .store
            .find_contacts(&f.tenant, &ContactLookup::Key("nobody".into()))
            .await
            .unwrap();
        assert!(by_key.is_empty());
        // And another tenant sees none of them
        let other = second_tenant(&f).await;
        let elsewhere = f
            .store
            .find_contacts(
                &other,
                &ContactLookup::Any {
                    user_id: Some("ada".into()),
                    email: Some("bob@example.com".into()),
                },
            )
            .await
            .unwrap();
        assert!(elsewhere.is_empty());
    }
);

store_test!(
    given_a_contact_with_runs_and_emails_when_deleted_then_it_stops_resolving_and_its_data_is_erased,
    |f| async move {
        // Given a contact first seen by email, later by user id (so its first key is an alias)
        let first_identity = Identity::new(None, Some("ada@example.com"), None);
        let (first_key, _) =
            ingest_stored(&f, event_as(&f.tenant, first_identity, T0), &[]).await;
        // with properties, a completed run whose email was sent, and a waiting run with a
        // queued email
        let mut signup = event(&f.tenant, "ada", T0);
        signup.contact_properties = obj(json!({"plan": "pro", "name": "Ada"}));
        let (_, done) = ingest_stored(&f, signup, &[welcome(EntryLimit::Unlimited)]).await;
        claim_due(&f, "w1", T0).await;
        let mut finished = commit(&f, &done[0], "w1", RunTransition::Completed);
        finished.emails = vec![email(&f, &done[0], 0, "ada@example.com")];
        let sent_id = finished.emails[0].id.clone();
        assert!(f.store.commit_activation(finished).await.unwrap());
        f.store
            .record_delivery(&sent_id, DeliveryResult::Sent { at: Timestamp(T0 + 2) })
            .await
            .unwrap();
        let (_, live) = ingest_stored(
            &f,
            event(&f.tenant, "ada", T0 + 10),
            &[journey("onboarding", EntryLimit::Unlimited)],
        )
        .await;
        queue_email_and_wait(&f, &live[0], "ada", T0 + 10).await;
        // and another contact
        ingest_stored(&f, event(&f.tenant, "bob", T0), &[]).await;
        let ada = contact(&f, "ada").await;
        assert_eq!(contact(&f, &first_key).await.id, ada.id);

        // When it is deleted through its first key
        let deleted = f
            .store
            .delete_contact(&f.tenant, &first_key, Timestamp(T0 + HOUR))
            .await
            .unwrap();

        // Then the deletion names it and what it stopped
        assert_eq!(
            deleted,
            Some(DeletedContact {
                contact_id: ada.id.clone(),
                key: "ada".into(),
                exited_runs: 1,
                cancelled_emails: 1,
            })
        );
        // And it no longer resolves, by key, old key, user id or email
        for key in ["ada", first_key.as_str()] {
            let found = f
                .store
                .find_contacts(&f.tenant, &ContactLookup::Key(key.into()))
                .await
                .unwrap();
            assert!(found.is_empty(), "{key}: {found:?}");
        }
        assert!(find_any(&f, Some("ada"), Some("ada@example.com")).await.is_empty());
        // And its row keeps only what lines history up (user id, and a key of its own that its
        // history moved to, so a newcomer with the same user id starts afresh), without its
        // aliases
        let history_key = crate::store::codec::deleted_key("ada", ada.id.as_str());
        let scrubbed = f
            .db
            .count(
                "SELECT COUNT(*) FROM contacts WHERE CAST(id AS TEXT) = $1 \
                 AND deleted_at IS NOT NULL AND email IS NULL \
                 AND CAST(properties AS TEXT) = '{}' AND external_id = 'ada' AND key = $2",
                &[ada.id.as_str(), &history_key],
            )
            .await;
        assert_eq!(scrubbed, 1);
        let aliases = f
            .db
            .count(
                "SELECT COUNT(*) FROM contact_aliases WHERE CAST(contact_id AS TEXT) = $1",
                &[ada.id.as_str()],
            )
            .await;
        assert_eq!(aliases, 0);
        // And its live run exited with its timer gone; no run keeps the person's data
        let runs = f
            .store
            .list_runs(
                &f.tenant,
                &RunFilter {
                    contact_key: Some(history_key.clone()),
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
        for run in &runs {
            let detail = f.store.run_detail(&f.tenant, &run.id).await.unwrap().unwrap();
            assert_eq!(detail.input.person.key, "ada");
            assert_eq!(detail.input.person.email, None);
            assert!(detail.input.person.properties.is_empty());
            let expected = if run.id == live[0] {
                RunStatus::Exited
            } else {
                RunStatus::Completed
            };
            assert_eq!(detail.run.status, expected);
        }
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
        assert_eq!(f.db.rows("timers").await, 0);
        // And its queued email is cancelled (never claimed), every email blanked
        let emails = f
            .store
            .list_emails(
                &f.tenant,
                &EmailFilter {
                    contact_key: Some(history_key.clone()),
                    ..EmailFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(emails.len(), 2);
        for mail in &emails {
            assert_eq!((mail.to.as_str(), mail.subject.as_str(), mail.body.as_str()), ("", "", ""));
            let expected = if mail.id == sent_id {
                EmailStatus::Sent
            } else {
                EmailStatus::Cancelled
            };
            assert_eq!(mail.status, expected);
        }
        let far = lease("d1", Clock::real_now().0 + 3_600_000);
        assert!(f.store.claim_outbox(&far, 10).await.unwrap().is_empty());
        // And the other contact is untouched; deleting again, or nobody, finds nothing
        assert_eq!(contact(&f, "bob").await.email.as_deref(), Some("bob@example.com"));
        for key in ["ada", "nobody"] {
            let again = f
                .store
                .delete_contact(&f.tenant, key, Timestamp(T0 + 2 * HOUR))
                .await
                .unwrap();
            assert_eq!(again, None);
        }
    }
);

store_test!(
    given_a_contact_that_absorbed_another_when_deleted_then_the_absorbed_data_is_erased_too,
    |f| async move {
        // Given a contact into which an email-only contact was merged
        let mut loser = event_as(
            &f.tenant,
            Identity::new(None, Some("old@example.com"), None),
            T0,
        );
        loser.contact_properties = obj(json!({"secret": "yes"}));
        ingest_stored(&f, loser, &[]).await;
        ingest_stored(&f, event(&f.tenant, "ada", T0 + 1), &[]).await;
        let both = Identity::new(Some("ada"), Some("old@example.com"), None);
        ingest_stored(&f, event_as(&f.tenant, both, T0 + 2), &[]).await;
        assert_eq!(f.db.rows("contacts").await, 2);

        // When the survivor is deleted
        let deleted = f
            .store
            .delete_contact(&f.tenant, "ada", Timestamp(T0 + HOUR))
            .await
            .unwrap();

        // Then no contact row keeps an email or properties of the person
        assert!(deleted.is_some());
        let personal =
            f.db.count(
                "SELECT COUNT(*) FROM contacts \
                 WHERE email IS NOT NULL OR CAST(properties AS TEXT) <> '{}'",
                &[],
            )
            .await;
        assert_eq!(personal, 0);
        assert_eq!(f.db.rows("contact_aliases").await, 0);
    }
);
