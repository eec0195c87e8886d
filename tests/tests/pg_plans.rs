//! PostgreSQL plans that cannot go wrong: with thousands of sleeping and waiting runs present,
//! every statement the host runs on its hot paths — ingest (single and batch), identity,
//! buckets, waits, timers, claims, the outbox, activations and their commits, and the idle
//! scheduler — walks an index and touches a number of rows that does not grow with the
//! sleeping runs, on a database whose tables were never analyzed and on one analyzed while
//! they held a few rows (the two ways plans went wrong before: statistics that say a table is
//! empty or tiny while it holds thousands of rows).
//!
//! How: the real server runs the example modules on a fresh database; once the runs are
//! seeded it is restarted with `auto_explain` on for that database (every statement's plan,
//! with its actual row counts, sent to the session as a LOG notice), which sqlx hands to the
//! server's log. The test reads each plan back from the log and checks its scans.

mod support;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Backend, Server, ServerOptions, started_run};

/// People seeded before the measured phase; each has a sleeping welcome-series run and a
/// trial-conversion run waiting for `order.paid`.
const PEOPLE: usize = 2_000;
/// The most rows one plan node may touch (returned or filtered out, over all its loops). Far
/// below the seeded rows of every growing table (runs and timers 4,000, events 4,000+,
/// journal entries, emails and contacts 2,000+), far above what one request's work needs.
const ROW_BOUND: f64 = 500.0;
/// Tables that grow with the tenant's data (or, `tenant_usage`, with tenants and days): a plan
/// must never scan them whole.
const GROWING: [&str; 13] = [
    "contacts",
    "contact_aliases",
    "events",
    "runs",
    "journal",
    "timers",
    "emails",
    "bucket_memberships",
    "journey_skips",
    "email_preferences",
    "run_effects",
    "bucket_absence_cursors",
    "tenant_usage",
];

/// What a plan did wrong, for the report.
#[derive(Debug)]
struct Violation {
    query: String,
    problem: String,
}

/// Every plan `auto_explain` logged (notices that sqlx forwards to the log), as
/// (query text, plan).
fn logged_plans(log: &str) -> Vec<(String, Value)> {
    let mut plans = Vec::new();
    let mut rest = log;
    while let Some(at) = rest.find("plan:") {
        let after = &rest[at + "plan:".len()..];
        let start = after.find('{').unwrap_or(after.len());
        let mut stream = serde_json::Deserializer::from_str(&after[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(plan)) => {
                let query = plan["Query Text"].as_str().unwrap_or_default().to_owned();
                plans.push((query, plan["Plan"].clone()));
                rest = &after[start + stream.byte_offset()..];
            }
            _ => rest = after,
        }
    }
    plans
}

