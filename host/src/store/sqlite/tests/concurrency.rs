//! The writer lock: concurrent writers and two stores on one file.

use super::*;
use std::sync::Arc;

#[tokio::test]
async fn two_stores_on_one_file_share_the_work_without_double_claims() {
    // Given two hosts (separate pools, separate writer locks) on the same database file
    let f = fixture().await;
    let other = SqliteStore::open(&db_path(&f.dir)).await.unwrap();
    for i in 0..30 {
        start_run(&f, &format!("p{i}"), T0 + i).await;
    }

    // When both claim in small batches at the same time
    let claim_all = |store: SqliteStore, owner: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_due_runs(Timestamp(T0 + 100), &real_lease(owner), 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.run_id));
            }
        })
    };
    let a = claim_all(f.store.clone(), "host-a");
    let b = claim_all(other, "host-b");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());

    // Then every run is claimed exactly once
    let mut all: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(a.len() + b.len(), 30);
    assert_eq!(all.len(), 30);
}

#[tokio::test]
async fn concurrent_writers_wait_instead_of_failing() {
    let f = fixture().await;
    let store = Arc::new(f.store.clone());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let tenant = f.tenant.clone();
        tasks.push(tokio::spawn(async move {
            store
                .ingest(
                    event(&tenant, &format!("p{}", i % 5), T0 + i),
                    &[welcome(EntryLimit::Unlimited)],
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM events").await, 40);
    assert_eq!(count(&f.store, "SELECT COUNT(*) FROM runs").await, 5);
}
