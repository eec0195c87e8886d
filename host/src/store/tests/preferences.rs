//! Email on both backends: tenant templates, unsubscribes (and that merges keep them), the
//! suppression checks at commit and at claim, the suppress-window query and the signing key.

use super::*;
use crate::store::{EmailFilter, SuppressedReason, TenantTemplate};

fn template(key: &str, subject: &str, at: i64) -> TenantTemplate {
    TenantTemplate {
        key: key.into(),
        subject: subject.into(),
        text: "Hello {{ key }}".into(),
        html: Some("<p>Hello</p>".into()),
        created_at: Timestamp(at),
        updated_at: Timestamp(at),
    }
}

async fn status_of(f: &Fixture, to: &str) -> Vec<(EmailStatus, Option<SuppressedReason>)> {
    let filter = EmailFilter {
        to: Some(to.into()),
        ..Default::default()
    };
    f.store
        .list_emails(&f.tenant, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.status, e.suppressed_reason))
        .collect()
}

store_test!(
    given_tenant_templates_when_upserted_listed_and_deleted_then_each_tenant_sees_only_its_own,
    |f| async move {
        // Given a template created, then replaced
        assert!(
            f.store
                .put_email_template(&f.tenant, &template("welcome", "v1", T0))
                .await
                .unwrap()
        );
        let replaced = f
            .store
            .put_email_template(&f.tenant, &template("welcome", "v2", T0 + HOUR))
            .await
            .unwrap();
        assert!(!replaced, "an existing key is updated, not created");

        // Then it reads back with the new copy and its first creation time
        let stored = f
            .store
            .email_template(&f.tenant, "welcome")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.subject, "v2");
        assert_eq!(stored.created_at, Timestamp(T0));
        assert_eq!(stored.updated_at, Timestamp(T0 + HOUR));
        f.store
            .put_email_template(&f.tenant, &template("another", "x", T0))
            .await
            .unwrap();
        let keys: Vec<String> = f
            .store
            .email_templates(&f.tenant)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(keys, ["another", "welcome"]);

        // And another tenant sees none of them and cannot delete them
        let other = second_tenant(&f).await;
        assert!(f.store.email_templates(&other).await.unwrap().is_empty());
        assert!(
            f.store
                .email_template(&other, "welcome")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !f.store
                .delete_email_template(&other, "welcome")
                .await
                .unwrap()
        );

        // When it is deleted
        assert!(
            f.store
                .delete_email_template(&f.tenant, "welcome")
                .await
                .unwrap()
        );
        assert!(
            f.store
                .email_template(&f.tenant, "welcome")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !f.store
                .delete_email_template(&f.tenant, "welcome")
                .await
                .unwrap()
        );
    }
);

store_test!(
    given_an_unsubscribe_then_the_person_and_the_address_count_as_unsubscribed_in_this_tenant_only,
    |f| async move {
        assert!(
            !f.store
                .is_unsubscribed(&f.tenant, "ada", Some("ada@example.com"))
                .await
                .unwrap()
        );

        // When Ada unsubscribes at her address
        let now = Timestamp(T0);
        assert!(
            f.store
                .unsubscribe(&f.tenant, "ada", "ada@example.com", now)
                .await
                .unwrap()
        );
        assert!(
            !f.store
                .unsubscribe(&f.tenant, "ada", "ada@example.com", now)
                .await
                .unwrap(),
            "a second unsubscribe changes nothing"
        );

        // Then her key, and her address under any key, are unsubscribed
        assert!(
            f.store
                .is_unsubscribed(&f.tenant, "ada", None)
                .await
                .unwrap()
        );
        assert!(
            f.store
                .is_unsubscribed(&f.tenant, "someone", Some("ada@example.com"))
                .await
                .unwrap()
        );
        assert!(
            !f.store
                .is_unsubscribed(&f.tenant, "bob", Some("bob@example.com"))
                .await
                .unwrap()
        );
        // And not in another tenant
        let other = second_tenant(&f).await;
        assert!(
            !f.store
                .is_unsubscribed(&other, "ada", Some("ada@example.com"))
                .await
                .unwrap()
        );
    }
);

store_test!(
    given_an_unsubscribed_contact_when_it_merges_into_another_then_the_survivor_stays_unsubscribed,
    |f| async move {
        // Given an email-only contact that unsubscribed, and a contact with a user id
        let (a_key, _) = ingest_stored(
            &f,
            event_as(
                &f.tenant,
                Identity::new(None, Some("a@example.com"), None),
                T0,
            ),
            &[],
        )
        .await;
        f.store
            .unsubscribe(&f.tenant, &a_key, "a@example.com", Timestamp(T0))
            .await
            .unwrap();
        ingest_stored(&f, event(&f.tenant, "u1", T0 + 1), &[]).await;
        assert!(
            !f.store
                .is_unsubscribed(&f.tenant, "u1", None)
                .await
                .unwrap()
        );

        // When an event names both, merging the first into the second
        let both = event_as(
            &f.tenant,
            Identity::new(Some("u1"), Some("a@example.com"), None),
            T0 + 2,
        );
        let (key, _) = ingest_stored(&f, both, &[]).await;
        assert_eq!(key, "u1");

        // Then the survivor's key carries the opt-out, and the loser's key holds none
        assert!(
            f.store
                .is_unsubscribed(&f.tenant, "u1", None)
                .await
                .unwrap()
        );
        assert_eq!(
            f.db.count(
                "SELECT COUNT(*) FROM email_preferences WHERE contact_key = $1",
                &[&a_key]
            )
            .await,
            0
        );
    }
);

