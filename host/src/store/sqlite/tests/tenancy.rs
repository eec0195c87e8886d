//! Tenancy: tenant isolation, API keys, module versions and the persisted clock offset.

use super::*;
use crate::ids::ApiKeyId;
use crate::store::{EmailFilter, ModuleVersionRecord, NewApiKey, RunFilter, Scope};

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_runs_or_emails() {
    // Given a run with an email in tenant A
    let f = fixture().await;
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

#[tokio::test]
async fn the_clock_offset_persists_across_reopen() {
    // Given a store whose dev clock was advanced
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.clock_offset().await.unwrap(), 0);
    store.set_clock_offset(86_400_000).await.unwrap();
    store.set_clock_offset(2 * 86_400_000).await.unwrap();
    store.pool.close().await;

    // When the database is opened again (migrations already applied)
    let reopened = SqliteStore::open(&path).await.unwrap();

    // Then the offset is still there
    assert_eq!(reopened.clock_offset().await.unwrap(), 2 * 86_400_000);
}

#[tokio::test]
async fn tenants_keys_and_module_versions_round_trip() {
    let f = fixture().await;
    let tenant = f.store.tenant_by_name("acme").await.unwrap().unwrap();
    assert_eq!(tenant.id, f.tenant);
    assert!(f.store.tenant_by_name("nobody").await.unwrap().is_none());

    let key = f
        .store
        .create_api_key(NewApiKey {
            id: ApiKeyId::generate(),
            tenant_id: f.tenant.clone(),
            name: "admin".into(),
            key_hash: "abc123".into(),
            scopes: vec![Scope::Ingest, Scope::Admin],
            created_at: Timestamp(T0),
        })
        .await
        .unwrap();
    assert_eq!(
        f.store.api_key_by_hash("abc123").await.unwrap(),
        Some(key.clone())
    );
    assert!(f.store.api_key_by_hash("nope").await.unwrap().is_none());
    raw_update(
        &f,
        "UPDATE api_keys SET revoked_at = 1 WHERE id = ?",
        key.id.as_str(),
    )
    .await;
    assert!(f.store.api_key_by_hash("abc123").await.unwrap().is_none());

    let version = ModuleVersionRecord {
        tenant_id: f.tenant.clone(),
        hash: "h1".into(),
        name: "welcome".into(),
        manifest: json!({"journeys": ["welcome"]}),
        loaded_at: Timestamp(T0),
    };
    f.store.record_module_version(&version).await.unwrap();
    f.store.record_module_version(&version).await.unwrap();
    assert_eq!(
        count(&f.store, "SELECT COUNT(*) FROM module_versions").await,
        1
    );
}
