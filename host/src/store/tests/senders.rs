//! A tenant's sender settings on both backends: one row per tenant, replaced whole, kept
//! apart from other tenants', deleted back to the host's transport.

use super::*;
use crate::store::EmailSenderRecord;

fn sender(address: &str, at: i64) -> EmailSenderRecord {
    EmailSenderRecord {
        from_name: Some("Acme".into()),
        from_address: address.into(),
        reply_to: Some("support@acme.test".into()),
        transport: r#"{"kind":"smtp","host":"smtp.acme.test","port":587}"#.into(),
        secret: Some("v1.0011aabb.c2VhbGVk".into()),
        created_at: Timestamp(at),
        updated_at: Timestamp(at),
    }
}

store_test!(
    given_a_tenants_sender_when_replaced_and_deleted_then_it_reads_back_whole_and_alone,
    |f| async move {
        // Given no sender, then one stored
        assert_eq!(f.store.email_sender(&f.tenant).await.unwrap(), None);
        let first = sender("hello@acme.test", T0);
        assert!(f.store.put_email_sender(&f.tenant, &first).await.unwrap());
        assert_eq!(
            f.store.email_sender(&f.tenant).await.unwrap().as_ref(),
            Some(&first)
        );

        // When it is replaced by one without a name, reply-to or secret
        let replacement = EmailSenderRecord {
            from_name: None,
            reply_to: None,
            secret: None,
            transport: r#"{"kind":"http","provider":"postmark"}"#.into(),
            ..sender("news@acme.test", T0 + HOUR)
        };
        let created = f
            .store
            .put_email_sender(&f.tenant, &replacement)
            .await
            .unwrap();

        // Then it was an update that kept the first creation time and cleared the rest
        assert!(!created);
        let stored = f.store.email_sender(&f.tenant).await.unwrap().unwrap();
        assert_eq!(
            stored,
            EmailSenderRecord {
                created_at: Timestamp(T0),
                ..replacement
            }
        );

        // And another tenant sees none of it and keeps its own
        let other = second_tenant(&f).await;
        assert_eq!(f.store.email_sender(&other).await.unwrap(), None);
        assert!(!f.store.delete_email_sender(&other).await.unwrap());
        f.store
            .put_email_sender(&other, &sender("hi@globex.test", T0))
            .await
            .unwrap();

        // When the first tenant's sender is deleted, only it is gone
        assert!(f.store.delete_email_sender(&f.tenant).await.unwrap());
        assert_eq!(f.store.email_sender(&f.tenant).await.unwrap(), None);
        assert!(!f.store.delete_email_sender(&f.tenant).await.unwrap());
        assert_eq!(
            f.store
                .email_sender(&other)
                .await
                .unwrap()
                .unwrap()
                .from_address,
            "hi@globex.test"
        );
    }
);
