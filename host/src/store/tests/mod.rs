//! The store's test suite, backend-agnostic: every test is written once against
//! `Arc<dyn Store>` and [`store_test!`] runs it on each backend (`<test>::sqlite`,
//! `<test>::postgres`; see [`harness`] for how databases are made). One file per concern; this
//! module holds the shared fixture: a fresh store with one tenant, builders for events,
//! candidates, leases, commits and emails, and the common "given" steps (a started or claimed
//! run, a second tenant, a run with a queued email) so each test shows only what it is about.

/// `store_test!(name, |f| async move { … })`: a test receiving a fresh [`Fixture`], run on
/// SQLite (`name::sqlite`) and on PostgreSQL (`name::postgres`, only when
/// `WAYMARK_TEST_DATABASE_URL` is set).
macro_rules! store_test {
    ($name:ident, |$f:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body(
                $f: $crate::store::tests::Fixture,
            ) -> impl ::std::future::Future<Output = ()> + Send + 'static {
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::store::tests::run(
                    $crate::store::tests::Backend::Sqlite,
                    stringify!($name),
                    body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::store::tests::run(
                    $crate::store::tests::Backend::Postgres,
                    stringify!($name),
                    body,
                )
                .await;
            }
        }
    };
}

mod backfill;
mod buckets;
mod concurrency;
mod contacts;
mod fair_claims;
mod harness;
mod identity;
mod ingest;
mod journeys;
mod limits;
mod membership;
mod modules;
mod operators;
mod outbox;
mod preferences;
mod reconcile;
mod runs;
mod senders;
mod tenancy;
mod usage;

pub(crate) use harness::{Backend, TestDb};

use crate::clock::{Clock, Timestamp};
use crate::contacts::Identity;
use crate::ids::{EmailId, EventId, RunId, TenantId};
use crate::ingest::IngestItem;
use crate::journeys::EntryLimit;
use crate::journeys::router::RunCandidate;
use crate::store::IngestWithoutModules;
use crate::store::{
    ActivationCommit, ActivationInput, ContactLookup, ContactRecord, EmailStatus, IngestOutcome,
    Lease, NewEmail, NewEvent, RunTransition, Store,
};
use serde_json::{Map, Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;
/// The host default for a tenant's activations in flight, in claims that are not about it.
const IN_FLIGHT: u32 = 64;

/// What every test starts from: a migrated store on a fresh database, with tenant "acme".
pub(crate) struct Fixture {
    pub store: Arc<dyn Store>,
    pub tenant: TenantId,
    pub db: TestDb,
}

/// Run one test on `backend`: a fresh database and fixture, the test in its own task (so a
/// failing test still drops its database), then the test's outcome.
pub(crate) async fn run<Fut>(backend: Backend, test: &str, body: fn(Fixture) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TestDb::create(backend, test).await else {
        return;
    };
    let handle = db.clone();
    let setup = async move {
        let store = handle.open_store().await.expect("open the store");
        let (tenant, _) = store
            .create_tenant("acme", Timestamp(T0))
            .await
            .expect("create the tenant");
        Fixture {
            store,
            tenant: tenant.id,
            db: handle,
        }
    };
    let outcome = match tokio::spawn(setup).await {
        Ok(fixture) => tokio::spawn(body(fixture)).await,
        Err(e) => Err(e),
    };
    db.cleanup().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("{test}: {e}"),
        }
    }
}

/// A second tenant, "globex", beside the fixture's "acme".
async fn second_tenant(f: &Fixture) -> TenantId {
    f.store
        .create_tenant("globex", Timestamp(T0))
        .await
        .unwrap()
        .0
        .id
}

fn obj(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

/// An event named "user.signed_up" with these identity values, received at `at`.
fn event_as(tenant: &TenantId, identity: Identity, at: i64) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        tenant_id: tenant.clone(),
        name: "user.signed_up".into(),
        identity,
        event_properties: obj(json!({"source": "web"})),
        contact_properties: Map::new(),
        idempotency_key: None,
        occurred_at: Timestamp(at - 5),
        received_at: Timestamp(at),
    }
}

/// An event of the user with id `user`, whose email is `<user>@example.com`.
fn event(tenant: &TenantId, user: &str, at: i64) -> NewEvent {
    let email = format!("{user}@example.com");
    event_as(tenant, Identity::new(Some(user), Some(&email), None), at)
}

fn journey(id: &str, limit: EntryLimit) -> RunCandidate {
    RunCandidate::new(id, "hash-1", limit)
}

fn welcome(limit: EntryLimit) -> RunCandidate {
    journey("welcome", limit)
}

/// Ingest one event alone; its outcome.
async fn ingest(f: &Fixture, event: NewEvent, candidates: &[RunCandidate]) -> IngestOutcome {
    let mut outcomes = f
        .store
        .ingest_plain(vec![IngestItem {
            routing: None,
            event,
            candidates: candidates.to_vec(),
        }])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.pop().unwrap()
}

