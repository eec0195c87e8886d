//! Sleeping runs, seeded with SQL (issue 24): one real person signs up and starts a trial
//! through the API, and once their runs are asleep their rows are cloned, `generate_series` a
//! table at a time, for as many people as a bench wants asleep. Also what a seeded person
//! (`sleeper-{i}`) does when they come back.

use super::postgres::{count, execute, table_counts};
use super::workload::{PAGES, Rng, SOURCES, sign_up};
use crate::support::{self, Backend, Server, ServerOptions};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgConnection};
use std::time::{Duration, Instant};

/// The real person every seeded one is cloned from.
pub const TEMPLATE_KEY: &str = "sleeper-tmpl";
/// Every how many seeded people also have a trial-conversion run waiting for `order.paid`.
pub const TRIAL_EVERY: i64 = 10;
/// People per seeding statement.
const SEED_CHUNK: i64 = 100_000;
/// Tables the seeding clones.
const CLONED: [&str; 6] = ["contacts", "events", "runs", "journal", "timers", "emails"];
/// Tables a tenant's first email writes once (not per person).
const PER_TENANT: [&str; 1] = ["email_signing_keys"];

const FEATURES: &[&str] = &["export", "share", "filters", "api-keys", "reports"];

/// The modules a seeded database's host serves: the examples every seeded person's runs come
/// from, and the burst journeys the activation phases trigger.
pub const MODULES: [&str; 4] = [
    "welcome-series",
    "trial-conversion",
    "win-back",
    "bench-journeys",
];

/// A host on a fresh PostgreSQL database with [`MODULES`], not rate limited.
pub async fn start_host() -> Server {
    Server::start(ServerOptions {
        backend: Backend::Postgres,
        dev: false,
        modules: MODULES.to_vec(),
        extra_args: super::unthrottled(),
        ..ServerOptions::default()
    })
    .await
}

/// What a seeded person (`sleeper-{i}`) does when they come back.
pub fn activity(rng: &mut Rng) -> (&'static str, Value) {
    let name = if rng.below(2) == 0 {
        "feature.used"
    } else {
        "app.active"
    };
    let properties = json!({
        "feature": rng.pick(FEATURES),
        "path": rng.pick(PAGES),
        "durationMs": rng.below(30_000),
        "source": rng.pick(SOURCES),
    });
    (name, properties)
}

/// A row as `row_to_json` writes it: columns in table order, `json` columns verbatim.
async fn rows_json(conn: &mut PgConnection, table: &str, filter: &str) -> Vec<String> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT row_to_json(t)::text FROM {table} t WHERE {filter} ORDER BY 1"
    )))
    .fetch_all(conn)
    .await
    .unwrap()
}

