//! The outbox: claiming emails, retries, giving up, sending, and expired leases.

use super::*;
use crate::store::{DeliveryResult, EmailFilter, EmailStatus};

store_test!(
    given_queued_emails_when_delivery_fails_or_succeeds_then_retries_give_up_or_send,
    |f| async move {
        // Given two queued emails
        let run = claimed_run(&f, "ada", T0).await;
        let mut sent = waiting_commit(&f, &run, "w1", T0 + HOUR);
        sent.emails = vec![
            email(&f, &run, 0, "ada@example.com"),
            email(&f, &run, 1, "ada@example.com"),
        ];
        let (first_id, second_id) = (sent.emails[0].id.clone(), sent.emails[1].id.clone());
        assert!(f.store.commit_activation(sent).await.unwrap());

        // When a delivery worker claims them, another worker finds nothing to claim
        let real = Clock::real_now().0;
        let claimed = f.store.claim_outbox(&lease("d1", real), 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(
            claimed
                .iter()
                .all(|e| e.attempts == 0 && e.to == "ada@example.com")
        );
        assert!(
            f.store
                .claim_outbox(&lease("d2", real), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // When the first fails with a retry in a minute and the second fails for good
        f.store
            .record_delivery(
                &first_id,
                DeliveryResult::Failed {
                    error: "421 try later".into(),
                    retry_at: Some(Timestamp(real + 60_000)),
                },
            )
            .await
            .unwrap();
        f.store
            .record_delivery(
                &second_id,
                DeliveryResult::Failed {
                    error: "550 no such user".into(),
                    retry_at: None,
                },
            )
            .await
            .unwrap();

        // Then nothing is claimable before the retry time, and the first is after it
        assert!(
            f.store
                .claim_outbox(&lease("d2", real + 1), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let retry = f
            .store
            .claim_outbox(&lease("d2", real + 60_000), 10)
            .await
            .unwrap();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].id, first_id);
        assert_eq!(retry[0].attempts, 1);

        // When the retry succeeds
        f.store
            .record_delivery(
                &first_id,
                DeliveryResult::Sent {
                    at: Timestamp(T0 + 7),
                },
            )
            .await
            .unwrap();
        // And a stale worker later reports a failure for it
        f.store
            .record_delivery(
                &first_id,
                DeliveryResult::Failed {
                    error: "timeout".into(),
                    retry_at: Some(Timestamp(real + 120_000)),
                },
            )
            .await
            .unwrap();

        // Then the first is sent after two attempts and the second failed after one
        let emails = f
            .store
            .list_emails(&f.tenant, &EmailFilter::default())
            .await
            .unwrap();
        let first = emails.iter().find(|e| e.id == first_id).unwrap();
        let second = emails.iter().find(|e| e.id == second_id).unwrap();
        assert_eq!(first.status, EmailStatus::Sent);
        assert_eq!(first.attempts, 2);
        assert_eq!(first.sent_at, Some(Timestamp(T0 + 7)));
        assert_eq!(second.status, EmailStatus::Failed);
        assert_eq!(second.attempts, 1);
        assert_eq!(second.last_error.as_deref(), Some("550 no such user"));
        assert!(
            f.store
                .claim_outbox(&lease("d3", real + 600_000), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

store_test!(
    given_a_claimed_email_when_its_lease_expires_then_another_worker_can_claim_it,
    |f| async move {
        // Given a queued email
        run_with_queued_email(&f).await;
        // When a delivery worker claims it, and its lease expires unreported
        let real = Clock::real_now().0;
        assert_eq!(
            f.store
                .claim_outbox(&lease("d1", real), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        // Then another worker can claim it
        assert_eq!(
            f.store
                .claim_outbox(&lease("d2", real + 31_000), 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
);

store_test!(
    given_a_worker_whose_lease_lapsed_and_was_taken_when_it_renews_then_it_is_refused,
    |f| async move {
        // Given an email claimed by one worker, whose lease lapsed and another worker claimed
        run_with_queued_email(&f).await;
        let real = Clock::real_now().0;
        let first = f.store.claim_outbox(&lease("d1", real), 10).await.unwrap();
        assert_eq!(first.len(), 1);
        let second = f
            .store
            .claim_outbox(&lease("d2", real + 31_000), 10)
            .await
            .unwrap();
        assert_eq!(second.len(), 1);

        // When the first worker, about to send it, renews its claim
        let renewed = f
            .store
            .renew_outbox_lease(&first[0].id, &lease("d1", real + 32_000))
            .await
            .unwrap();

        // Then it is refused (it must not send), while the worker holding it may renew
        assert!(!renewed);
        assert!(
            f.store
                .renew_outbox_lease(&second[0].id, &lease("d2", real + 32_000))
                .await
                .unwrap()
        );

        // And once the email is sent, no one can renew a claim on it
        let email = second[0].id.clone();
        f.store
            .record_delivery(&email, DeliveryResult::Sent { at: Timestamp(T0) })
            .await
            .unwrap();
        assert!(
            !f.store
                .renew_outbox_lease(&email, &lease("d2", real + 33_000))
                .await
                .unwrap()
        );
    }
);
