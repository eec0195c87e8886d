//! Tests of the SQLite store, one file per concern, against a real database file in a temp
//! dir. This module holds the shared fixture: a fresh store with one tenant, builders for
//! events, candidates, leases, commits and emails, and the common "given" steps (a started or
//! claimed run, a second tenant, a run with a queued email) so each test shows only what it is
//! about.

mod concurrency;
mod ingest;
mod outbox;
mod runs;
mod tenancy;

use super::SqliteStore;
use crate::clock::{Clock, Timestamp};
use crate::ids::{EmailId, EventId, RunId, TenantId};
use crate::journeys::EntryLimit;
use crate::store::{
    ActivationCommit, ClaimedRun, IngestOutcome, Lease, NewEmail, NewEvent, RunCandidate,
    RunTransition, Store,
};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

struct Fixture {
    store: SqliteStore,
    tenant: TenantId,
    dir: TempDir,
}

/// The database file in a fixture's temp dir.
fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("data").join("waymark.db")
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).await.unwrap();
    let tenant = store.create_tenant("acme", Timestamp(T0)).await.unwrap().id;
    Fixture { store, tenant, dir }
}

/// A second tenant, "globex", beside the fixture's "acme".
async fn second_tenant(f: &Fixture) -> TenantId {
    f.store
        .create_tenant("globex", Timestamp(T0))
        .await
        .unwrap()
        .id
}

fn obj(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn event(tenant: &TenantId, contact: &str, at: i64) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        tenant_id: tenant.clone(),
        name: "user.signed_up".into(),
        contact_key: contact.into(),
        email: Some(format!("{contact}@example.com")),
        event_properties: obj(json!({"source": "web"})),
        contact_properties: Map::new(),
        idempotency_key: None,
        occurred_at: Timestamp(at - 5),
        received_at: Timestamp(at),
    }
}

fn welcome(limit: EntryLimit) -> RunCandidate {
    RunCandidate {
        journey_id: "welcome".into(),
        module_hash: "hash-1".into(),
        entry_limit: limit,
    }
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

/// Starts a "welcome" run (no entry limit) for `contact` with an event received at `at`.
async fn start_run(f: &Fixture, contact: &str, at: i64) -> RunId {
    start_run_limited(f, contact, at, EntryLimit::Unlimited).await
}

/// Starts a "welcome" run with the given entry limit; the limit must admit it.
async fn start_run_limited(f: &Fixture, contact: &str, at: i64, limit: EntryLimit) -> RunId {
    match f
        .store
        .ingest(event(&f.tenant, contact, at), &[welcome(limit)])
        .await
        .unwrap()
    {
        IngestOutcome::Stored { started, .. } => started[0].run_id.clone(),
        other => panic!("expected a stored event, got {other:?}"),
    }
}

/// Claims, as `owner` on a real-clock lease, up to 10 runs due at host time `at`.
async fn claim_due(f: &Fixture, owner: &str, at: i64) -> Vec<ClaimedRun> {
    f.store
        .claim_due_runs(Timestamp(at), &real_lease(owner), 10)
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

fn commit(f: &Fixture, run: &RunId, owner: &str, transition: RunTransition) -> ActivationCommit {
    ActivationCommit {
        run_id: run.clone(),
        tenant_id: f.tenant.clone(),
        lease_owner: owner.into(),
        journal: vec![],
        emails: vec![],
        transition,
        now: Timestamp(T0 + 1),
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
        to: to.into(),
        template: "welcome".into(),
        subject: "Welcome".into(),
        body: "Hello Ada".into(),
        created_at: Timestamp(T0 + 1),
    }
}

/// Runs a raw statement that binds one id, to put rows into states the store's API never
/// produces.
async fn raw_update(f: &Fixture, sql: &'static str, id: &str) {
    sqlx::query(sql)
        .bind(id)
        .execute(&f.store.pool)
        .await
        .unwrap();
}

async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&store.pool)
        .await
        .unwrap()
}
