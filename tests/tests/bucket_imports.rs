//! The bucket membership imports at the runtime level, with a real compiled guest
//! (`bucket-reader`) and a stand-in for the store: a guest gets the count, membership and
//! member pages; a replay answers them from the journal even after the bucket changed; an
//! unknown bucket is the guest's error; a store failure is the host's.

mod support;

use async_trait::async_trait;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::runtime::RuntimeFixture;
use waymark::clock::Timestamp;
use waymark::journeys::journal::{JournalEntry, StepKind};
use waymark::modules::LoadedModule;
use waymark::runtime::members::{BucketReader, MemberRead, MemberReadError};
use waymark::runtime::{ActivationOutcome, ActivationReport, ActivationRequest, RuntimeError};
use waymark::store::{BucketMember, MemberPage, MemberPageRequest};

/// Bucket `vip` with members in a list (paged by position); counts every read it answers.
#[derive(Default)]
struct Vip {
    members: Mutex<Vec<String>>,
    reads: AtomicU32,
    down: AtomicBool,
}

impl Vip {
    fn with(keys: &[&str]) -> Arc<Vip> {
        let vip = Arc::new(Vip::default());
        vip.set(keys);
        vip
    }

    fn set(&self, keys: &[&str]) {
        *self.members.lock().unwrap() = keys.iter().map(|k| k.to_string()).collect();
    }

    fn read(&self, bucket: &str) -> MemberRead<Vec<String>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(MemberReadError::Unavailable("database is down".into()));
        }
        if bucket != "vip" {
            return Err(MemberReadError::unknown_bucket(bucket));
        }
        Ok(self.members.lock().unwrap().clone())
    }
}

#[async_trait]
impl BucketReader for Vip {
    async fn count(&self, bucket: &str) -> MemberRead<u64> {
        Ok(self.read(bucket)?.len() as u64)
    }

    async fn has(&self, bucket: &str, key: &str) -> MemberRead<bool> {
        Ok(self.read(bucket)?.iter().any(|k| k == key))
    }

    async fn members(&self, bucket: &str, page: &MemberPageRequest) -> MemberRead<MemberPage> {
        let all = self.read(bucket)?;
        let start: usize = page.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
        let end = (start + page.page_size() as usize).min(all.len());
        Ok(MemberPage {
            members: all[start..end]
                .iter()
                .map(|key| BucketMember {
                    id: key.clone(),
                    contact_key: key.clone(),
                    email: None,
                    entered_at: Timestamp(0),
                    entry_count: 1,
                })
                .collect(),
            next_cursor: (end < all.len()).then(|| end.to_string()),
            total: all.len() as u64,
        })
    }
}

struct Fixture(RuntimeFixture);

impl std::ops::Deref for Fixture {
    type Target = RuntimeFixture;

    fn deref(&self) -> &RuntimeFixture {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        Fixture(RuntimeFixture::new("test.census", Default::default()))
    }

    async fn activate(
        &self,
        module: &LoadedModule,
        journal: Vec<JournalEntry>,
        vip: &Arc<Vip>,
    ) -> Result<ActivationReport, RuntimeError> {
        self.registry
            .runtime()
            .activate(
                &module.compiled,
                ActivationRequest {
                    buckets: vip.clone(),
                    ..self.request(module, "census", journal)
                },
            )
            .await
    }
}

fn bucket_steps(journal: &[JournalEntry]) -> Vec<(StepKind, serde_json::Value)> {
    journal
        .iter()
        .filter(|e| e.kind.as_str().starts_with("bucket-"))
        .map(|e| (e.kind, e.response.clone()))
        .collect()
}

#[tokio::test]
async fn given_a_guest_reading_a_bucket_when_replayed_after_it_changed_then_recorded_answers_are_reused()
 {
    // Given bucket vip with p1, p2 and p3, and the census guest
    let fx = Fixture::new();
    let module = fx.load("bucket-reader").await;
    let vip = Vip::with(&["p1", "p2", "p3"]);

    // When the run first activates
    let first = fx.activate(&module, vec![], &vip).await.unwrap();
    // Then it read the count, p1's membership and a first page of two, and went to sleep
    assert!(
        matches!(first.outcome, ActivationOutcome::Suspended { .. }),
        "{:?}",
        first.outcome
    );
    assert_eq!(
        bucket_steps(&first.journal),
        vec![
            (StepKind::BucketCount, json!({ "ok": 3 })),
            (StepKind::BucketHas, json!({ "ok": true })),
            (
                StepKind::BucketMembers,
                json!({ "ok": {
                    "members": [
                        { "key": "p1", "email": null, "enteredAt": 0, "entryCount": 1 },
                        { "key": "p2", "email": null, "enteredAt": 0, "entryCount": 1 },
                    ],
                    "nextCursor": "2",
                    "total": 3,
                } })
            ),
        ]
    );
    assert_eq!(vip.reads.load(Ordering::SeqCst), 3);

    // When the bucket changes (p1 gone, ten members) and the run wakes a day later
    vip.set(&["p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11"]);
    fx.clock.advance(Duration::from_secs(86_400));
    let woken = fx
        .activate(&module, first.journal.clone(), &vip)
        .await
        .unwrap();

    // Then the steps before the sleep answer from the journal (the reader is not asked again)
    // and only the new count, and the unknown bucket, are read
    assert_eq!(woken.outcome, ActivationOutcome::Completed);
    assert_eq!(vip.reads.load(Ordering::SeqCst), 5);
    assert_eq!(
        bucket_steps(&woken.journal),
        vec![
            (StepKind::BucketCount, json!({ "ok": 10 })),
            (
                StepKind::BucketCount,
                json!({ "error": "unknown bucket \"no-such-bucket\"" })
            ),
        ]
    );
    // And the guest saw the recorded answers before the sleep and the fresh one after
    // (minijinja renders booleans as True / False)
    assert_eq!(woken.emails.len(), 1);
    assert_eq!(
        woken.emails[0].body,
        "before=3 after=10 member=True first=p1,p2 more=True \
         unknown=unknown bucket \"no-such-bucket\""
    );
}

#[tokio::test]
async fn given_the_store_failing_when_a_guest_reads_a_bucket_then_the_activation_is_a_host_error() {
    // Given a reader whose database is down
    let fx = Fixture::new();
    let module = fx.load("bucket-reader").await;
    let vip = Vip::with(&["p1"]);
    vip.down.store(true, Ordering::SeqCst);

    // When the run activates
    let result = fx.activate(&module, vec![], &vip).await;

    // Then the activation is a host-side error (retried later), not a failed run
    match result {
        Err(RuntimeError::HostUnavailable(message)) => {
            assert!(message.contains("database is down"), "{message}")
        }
        other => panic!("expected a host error, got {other:?}"),
    }
}
