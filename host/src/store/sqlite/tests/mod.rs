//! Tests of the SQLite store, one file per concern, against a real database file in a temp
//! dir. This module holds the shared fixture: a fresh store with one tenant, and builders for
//! events, candidates, leases, commits and emails.

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
    ActivationCommit, IngestOutcome, Lease, NewEmail, NewEvent, RunCandidate, RunTransition, Store,
};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

struct Fixture {
    store: SqliteStore,
    tenant: TenantId,
    dir: TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data").join("waymark.db"))
        .await
        .unwrap();
    let tenant = store.create_tenant("acme", Timestamp(T0)).await.unwrap().id;
    Fixture { store, tenant, dir }
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

async fn start_run(f: &Fixture, contact: &str, at: i64) -> RunId {
    match f
        .store
        .ingest(
            event(&f.tenant, contact, at),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await
        .unwrap()
    {
        IngestOutcome::Stored { started, .. } => started[0].run_id.clone(),
        other => panic!("expected a stored event, got {other:?}"),
    }
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

async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&store.pool)
        .await
        .unwrap()
}
