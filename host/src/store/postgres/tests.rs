//! PostgreSQL-only tests of what the backend-agnostic suite (`crate::store::tests`) does not
//! reach: interleavings only a multi-process database has (batches locking the same people in
//! opposite orders or through different values, a resolution waiting on a contact merged away
//! under it, a deletion racing an activation, two hosts draining the outbox) and the journal's
//! exact round trip through PostgreSQL's JSON types. Each runs on a fresh database when
//! `WAYMARK_TEST_DATABASE_URL` is set, and passes with a notice otherwise. Candidates for the
//! shared suite; kept here until it has them.

use super::PgStore;
use crate::clock::{Clock, Timestamp};
use crate::contacts::Identity;
use crate::ids::{EmailId, EventId, RunId, TenantId};
use crate::ingest::IngestItem;
use crate::journeys::router::RunCandidate;
use crate::journeys::{EntryLimit, RunStatus};
use crate::store::IngestWithoutModules;
use crate::store::concerns::*;
use crate::store::{
    ActivationCommit, EmailFilter, EmailStatus, IngestOutcome, Lease, NewEmail, NewEvent,
    RunTransition,
};
use serde_json::{Map, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
/// Claims here are not about in-flight limits.
const IN_FLIGHT: u32 = 64;

/// A fresh database; dropped by [`ScratchDb::drop_db`].
struct ScratchDb {
    server: String,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create() -> Option<ScratchDb> {
        let server = std::env::var("WAYMARK_TEST_DATABASE_URL").ok()?;
        let name = format!("waymark_pg_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&server).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = &server[..server.rfind('/').unwrap()];
        let url = format!("{base}/{name}");
        Some(ScratchDb { server, name, url })
    }

    async fn store(&self) -> Arc<PgStore> {
        Arc::new(PgStore::connect(&self.url).await.unwrap())
    }

    async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    async fn drop_db(self) {
        let mut admin = PgConnection::connect(&self.server).await.unwrap();
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(AssertSqlSafe(drop))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// Runs `test` on a fresh database with a tenant, then drops the database.
async fn with_db<F, Fut>(test: F)
where
    F: FnOnce(ScratchDb, Arc<PgStore>, TenantId) -> Fut,
    Fut: Future<Output = ScratchDb>,
{
    let Some(db) = ScratchDb::create().await else {
        println!("skipped: set WAYMARK_TEST_DATABASE_URL");
        return;
    };
    let store = db.store().await;
    let (tenant, _) = store.create_tenant("acme", Timestamp(T0)).await.unwrap();
    let db = test(db, store, tenant.id).await;
    db.drop_db().await;
}

fn event(tenant: &TenantId, user: &str, key: Option<String>, at: i64) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        tenant_id: tenant.clone(),
        name: "user.signed_up".into(),
        identity: Identity::new(Some(user), Some(&format!("{user}@example.com")), None),
        event_properties: Map::new(),
        contact_properties: Map::new(),
        idempotency_key: key,
        occurred_at: Timestamp(at),
        received_at: Timestamp(at),
    }
}

fn welcome() -> RunCandidate {
    RunCandidate::new("welcome", "hash-1", EntryLimit::Unlimited)
}

fn lease(owner: &str) -> Lease {
    Lease::starting_now(owner, Duration::from_secs(30))
}

async fn count(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

/// Waits until some backend of the database is blocked on a lock.
async fn until_someone_waits(conn: &mut PgConnection) {
    for _ in 0..500 {
        let waiting = count(
            conn,
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nobody waited on a lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_naming_the_same_people_in_opposite_orders_never_deadlock() {
    with_db(|db, store, tenant| async move {
        let other = db.store().await;
        for round in 0..10 {
            let items = |reverse: bool| {
                let mut people: Vec<usize> = (0..8).collect();
                if reverse {
                    people.reverse();
                }
                people
                    .into_iter()
                    .map(|p| IngestItem {
                        routing: None,
                        event: event(
                            &tenant,
                            &format!("p{p}"),
                            Some(format!("r{round}-p{p}")),
                            T0 + round,
                        ),
                        candidates: vec![welcome()],
                    })
                    .collect::<Vec<_>>()
            };
            let (a, b) = (items(false), items(true));
            let (s1, s2) = (store.clone(), other.clone());
            let a = tokio::spawn(async move { s1.ingest_plain(a).await });
            let b = tokio::spawn(async move { s2.ingest_plain(b).await });
            let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
            // Each key is stored once; the other batch answers the same event as a duplicate.
            let mut stored: HashMap<EventId, usize> = HashMap::new();
            let mut duplicates = Vec::new();
            for outcome in a.into_iter().chain(b) {
                match outcome {
                    IngestOutcome::Stored { event_id, .. } => {
                        *stored.entry(event_id).or_default() += 1
                    }
                    IngestOutcome::Duplicate { event_id } => duplicates.push(event_id),
                }
            }
            assert_eq!(stored.len(), 8);
            assert!(stored.values().all(|n| *n == 1));
            assert_eq!(duplicates.len(), 8);
            assert!(duplicates.iter().all(|d| stored.contains_key(d)));
        }
        let mut raw = db.raw().await;
        assert_eq!(count(&mut raw, "SELECT COUNT(*) FROM events").await, 80);
        assert_eq!(count(&mut raw, "SELECT COUNT(*) FROM contacts").await, 8);
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lookup_that_waited_on_a_contact_merged_away_meanwhile_finds_the_survivor() {
    with_db(|db, store, tenant| async move {
        // Given A (an email and an anonymous id) and B (a user id)
        let a = store
            .upsert_plain(
                &tenant,
                &Identity::new(None, Some("a@example.com"), Some("anon-1")),
                &Map::new(),
                Timestamp(T0),
            )
            .await
            .unwrap()
            .contact;
        let b = store
            .upsert_plain(
                &tenant,
                &Identity::new(Some("u1"), Some("b@example.com"), None),
                &Map::new(),
                Timestamp(T0),
            )
            .await
            .unwrap()
            .contact;

        // When another host is merging A into B (it holds A's row) while a resolution of
        // A's anonymous id arrives
        let mut other_host = db.raw().await;
        let mut merge = other_host.begin().await.unwrap();
        sqlx::query("SELECT id FROM contacts WHERE id = $1 FOR UPDATE")
            .bind(a.id.as_str())
            .execute(&mut *merge)
            .await
            .unwrap();
        let resolving = {
            let (store, tenant) = (store.clone(), tenant.clone());
            tokio::spawn(async move {
                let patch = json!({"seen": true}).as_object().cloned().unwrap();
                store
                    .upsert_plain(
                        &tenant,
                        &Identity::new(None, None, Some("anon-1")),
                        &patch,
                        Timestamp(T0 + 1),
                    )
                    .await
            })
        };
        until_someone_waits(&mut db.raw().await).await;
        sqlx::query("UPDATE contacts SET deleted_at = $2 WHERE id = $1")
            .bind(a.id.as_str())
            .bind(T0 + 1)
            .execute(&mut *merge)
            .await
            .unwrap();
        sqlx::query("UPDATE contacts SET anonymous_id = 'anon-1' WHERE id = $1")
            .bind(b.id.as_str())
            .execute(&mut *merge)
            .await
            .unwrap();
        merge.commit().await.unwrap();

        // Then the resolution looked again and landed on the survivor
        let resolved = resolving.await.unwrap().unwrap();
        assert_eq!(resolved.contact.id, b.id);
        assert_eq!(resolved.contact.key, "u1");
        assert!(!resolved.created && resolved.linked);
        assert_eq!(resolved.contact.properties.get("seen"), Some(&json!(true)));
        let mut raw = db.raw().await;
        assert_eq!(
            count(
                &mut raw,
                "SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL"
            )
            .await,
            1
        );
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_racing_an_activation_leaves_no_live_run_and_no_queued_email() {
    with_db(|db, store, tenant| async move {
        let other = db.store().await;
        for i in 0..20 {
            let user = format!("p{i}");
            let outcome = store
                .ingest_plain(vec![IngestItem {
                    routing: None,
                    event: event(&tenant, &user, None, T0 + i),
                    candidates: vec![welcome()],
                }])
                .await
                .unwrap();
            let IngestOutcome::Stored { started, .. } = &outcome[0] else {
                panic!("{outcome:?}")
            };
            let run: RunId = started[0].run_id.clone();
            let claimed = store
                .claim_due_runs(Timestamp(T0 + 100), &lease("w1"), 100, IN_FLIGHT)
                .await
                .unwrap();
            assert!(claimed.iter().any(|c| c.run.id == run));

            let commit = ActivationCommit {
                run_id: run.clone(),
                tenant_id: tenant.clone(),
                lease_owner: "w1".into(),
                journal: vec![],
                emails: vec![NewEmail {
                    id: EmailId::generate(),
                    tenant_id: tenant.clone(),
                    run_id: run.clone(),
                    step_seq: 0,
                    contact_key: user.clone(),
                    to: format!("{user}@example.com"),
                    template: "welcome".into(),
                    subject: "Hi".into(),
                    body: "Hello".into(),
                    journey_id: "welcome".into(),
                    html: None,
                    unsubscribe_url: None,
                    status: crate::store::EmailStatus::Queued,
                    suppressed_reason: None,
                    created_at: Timestamp(T0 + 100),
                }],
                effects: vec![],
                transition: RunTransition::Waiting {
                    wake_at: Timestamp(T0 + 10_000),
                    wait: None,
                },
                now: Timestamp(T0 + 100),
                guest_cpu: std::time::Duration::ZERO,
            };
            let committing = {
                let other = other.clone();
                tokio::spawn(async move { other.commit_activation(commit).await })
            };
            let deleting = {
                let (store, tenant, user) = (store.clone(), tenant.clone(), user.clone());
                tokio::spawn(async move {
                    store
                        .delete_contact(&tenant, &user, Timestamp(T0 + 101))
                        .await
                })
            };
            let committed = committing.await.unwrap().unwrap();
            let deleted = deleting
                .await
                .unwrap()
                .unwrap()
                .expect("a contact to delete");
            assert_eq!(deleted.exited_runs, 1);
            // Whichever came first, the run ended exited, without a timer, and its email (if
            // the commit won) was cancelled and erased.
            let detail = store.run_detail(&tenant, &run).await.unwrap().unwrap();
            assert_eq!(detail.run.status, RunStatus::Exited);
            assert_eq!(detail.input.person.email, None);
            // The deleted person's history moved to its own key.
            let history_key = crate::store::codec::deleted_key(&user, deleted.contact_id.as_str());
            let emails = store
                .list_emails(
                    &tenant,
                    &EmailFilter {
                        contact_key: Some(history_key),
                        ..EmailFilter::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(emails.len(), usize::from(committed));
            assert_eq!(deleted.cancelled_emails as usize, emails.len());
            assert!(
                emails
                    .iter()
                    .all(|e| e.status == EmailStatus::Cancelled && e.to.is_empty())
            );
        }
        let mut raw = db.raw().await;
        assert_eq!(count(&mut raw, "SELECT COUNT(*) FROM timers").await, 0);
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_claiming_the_outbox_never_take_one_email_twice() {
    with_db(|db, store, tenant| async move {
        let outcome = store
            .ingest_plain(vec![IngestItem {
                routing: None,
                event: event(&tenant, "ada", None, T0),
                candidates: vec![welcome()],
            }])
            .await
            .unwrap();
        let IngestOutcome::Stored { started, .. } = &outcome[0] else {
            panic!("{outcome:?}")
        };
        let run = started[0].run_id.clone();
        store
            .claim_due_runs(Timestamp(T0), &lease("w1"), 1, IN_FLIGHT)
            .await
            .unwrap();
        let emails = (0..40)
            .map(|seq| NewEmail {
                id: EmailId::generate(),
                tenant_id: tenant.clone(),
                run_id: run.clone(),
                step_seq: seq,
                contact_key: "ada".into(),
                to: "ada@example.com".into(),
                template: "t".into(),
                subject: "s".into(),
                body: "b".into(),
                journey_id: "welcome".into(),
                html: None,
                unsubscribe_url: None,
                status: crate::store::EmailStatus::Queued,
                suppressed_reason: None,
                created_at: Timestamp(T0),
            })
            .collect();
        let committed = store
            .commit_activation(ActivationCommit {
                run_id: run,
                tenant_id: tenant.clone(),
                lease_owner: "w1".into(),
                journal: vec![],
                emails,
                effects: vec![],
                transition: RunTransition::Completed,
                now: Timestamp(T0 + 1),
                guest_cpu: std::time::Duration::ZERO,
            })
            .await
            .unwrap();
        assert!(committed);
        // Queued at the real clock: claimable from now on.
        tokio::time::sleep(Duration::from_millis(2)).await;

        let other = db.store().await;
        let drain = |store: Arc<PgStore>, owner: &'static str| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_outbox(&lease(owner), 3).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|e| e.id));
                }
            })
        };
        let (a, b) = (drain(store.clone(), "a"), drain(other, "b"));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(a.len() + b.len(), 40);
        assert_eq!(all.len(), 40);
        assert!(Clock::real_now().0 > 0);
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_reaching_the_same_contacts_through_different_values_both_commit() {
    with_db(|db, store, tenant| async move {
        let other = db.store().await;
        // Given people p0..p5 known by user id and email
        for p in 0..6 {
            store
                .ingest_plain(vec![IngestItem {
                    routing: None,
                    event: event(&tenant, &format!("p{p}"), None, T0),
                    candidates: vec![],
                }])
                .await
                .unwrap();
        }
        // When one host's batch names them by user id in one order and another's by email in
        // the opposite order (different advisory locks, the same contact rows)
        for round in 0..10 {
            let by_user: Vec<IngestItem> = (0..6)
                .map(|p| IngestItem {
                    routing: None,
                    event: NewEvent {
                        identity: Identity::new(Some(&format!("p{p}")), None, None),
                        ..event(&tenant, "x", None, T0 + round)
                    },
                    candidates: vec![welcome()],
                })
                .collect();
            let by_email: Vec<IngestItem> = (0..6)
                .rev()
                .map(|p| IngestItem {
                    routing: None,
                    event: NewEvent {
                        identity: Identity::new(None, Some(&format!("p{p}@example.com")), None),
                        ..event(&tenant, "x", None, T0 + round)
                    },
                    candidates: vec![welcome()],
                })
                .collect();
            let (s1, s2) = (store.clone(), other.clone());
            let a = tokio::spawn(async move { s1.ingest_plain(by_user).await });
            let b = tokio::spawn(async move { s2.ingest_plain(by_email).await });
            // Then both commit (a deadlock between them is retried inside the store)
            a.await.unwrap().unwrap();
            b.await.unwrap().unwrap();
        }
        let mut raw = db.raw().await;
        assert_eq!(count(&mut raw, "SELECT COUNT(*) FROM events").await, 126);
        assert_eq!(count(&mut raw, "SELECT COUNT(*) FROM contacts").await, 6);
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_comes_back_exactly_as_recorded() {
    use crate::journeys::journal::{JournalEntry, StepKind};
    with_db(|db, store, tenant| async move {
        let outcome = store
            .ingest_plain(vec![IngestItem {
                routing: None,
                event: event(&tenant, "ada", None, T0),
                candidates: vec![welcome()],
            }])
            .await
            .unwrap();
        let IngestOutcome::Stored { started, .. } = &outcome[0] else {
            panic!("{outcome:?}")
        };
        let run = started[0].run_id.clone();
        store
            .claim_due_runs(Timestamp(T0), &lease("w1"), 1, IN_FLIGHT)
            .await
            .unwrap();
        // Values JSONB would rewrite (a float written as 1e16, trailing zeros) or refuse (NUL)
        let request: serde_json::Value = serde_json::from_str(
            r#"{"big": 1e16, "ratio": 2.50, "text": "a\u0000b", "max": 18446744073709551615}"#,
        )
        .unwrap();
        let response = json!([1.0e16, -1.0e17, "\u{0}"]);
        let entry = JournalEntry {
            seq: 0,
            kind: StepKind::Random,
            request: request.clone(),
            response: response.clone(),
            recorded_at: Timestamp(T0),
        };
        let committed = store
            .commit_activation(ActivationCommit {
                run_id: run.clone(),
                tenant_id: tenant.clone(),
                lease_owner: "w1".into(),
                journal: vec![entry.clone()],
                emails: vec![],
                effects: vec![],
                transition: RunTransition::Waiting {
                    wake_at: Timestamp(T0 + 1),
                    wait: None,
                },
                now: Timestamp(T0),
                guest_cpu: std::time::Duration::ZERO,
            })
            .await
            .unwrap();
        assert!(committed);
        let loaded = store.run_detail(&tenant, &run).await.unwrap().unwrap();
        assert_eq!(loaded.journal, vec![entry]);
        assert_eq!(loaded.journal[0].response.to_string(), response.to_string());
        assert_eq!(loaded.journal[0].request.to_string(), request.to_string());
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_planned_when_its_table_was_one_page_still_walks_the_index() {
    with_db(|db, store, tenant| async move {
        // Given an events table analyzed while it held a few rows (autovacuum does so after
        // 50 in a fresh database), when a seq scan of its one page looked cheapest
        let items = (0..30)
            .map(|i| IngestItem {
                routing: None,
                event: event(&tenant, &format!("u{}", i % 7), None, T0 + i),
                candidates: vec![],
            })
            .collect();
        store.ingest_plain(items).await.unwrap();
        let mut raw = db.raw().await;
        sqlx::query("ANALYZE events")
            .execute(&mut raw)
            .await
            .unwrap();
        // When one of the store's connections plans a person's event counts (generic plans:
        // planned once, kept as the table grows)
        let mut conn = store.pool.acquire().await.unwrap();
        let prepare = format!(
            "PREPARE person_counts(text, text, text[], int8[]) AS {}",
            super::membership::COUNT_PERSON_EVENTS
        );
        sqlx::raw_sql(AssertSqlSafe(prepare))
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN EXECUTE person_counts('t', 'u1', '{user.signed_up}', '{0}')",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        // Then the plan looks the person up on the index, and never scans the table
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("events_by_contact"), "{plan}");
        drop(conn);
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_refreshed_once_a_table_outgrows_them_and_by_one_host_at_a_time() {
    with_db(|db, store, tenant| async move {
        // Given a fresh database whose tables were never analyzed, and 200 people signing up
        let mut raw = db.raw().await;
        let signups = |people: std::ops::Range<i64>| -> Vec<IngestItem> {
            people
                .map(|i| IngestItem {
                    routing: None,
                    event: event(&tenant, &format!("s{i}"), None, T0 + i),
                    candidates: vec![welcome()],
                })
                .collect()
        };
        store.ingest_plain(signups(0..200)).await.unwrap();
        // (The cumulative statistics reach pg_stat_user_tables when the backends flush them.)
        let mut refreshed = Vec::new();
        for _ in 0..100 {
            sqlx::query("SELECT pg_stat_force_next_flush()")
                .execute(&mut raw)
                .await
                .unwrap();
            // When the host asks for its statistics to be refreshed
            refreshed = store.refresh_statistics().await.unwrap();
            if refreshed.iter().any(|t| t == "runs") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Then the tables that grew are analyzed, and the planner now knows their size
        for table in ["contacts", "events", "runs", "timers"] {
            assert!(
                refreshed.iter().any(|t| t == table),
                "{table} in {refreshed:?}"
            );
        }
        let runs: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'runs'")
            .fetch_one(&mut raw)
            .await
            .unwrap();
        assert_eq!(runs, 200.0);
        // And asking again finds nothing left to do
        assert_eq!(
            store.refresh_statistics().await.unwrap(),
            Vec::<String>::new()
        );

        // When another host holds the upkeep lock, this one skips its round
        let mut other = db.raw().await;
        sqlx::query("BEGIN").execute(&mut other).await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(super::tenancy::STATISTICS_LOCK)
            .execute(&mut other)
            .await
            .unwrap();
        store.ingest_plain(signups(200..400)).await.unwrap();
        sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(&mut raw)
            .await
            .unwrap();
        assert_eq!(
            store.refresh_statistics().await.unwrap(),
            Vec::<String>::new()
        );
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        db
    })
    .await;
}
