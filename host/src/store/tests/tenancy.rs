//! Tenancy: tenant isolation and creation, API keys (lookup, revocation, listing) and the
//! persisted clock offset.

use super::*;
use crate::ids::ApiKeyId;
use crate::store::{EmailFilter, NewApiKey, RunFilter};
use crate::tenancy::Scope;

fn new_key(tenant: &TenantId, name: &str, hash: &str, at: i64) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::generate(),
        tenant_id: tenant.clone(),
        name: name.into(),
        key_hash: hash.into(),
        scopes: vec![Scope::Ingest, Scope::Admin],
        created_at: Timestamp(at),
    }
}

store_test!(
    given_runs_and_emails_in_one_tenant_when_another_tenant_looks_then_it_sees_nothing,
    |f| async move {
        // Given a run with an email in tenant A
        let run = run_with_queued_email(&f).await;

        // When tenant B looks with every filter matching A's rows
        let b = second_tenant(&f).await;
        let runs = f
            .store
            .list_runs(
                &b,
                &RunFilter {
                    journey_id: Some("welcome".into()),
                    contact_key: Some("ada".into()),
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        let detail = f.store.run_detail(&b, &run).await.unwrap();
        let emails = f
            .store
            .list_emails(
                &b,
                &EmailFilter {
                    to: Some("ada@example.com".into()),
                    ..EmailFilter::default()
                },
            )
            .await
            .unwrap();

        // Then B sees nothing, while A sees its rows
        assert!(runs.is_empty());
        assert!(detail.is_none());
        assert!(emails.is_empty());
        assert_eq!(
            f.store
                .list_runs(&f.tenant, &RunFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(f.store.run_detail(&f.tenant, &run).await.unwrap().is_some());
        assert_eq!(
            f.store
                .list_emails(
                    &f.tenant,
                    &EmailFilter {
                        to: Some(" ADA@example.com".into()),
                        ..EmailFilter::default()
                    }
                )
                .await
                .unwrap()
                .len(),
            1
        );
    }
);

store_test!(
    given_a_tenant_when_created_again_by_name_then_the_existing_one_is_answered,
    |f| async move {
        // Given the fixture's tenant "acme"
        let acme = f.store.tenant_by_name("acme").await.unwrap().unwrap();
        assert_eq!(acme.id, f.tenant);
        assert!(f.store.tenant_by_name("nobody").await.unwrap().is_none());
        // When "acme" is created again, later
        let (again, created) = f
            .store
            .create_tenant("acme", Timestamp(T0 + HOUR))
            .await
            .unwrap();
        // Then it is the same tenant, unchanged, and not created
        assert!(!created);
        assert_eq!(again, acme);
        // While a new name creates a tenant
        let (globex, created) = f
            .store
            .create_tenant("globex", Timestamp(T0 + HOUR))
            .await
            .unwrap();
        assert!(created);
        assert_ne!(globex.id, acme.id);
        assert_eq!(globex.created_at, Timestamp(T0 + HOUR));
    }
);

store_test!(
    given_api_keys_when_revoked_then_they_stop_authenticating_and_are_listed_as_revoked,
    |f| async move {
        // Given two keys of the tenant and one of another tenant
        let other = second_tenant(&f).await;
        let old = f
            .store
            .create_api_key(new_key(&f.tenant, "old", "hash-old", T0))
            .await
            .unwrap();
        let new = f
            .store
            .create_api_key(new_key(&f.tenant, "new", "hash-new", T0 + 1))
            .await
            .unwrap();
        let theirs = f
            .store
            .create_api_key(new_key(&other, "theirs", "hash-theirs", T0))
            .await
            .unwrap();
        assert_eq!(
            f.store
                .api_key_by_hash("hash-old")
                .await
                .unwrap()
                .map(|found| found.key),
            Some(old.clone())
        );
        assert!(f.store.api_key_by_hash("nope").await.unwrap().is_none());

        // When another tenant tries to revoke one of them, then nothing is revoked
        let at = Timestamp(T0 + HOUR);
        assert!(
            !f.store
                .revoke_api_key(Some(&other), &old.id, at)
                .await
                .unwrap()
        );
        assert!(f.store.api_key_by_hash("hash-old").await.unwrap().is_some());
        // When the tenant revokes it, then it no longer authenticates; a second time is a no-op
        assert!(
            f.store
                .revoke_api_key(Some(&f.tenant), &old.id, at)
                .await
                .unwrap()
        );
        assert!(f.store.api_key_by_hash("hash-old").await.unwrap().is_none());
        let later = Timestamp(T0 + 2 * HOUR);
        assert!(
            !f.store
                .revoke_api_key(Some(&f.tenant), &old.id, later)
                .await
                .unwrap()
        );
        // When a host admin (no tenant) revokes another tenant's key, then it is revoked
        assert!(f.store.revoke_api_key(None, &theirs.id, at).await.unwrap());
        assert!(
            !f.store
                .revoke_api_key(None, &ApiKeyId::generate(), at)
                .await
                .unwrap()
        );

        // Then the tenant's list has both keys, newest first, the old one revoked at `at`
        let keys = f.store.list_api_keys(&f.tenant).await.unwrap();
        assert_eq!(
            keys,
            vec![
                new.clone(),
                crate::store::ApiKeyRecord {
                    revoked_at: Some(at),
                    ..old
                }
            ]
        );
        assert_eq!(f.store.list_api_keys(&other).await.unwrap().len(), 1);
        assert_eq!(
            f.store
                .api_key_by_hash("hash-new")
                .await
                .unwrap()
                .map(|found| found.key),
            Some(new)
        );
    }
);

store_test!(
    given_an_advanced_clock_when_the_database_is_opened_again_then_the_offset_is_kept,
    |f| async move {
        // Given a store whose dev clock was advanced twice
        assert_eq!(f.store.clock_offset().await.unwrap(), 0);
        assert_eq!(
            f.store.advance_clock_offset(86_400_000).await.unwrap(),
            86_400_000
        );
        assert_eq!(
            f.store.advance_clock_offset(86_400_000).await.unwrap(),
            2 * 86_400_000
        );

        // When the database is opened again (migrations already applied)
        let reopened = f.db.open_store().await.unwrap();

        // Then the offset is still there
        assert_eq!(reopened.clock_offset().await.unwrap(), 2 * 86_400_000);
    }
);

store_test!(
    given_two_handles_on_one_database_when_both_advance_the_clock_at_once_then_every_advance_counts,
    |f| async move {
        // Given a second handle on the same database (as a second host process would have)
        let other = f.db.open_store().await.unwrap();

        // When both advance the clock by an hour, ten times each, concurrently
        const HOUR: i64 = 3_600_000;
        let advance_ten = |store: Arc<dyn Store>| async move {
            for _ in 0..10 {
                store.advance_clock_offset(HOUR).await.unwrap();
            }
        };
        tokio::join!(advance_ten(f.store.clone()), advance_ten(other.clone()));

        // Then no advance was lost, and both read the same offset
        assert_eq!(f.store.clock_offset().await.unwrap(), 20 * HOUR);
        assert_eq!(other.clock_offset().await.unwrap(), 20 * HOUR);
    }
);

store_test!(
    given_an_offset_at_the_maximum_when_advanced_again_then_it_stays_at_the_maximum,
    |f| async move {
        use crate::clock::MAX_OFFSET_MS;
        // Given a clock advanced to its maximum
        assert_eq!(
            f.store.advance_clock_offset(MAX_OFFSET_MS).await.unwrap(),
            MAX_OFFSET_MS
        );

        // When advanced by as much again, and by the most an i64 holds
        let again = f.store.advance_clock_offset(MAX_OFFSET_MS).await.unwrap();
        let most = f.store.advance_clock_offset(i64::MAX).await.unwrap();

        // Then it stays at the maximum, and reads back as such
        assert_eq!((again, most), (MAX_OFFSET_MS, MAX_OFFSET_MS));
        assert_eq!(f.store.clock_offset().await.unwrap(), MAX_OFFSET_MS);
    }
);