store_test!(
    given_an_unsubscribed_recipient_then_the_commit_and_the_claim_record_emails_as_suppressed,
    |f| async move {
        // Given Ada's run under way when she unsubscribed (a new run would not start: the
        // enrollment guard skips her), and its activation queues an email to her
        let run = claimed_run(&f, "ada", T0).await;
        f.store
            .unsubscribe(&f.tenant, "ada", "ada@example.com", Timestamp(T0))
            .await
            .unwrap();
        let mut c = waiting_commit(&f, &run, "w1", T0 + HOUR);
        c.emails = vec![email(&f, &run, 0, "ada@example.com")];
        assert!(f.store.commit_activation(c).await.unwrap());

        // Then the commit records it suppressed, and no claim takes it
        assert_eq!(
            status_of(&f, "ada@example.com").await,
            [(
                EmailStatus::Suppressed,
                Some(SuppressedReason::Unsubscribed)
            )]
        );
        let real = Clock::real_now().0;
        assert!(
            f.store
                .claim_outbox(&lease("d1", real), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Given Bob's email queued while he was subscribed
        let bob_run = claimed_run(&f, "bob", T0).await;
        let mut c = commit(&f, &bob_run, "w1", RunTransition::Completed);
        let mut mail = email(&f, &bob_run, 0, "bob@example.com");
        mail.contact_key = "bob".into();
        c.emails = vec![mail];
        assert!(f.store.commit_activation(c).await.unwrap());
        assert_eq!(
            status_of(&f, "bob@example.com").await,
            [(EmailStatus::Queued, None)]
        );

        // When he unsubscribes before the delivery worker claims it
        f.store
            .unsubscribe(&f.tenant, "bob", "bob@example.com", Timestamp(T0 + 1))
            .await
            .unwrap();

        // Then the claim suppresses it instead of handing it out
        let later = Clock::real_now().0 + 1_000;
        assert!(
            f.store
                .claim_outbox(&lease("d1", later), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            status_of(&f, "bob@example.com").await,
            [(
                EmailStatus::Suppressed,
                Some(SuppressedReason::Unsubscribed)
            )]
        );
    }
);

store_test!(
    given_a_journeys_emails_then_the_suppress_window_query_counts_only_queued_and_sent_ones_since,
    |f| async move {
        // Given one queued email of journey "welcome" to Ada at T0 + 1
        run_with_queued_email(&f).await;
        let emailed = |journey: &'static str, to: &'static str, since: i64| {
            let f = &f;
            async move {
                f.store
                    .journey_emailed_since(&f.tenant, journey, to, Timestamp(since))
                    .await
                    .unwrap()
            }
        };

        // Then it counts for that journey and address, from a time at or before it
        assert!(emailed("welcome", "ada@example.com", T0 + 1).await);
        assert!(
            emailed("welcome", "ADA@example.com ", T0).await,
            "addresses are normalised"
        );
        assert!(!emailed("welcome", "ada@example.com", T0 + 2).await);
        assert!(!emailed("other-journey", "ada@example.com", T0).await);
        assert!(!emailed("welcome", "bob@example.com", T0).await);

        // And a suppressed email does not count
        let run = claimed_run(&f, "bob", T0).await;
        let mut c = commit(&f, &run, "w1", RunTransition::Completed);
        let mut mail = email(&f, &run, 0, "bob@example.com");
        mail.status = EmailStatus::Suppressed;
        mail.suppressed_reason = Some(SuppressedReason::JourneySuppressWindow);
        c.emails = vec![mail];
        assert!(f.store.commit_activation(c).await.unwrap());
        assert!(!emailed("welcome", "bob@example.com", T0).await);
    }
);

store_test!(
    given_concurrent_first_uses_then_a_tenant_has_one_signing_secret,
    |f| async move {
        let now = Timestamp(T0);
        assert_eq!(
            f.store
                .email_signing_secret(&f.tenant, None, now)
                .await
                .unwrap(),
            None
        );
        let (a, b) = tokio::join!(
            f.store
                .email_signing_secret(&f.tenant, Some("secret-a"), now),
            f.store
                .email_signing_secret(&f.tenant, Some("secret-b"), now),
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert_eq!(a, b, "both callers get the stored one");
        assert_eq!(
            f.store
                .email_signing_secret(&f.tenant, Some("secret-c"), now)
                .await
                .unwrap(),
            Some(a.clone())
        );
        assert_eq!(
            f.store
                .email_signing_secret(&f.tenant, None, now)
                .await
                .unwrap(),
            Some(a)
        );
        let other = second_tenant(&f).await;
        assert_eq!(
            f.store
                .email_signing_secret(&other, None, now)
                .await
                .unwrap(),
            None
        );
    }
);