/// Ingest one event that must be stored; the contact key it was stored under and the runs
/// it started.
async fn ingest_stored(
    f: &Fixture,
    event: NewEvent,
    candidates: &[RunCandidate],
) -> (String, Vec<RunId>) {
    match ingest(f, event, candidates).await {
        IngestOutcome::Stored {
            contact_key,
            started,
            ..
        } => (contact_key, started.into_iter().map(|s| s.run_id).collect()),
        other => panic!("expected a stored event, got {other:?}"),
    }
}

/// The live contact a key (or an old key) designates; there must be one.
async fn contact(f: &Fixture, key: &str) -> ContactRecord {
    let mut found = f
        .store
        .find_contacts(&f.tenant, &ContactLookup::Key(key.into()))
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "one live contact for key {key:?}: {found:?}"
    );
    found.pop().unwrap()
}

fn lease(owner: &str, now_real: i64) -> Lease {
    Lease {
        owner: owner.into(),
        now_real: Timestamp(now_real),
        until_real: Timestamp(now_real + 30_000),
    }
}

/// A lease on the real clock, as the scheduler takes it.
fn real_lease(owner: &str) -> Lease {
    lease(owner, Clock::real_now().0)
}

/// Starts a "welcome" run (no entry limit) for user `contact` with an event received at `at`.
async fn start_run(f: &Fixture, contact: &str, at: i64) -> RunId {
    start_run_limited(f, contact, at, EntryLimit::Unlimited).await
}

/// Starts a "welcome" run with the given entry limit; the limit must admit it.
async fn start_run_limited(f: &Fixture, contact: &str, at: i64, limit: EntryLimit) -> RunId {
    let (_, started) = ingest_stored(f, event(&f.tenant, contact, at), &[welcome(limit)]).await;
    started.into_iter().next().expect("a started run")
}

/// Claims, as `owner` on a real-clock lease, up to 10 runs due at host time `at`.
async fn claim_due(f: &Fixture, owner: &str, at: i64) -> Vec<ActivationInput> {
    f.store
        .claim_due_runs(Timestamp(at), &real_lease(owner), 10, IN_FLIGHT)
        .await
        .unwrap()
}

/// Starts a run for `contact` at `at` and claims it as worker "w1", as the scheduler would.
async fn claimed_run(f: &Fixture, contact: &str, at: i64) -> RunId {
    let run = start_run(f, contact, at).await;
    claim_due(f, "w1", at).await;
    run
}

/// A run of "ada" that completed after queueing one email to ada@example.com (step 0).
async fn run_with_queued_email(f: &Fixture) -> RunId {
    let run = claimed_run(f, "ada", T0).await;
    let mut c = commit(f, &run, "w1", RunTransition::Completed);
    c.emails = vec![email(f, &run, 0, "ada@example.com")];
    f.store.commit_activation(c).await.unwrap();
    run
}

/// Claims `run` (due at `at`) as "w1" and commits an activation that queues one email under
/// `contact_key` and leaves the run waiting an hour: a live run with a timer and an email.
async fn queue_email_and_wait(f: &Fixture, run: &RunId, contact_key: &str, at: i64) {
    let claimed = claim_due(f, "w1", at).await;
    assert!(claimed.iter().any(|c| c.run.id == *run), "{run} is claimed");
    let mut c = waiting_commit(f, run, "w1", at + HOUR);
    let mut mail = email(f, run, 0, "someone@example.com");
    mail.contact_key = contact_key.into();
    c.emails = vec![mail];
    assert!(f.store.commit_activation(c).await.unwrap());
}

fn commit(f: &Fixture, run: &RunId, owner: &str, transition: RunTransition) -> ActivationCommit {
    ActivationCommit {
        run_id: run.clone(),
        tenant_id: f.tenant.clone(),
        lease_owner: owner.into(),
        journal: vec![],
        emails: vec![],
        effects: vec![],
        transition,
        now: Timestamp(T0 + 1),
        guest_cpu: Duration::from_micros(1500),
    }
}

/// An activation by `owner` that leaves the run waiting until host time `wake_at`.
fn waiting_commit(f: &Fixture, run: &RunId, owner: &str, wake_at: i64) -> ActivationCommit {
    commit(
        f,
        run,
        owner,
        RunTransition::Waiting {
            wake_at: Timestamp(wake_at),
            wait: None,
        },
    )
}

/// Commits an activation by `owner` that completes the run; whether the store took it.
async fn complete(f: &Fixture, run: &RunId, owner: &str) -> bool {
    f.store
        .commit_activation(commit(f, run, owner, RunTransition::Completed))
        .await
        .unwrap()
}

fn email(f: &Fixture, run: &RunId, seq: u32, to: &str) -> NewEmail {
    NewEmail {
        id: EmailId::generate(),
        tenant_id: f.tenant.clone(),
        run_id: run.clone(),
        step_seq: seq,
        contact_key: "ada".into(),
        journey_id: "welcome".into(),
        to: to.into(),
        template: "welcome".into(),
        subject: "Welcome".into(),
        body: "Hello Ada".into(),
        html: None,
        unsubscribe_url: None,
        status: EmailStatus::Queued,
        suppressed_reason: None,
        created_at: Timestamp(T0 + 1),
    }
}