/// One group of the real person's rows (their welcome run and what it made, or their trial),
/// to be cloned for people `i` with `i % every == 0`.
struct Group {
    every: i64,
    /// Per table, its rows as JSON text.
    rows: Vec<(&'static str, Vec<String>)>,
    /// Numbers to spread per person: (text as it is in the rows, SQL that replaces it).
    spread: Vec<(String, String)>,
}

/// The real person, read back once their runs are asleep.
pub struct Template {
    pub tenant: String,
    /// Every id in the rows (contact, events, runs, emails): each seeded person gets its own.
    ids: Vec<String>,
    contact: Vec<String>,
    welcome: Group,
    trial: Group,
    welcome_run: String,
    trial_run: String,
}

/// The id person `i` gets for the template's `k`th id: the same UUIDv7 time and random prefix,
/// then `k` and `i` as its last 12 hex digits (ids made in one millisecond can share the
/// prefix: the UUIDv7 counter runs into the last group).
fn derived_id(template: &Template, k: usize, i: i64) -> String {
    format!("{}{k:x}{i:011x}", &template.ids[k][..24])
}

/// [`derived_id`] of the template id `id`.
fn derived(template: &Template, id: &str, i: i64) -> String {
    let k = template
        .ids
        .iter()
        .position(|t| t == id)
        .expect("a template id");
    derived_id(template, k, i)
}

/// SQL for one template row (`t.tmpl`) made person `s.i`'s.
fn person_expr(template: &Template, spread: &[(String, String)]) -> String {
    let mut expr = format!("replace(t.tmpl, '{TEMPLATE_KEY}', 'sleeper-' || s.i)");
    for (k, id) in template.ids.iter().enumerate() {
        expr = format!(
            "replace({expr}, '{id}', '{}{k:x}' || lpad(to_hex(s.i), 11, '0'))",
            &id[..24]
        );
    }
    for (from, to) in spread {
        expr = format!("replace({expr}, '{from}', {to})");
    }
    expr
}

/// Clone `rows` of `table` for people `from..to` with `i % every == 0`.
async fn clone_rows(
    conn: &mut PgConnection,
    template: &Template,
    table: &str,
    rows: &[String],
    spread: &[(String, String)],
    (from, to, every): (i64, i64, i64),
) {
    // A JSON `null` in a NOT NULL json column comes out of json_populate_record as SQL NULL.
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let select = columns
        .iter()
        .map(
            |(name, kind, nullable)| match (kind.as_str(), nullable.as_str()) {
                ("json" | "jsonb", "NO") => format!("COALESCE(r.{name}, 'null'::{kind})"),
                _ => format!("r.{name}"),
            },
        )
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {table} SELECT {select} FROM generate_series($2::bigint, $3::bigint) AS s(i) \
         CROSS JOIN unnest($1::text[]) AS t(tmpl) \
         CROSS JOIN LATERAL json_populate_record(NULL::{table}, ({})::json) AS r \
         WHERE s.i % $4 = 0",
        person_expr(template, spread)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(rows)
        .bind(from)
        .bind(to - 1)
        .bind(every)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("seeding {table}: {e}"));
}

/// Seed people `from..to`, a chunk at a time.
pub async fn seed(conn: &mut PgConnection, template: &Template, from: i64, to: i64) {
    let mut at = from;
    while at < to {
        let end = (at + SEED_CHUNK).min(to);
        clone_rows(
            conn,
            template,
            "contacts",
            &template.contact,
            &[],
            (at, end, 1),
        )
        .await;
        for group in [&template.welcome, &template.trial] {
            for (table, rows) in &group.rows {
                clone_rows(
                    conn,
                    template,
                    table,
                    rows,
                    &group.spread,
                    (at, end, group.every),
                )
                .await;
            }
        }
        at = end;
    }
}