/// Checks one plan node and its children.
fn check_node(node: &Value, query: &str, found: &mut Vec<Violation>) {
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let kind = node["Node Type"].as_str().unwrap_or_default();
    if GROWING.contains(&relation) {
        if kind == "Seq Scan" {
            found.push(Violation {
                query: query.to_owned(),
                problem: format!("sequential scan of {relation}"),
            });
        }
        let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
        let touched = (node["Actual Rows"].as_f64().unwrap_or(0.0)
            + node["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
            + node["Rows Removed by Index Recheck"]
                .as_f64()
                .unwrap_or(0.0))
            * loops;
        if touched > ROW_BOUND {
            found.push(Violation {
                query: query.to_owned(),
                problem: format!(
                    "{kind} on {relation} touched {touched} rows (bound {ROW_BOUND}): {}",
                    node["Index Name"].as_str().unwrap_or("no index")
                ),
            });
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        check_node(child, query, found);
    }
}

async fn raw(server: &Server) -> PgConnection {
    let url = &server.database.as_ref().expect("a PostgreSQL server").url;
    PgConnection::connect(url).await.unwrap()
}

async fn execute(conn: &mut PgConnection, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .unwrap();
}

/// Waits until no run is due for an activation and the outbox is empty.
async fn settled(server: &Server) {
    let mut conn = raw(server).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'active') \
                  + (SELECT COUNT(*) FROM emails WHERE status = 'queued')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if busy == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{busy} runs or emails still pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn person(i: usize, name: &str) -> Value {
    json!({"name": name, "userId": format!("u{i}"), "email": format!("u{i}@example.com")})
}

/// Seeds the runs, then replays the hot paths under `auto_explain`, and returns what the
/// plans did wrong. `analyze_tiny`: the tables are analyzed while they hold a few rows.
async fn hot_path_violations(analyze_tiny: bool) -> Option<Vec<Violation>> {
    support::postgres_url()?;
    let mut server = Server::start(ServerOptions {
        backend: Backend::Postgres,
        modules: vec!["welcome-series", "trial-conversion", "win-back"],
        log_filter: Some("info,sqlx::postgres::notice=trace"),
        ..Default::default()
    })
    .await;
    let mut conn = raw(&server).await;
    // Statistics only as the test sets them: autovacuum never analyzes these tables.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in &tables {
        execute(
            &mut conn,
            format!("ALTER TABLE {table} SET (autovacuum_enabled = off)"),
        )
        .await;
    }

    // Given a few people, and (when asked) statistics taken at that size
    for i in 0..3 {
        server.send_event(person(i, "user.signed_up")).await;
    }
    settled(&server).await;
    if analyze_tiny {
        execute(&mut conn, "ANALYZE".into()).await;
    }

    // And thousands of sleeping and waiting runs
    for chunk in (3..PEOPLE).collect::<Vec<_>>().chunks(500) {
        let events: Vec<Value> = chunk
            .iter()
            .flat_map(|&i| [person(i, "user.signed_up"), person(i, "trial.started")])
            .collect();
        let (status, body) = server
            .post("/v1/events/batch", json!({ "events": events }))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    settled(&server).await;

    // When the host restarts with every statement's plan logged
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    for setting in [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_analyze = on",
        "auto_explain.log_timing = off",
        "auto_explain.log_nested_statements = on",
        "auto_explain.log_format = 'json'",
        "client_min_messages = 'log'",
    ] {
        execute(
            &mut conn,
            format!("ALTER DATABASE {database} SET {setting}"),
        )
        .await;
    }
    let measured_from = server.log().len();
    server.restart().await;

    // And it runs its hot paths: new sign-ups (runs, timers, emails), payments ending waits
    // (woken, activated, committed), feature use moving buckets, a contact update, a batch of
    // each, the clock moving, and the idle scheduler
    let mut new_runs = Vec::new();
    for i in PEOPLE..PEOPLE + 3 {
        new_runs.push(started_run(
            &server.send_event(person(i, "user.signed_up")).await,
        ));
    }
    let mut paid = Vec::new();
    for i in 10..13 {
        // (Read on the test's own connection: API reads are not the hot paths checked here.)
        let run: String = sqlx::query_scalar(
            "SELECT id::text FROM runs WHERE contact_key = $1 AND journey_id = 'trial-conversion'",
        )
        .bind(format!("u{i}"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        paid.push(run);
        server
            .send_event(json!({"name": "order.paid", "userId": format!("u{i}"),
                               "eventProperties": {"amount": "$49"}}))
            .await;
    }
    for _ in 0..5 {
        server
            .send_event(json!({"name": "feature.used", "userId": "u20"}))
            .await;
    }
    server
        .send_event(json!({"name": "app.active", "userId": "u21"}))
        .await;
    let (status, body) = server
        .request(
            reqwest::Method::PUT,
            "/v1/contacts",
            Some(json!({"userId": "u22", "properties": {"plan": "pro"}})),
            Some(&server.key),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    let batch: Vec<Value> = (30..80)
        .flat_map(|i| {
            [
                person(i, "app.active"),
                json!({"name": "feature.used", "userId": format!("u{i}")}),
                json!({"name": "order.paid", "userId": format!("u{i}")}),
                person(PEOPLE + i, "user.signed_up"),
            ]
        })
        .collect();
    let (status, body) = server
        .post("/v1/events/batch", json!({ "events": batch }))
        .await;
    assert_eq!(status, 202, "{body}");
    for run in paid {
        server.run_reaches(&run, "completed").await;
    }
    for run in new_runs {
        server.run_reaches(&run, "waiting").await;
    }
    server.advance_clock("1h").await;
    settled(&server).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Then the plans are read back, and each is checked
    let log = server.log();
    let plans = logged_plans(&log[measured_from..]);
    assert!(
        plans.len() > 100,
        "auto_explain logged {} plans; is it available?",
        plans.len()
    );
    // (The batch's statements that read or write for all its items at once were among them.)
    for batch_statement in [
        "AS k(tenant_id, kind, value, n)",
        "AS q(tenant_id, contact_key, name, earliest, latest, n)",
        "AS q(tenant_id, contact_key, journey_id, n)",
        "AS q(tenant_id, contact_key, email, n)",
        "AS u(id, properties, first_seen_at, last_seen_at)",
    ] {
        assert!(
            plans
                .iter()
                .any(|(query, _)| query.contains(batch_statement)),
            "no plan logged for the batch statement with {batch_statement:?}"
        );
    }
    let mut found = Vec::new();
    for (query, plan) in &plans {
        check_node(plan, query, &mut found);
    }
    Some(found)
}

fn report(found: &[Violation]) -> String {
    let mut by_query: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for v in found {
        by_query.entry(&v.query).or_default().push(&v.problem);
    }
    by_query
        .iter()
        .map(|(query, problems)| {
            let mut problems = problems.clone();
            problems.dedup();
            format!("{}\n  {}", query.trim(), problems.join("\n  "))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[tokio::test]
async fn on_a_never_analyzed_database_every_hot_statement_walks_an_index_and_stays_bounded() {
    let Some(found) = hot_path_violations(false).await else {
        eprintln!("skipped: set WAYMARK_TEST_DATABASE_URL to run this test on PostgreSQL");
        return;
    };
    assert!(found.is_empty(), "{}", report(&found));
}

#[tokio::test]
async fn on_a_database_analyzed_at_a_few_rows_every_hot_statement_walks_an_index_and_stays_bounded()
{
    let Some(found) = hot_path_violations(true).await else {
        eprintln!("skipped: set WAYMARK_TEST_DATABASE_URL to run this test on PostgreSQL");
        return;
    };
    assert!(found.is_empty(), "{}", report(&found));
}