/// Wait until `sql` (a count) reaches `want`.
async fn wait_count(conn: &mut PgConnection, sql: &str, want: i64) {
    let start = Instant::now();
    while count(conn, sql).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out on {sql} = {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real person: signs up and starts a trial through the API; their rows once asleep.
pub async fn make_template(server: &Server, conn: &mut PgConnection) -> Template {
    let before = table_counts(conn).await;
    let mut rng = Rng(0x7E3A);
    let signed_up = server.send_event(sign_up(&mut rng, TEMPLATE_KEY)).await;
    let trial = server
        .send_event(json!({"name": "trial.started", "userId": TEMPLATE_KEY,
                           "eventProperties": {"plan": "pro", "source": "pricing-page"}}))
        .await;
    let welcome_run = support::started_run(&signed_up);
    let trial_run = support::started_run(&trial);
    let key = TEMPLATE_KEY;
    wait_count(
        conn,
        &format!("SELECT COUNT(*) FROM runs WHERE contact_key = '{key}' AND status = 'waiting'"),
        2,
    )
    .await;
    wait_count(
        conn,
        &format!("SELECT COUNT(*) FROM emails WHERE contact_key = '{key}' AND status = 'sent'"),
        2,
    )
    .await;
    // Anything else the sign-up wrote would have to be seeded too.
    let after = table_counts(conn).await;
    let changed: Vec<String> = after
        .iter()
        .filter(|(table, n)| before.iter().find(|(t, _)| t == table).map(|(_, b)| b) != Some(n))
        .map(|(table, n)| format!("{table} ({n})"))
        .collect();
    let unseeded: Vec<&String> = changed
        .iter()
        .filter(|t| {
            !CLONED
                .iter()
                .chain(&PER_TENANT)
                .any(|c| t.starts_with(&format!("{c} ")))
        })
        .collect();
    assert!(
        unseeded.is_empty(),
        "a sign-up and a trial also wrote {unseeded:?}, which the seeding does not clone"
    );
    println!("a real sign-up and trial wrote to: {}", changed.join(", "));

    let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM runs WHERE id = $1")
        .bind(&welcome_run)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let active: String = sqlx::query_scalar(
        "SELECT active_hash FROM modules WHERE tenant_id = $1 AND name = 'welcome-series'",
    )
    .bind(&tenant)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let pinned: String = sqlx::query_scalar("SELECT module_hash FROM runs WHERE id = $1")
        .bind(&welcome_run)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(pinned, active, "the welcome run is on the deployed version");

    let contact = rows_json(conn, "contacts", &format!("key = '{key}'")).await;
    let mut ids: Vec<String> = Vec::new();
    for (table, filter) in [
        ("contacts", format!("key = '{key}'")),
        ("events", format!("contact_key = '{key}'")),
        ("runs", format!("contact_key = '{key}'")),
        ("emails", format!("contact_key = '{key}'")),
    ] {
        let found: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE {filter}"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        ids.extend(found);
    }
    for id in &ids {
        assert!(
            id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "not a UUID: {id}"
        );
    }
    assert!(ids.len() <= 16, "one hex digit numbers the template's ids");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "template ids repeat: {ids:?}");

    let mut groups = Vec::new();
    for (run, event, every) in [
        (&welcome_run, "user.signed_up", 1),
        (&trial_run, "trial.started", TRIAL_EVERY),
    ] {
        let by_run = format!("run_id = '{run}'");
        let rows = vec![
            (
                "events",
                rows_json(
                    conn,
                    "events",
                    &format!("contact_key = '{key}' AND name = '{event}'"),
                )
                .await,
            ),
            (
                "runs",
                rows_json(conn, "runs", &format!("id = '{run}'")).await,
            ),
            ("journal", rows_json(conn, "journal", &by_run).await),
            ("timers", rows_json(conn, "timers", &by_run).await),
            ("emails", rows_json(conn, "emails", &by_run).await),
        ];
        for (table, found) in &rows {
            assert!(!found.is_empty(), "no {table} row for run {run}");
        }
        // The timer (and the run's wake_at): due one to two days from now, spread.
        let due: i64 = sqlx::query_scalar("SELECT due_at FROM timers WHERE run_id = $1")
            .bind(run)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let mut spread = Vec::new();
        for field in ["due_at", "wake_at"] {
            let text = format!("\"{field}\":{due}");
            if rows.iter().flat_map(|(_, r)| r).any(|r| r.contains(&text)) {
                spread.push((
                    text,
                    format!("'\"{field}\":' || ({due} - (s.i % 86400) * 1000)"),
                ));
            }
        }
        assert!(
            rows[3].1[0].contains(&format!("\"due_at\":{due}")),
            "timer row: {}",
            rows[3].1[0]
        );
        groups.push(Group {
            every,
            rows,
            spread,
        });
    }
    let trial = groups.pop().unwrap();
    let welcome = groups.pop().unwrap();
    Template {
        tenant,
        ids,
        contact,
        welcome,
        trial,
        welcome_run,
        trial_run,
    }
}

/// `text` with person `i`'s key (`sleeper-{i}`, not followed by a digit) made the template's.
fn unkey(text: &str, i: i64) -> String {
    let key = format!("sleeper-{i}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&key) {
        let after = &rest[at + key.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(&key);
        } else {
            out.push_str(TEMPLATE_KEY);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Person `i`'s rows, made the template person's again (key, ids, spread times), parsed.
fn as_template(template: &Template, i: i64, rows: &[String], due: Option<i64>) -> Vec<Value> {
    let mut parsed: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut text = unkey(row, i);
            for (k, id) in template.ids.iter().enumerate() {
                text = text.replace(&derived_id(template, k, i), id);
            }
            let mut value: Value = serde_json::from_str(&text).unwrap();
            if let Some(due) = due {
                for field in ["due_at", "wake_at"] {
                    if value.get(field).is_some_and(|v| !v.is_null()) {
                        value[field] = json!(due);
                    }
                }
            }
            value
        })
        .collect();
    parsed.sort_by_key(|v| v.to_string());
    parsed
}

/// The seeded person `i`'s rows are the real person's (ids, key and spread due times aside),
/// and the host serves their runs with the real runs' timelines.
pub async fn check_seeded(server: &Server, conn: &mut PgConnection, template: &Template, i: i64) {
    assert_eq!(i % TRIAL_EVERY, 0, "check a person with a trial");
    let key = format!("sleeper-{i}");
    let seeded = rows_json(conn, "contacts", &format!("key = '{key}'")).await;
    let parse = |rows: &[String]| -> Vec<Value> {
        let mut v: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        v.sort_by_key(|v| v.to_string());
        v
    };
    assert_eq!(
        as_template(template, i, &seeded, None),
        parse(&template.contact),
        "contacts"
    );
    for (group, run) in [
        (&template.welcome, &template.welcome_run),
        (&template.trial, &template.trial_run),
    ] {
        let seeded_run = derived(template, run, i);
        let due: i64 = sqlx::query_scalar("SELECT due_at FROM timers WHERE run_id = $1")
            .bind(run)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        for (table, rows) in &group.rows {
            let filter = match *table {
                "events" => {
                    let name = serde_json::from_str::<Value>(&rows[0]).unwrap()["name"].clone();
                    format!("contact_key = '{key}' AND name = {}", sql_text(&name))
                }
                "runs" => format!("id = '{seeded_run}'"),
                _ => format!("run_id = '{seeded_run}'"),
            };
            let mine = rows_json(conn, table, &filter).await;
            assert_eq!(
                as_template(template, i, &mine, Some(due)),
                as_template(template, i, rows, Some(due)),
                "{table} of {key}"
            );
        }
        let real = server.run(run).await;
        let clone = server.run(&seeded_run).await;
        assert_eq!(clone["status"], real["status"], "{clone}");
        assert_eq!(support::steps(&clone), support::steps(&real));
    }
}

fn sql_text(value: &Value) -> String {
    format!("'{}'", value.as_str().unwrap().replace('\'', "''"))
}

/// How seeding up to a size went.
pub struct Seeding {
    /// Seconds the seeding and the checkpoint after it took.
    pub seconds: f64,
    /// Seconds after the checkpoint until the host had analyzed `runs`, `timers` and
    /// `contacts`.
    pub analyzed_after: f64,
}

/// Seed people `made..n` (none when `n <= made`; the first seeded person checked against the
/// real one), `CHECKPOINT` (so the seeding's writes do not land on a measurement), and wait at
/// least 15 s, until the host's own statistics upkeep (every 10 s) has analyzed `runs`,
/// `timers` and `contacts`: the bench runs no ANALYZE. The connection is left with
/// `track_counts = off`, so the bench's own queries from here (settling, counting) stay out
/// of the database's counters, which measure the server.
pub async fn seed_up_to(
    server: &Server,
    conn: &mut PgConnection,
    template: &Template,
    made: i64,
    n: i64,
) -> Seeding {
    // The host's statistics upkeep must see the seeding's rows counted.
    execute(conn, "SET track_counts = on").await;
    let start = Instant::now();
    if n > made {
        seed(conn, template, made, n).await;
        if made == 0 {
            check_seeded(server, conn, template, 0).await;
            println!("the seeded rows are the real person's (ids, key and due times aside)");
        }
    }
    execute(conn, "SELECT pg_stat_force_next_flush()").await;
    execute(conn, "CHECKPOINT").await;
    let seconds = start.elapsed().as_secs_f64();
    // The host's statistics upkeep (every 10 s), not the bench, analyzes.
    let seeded_at = Instant::now();
    let analyzed = "SELECT COUNT(*) FROM pg_stat_user_tables WHERE relname IN \
                    ('runs', 'timers', 'contacts') AND n_mod_since_analyze < 0.1 * n_live_tup";
    let mut analyzed_after = f64::NAN;
    while seeded_at.elapsed() < Duration::from_secs(15) || analyzed_after.is_nan() {
        if analyzed_after.is_nan() && count(conn, analyzed).await == 3 {
            analyzed_after = seeded_at.elapsed().as_secs_f64();
        }
        assert!(
            seeded_at.elapsed() < Duration::from_secs(120),
            "the host never analyzed runs, timers and contacts"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    execute(conn, "SET track_counts = off").await;
    Seeding {
        seconds,
        analyzed_after,
    }
}
