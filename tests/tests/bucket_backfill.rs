//! Bucket backfill, end to end: a bucket deployed after its history was ingested gets exactly
//! the members real-time evaluation would have given it, silently; changing its criteria makes
//! exactly the members who no longer match leave, with `bucket:left` events and their leave
//! reactions; and `waymark buckets backfill` restarts one and shows it finish.
//!
//! The modules are `backfill-v1` (bucket `big-spenders`: at least three `purchase` and plan
//! "pro") and `backfill-v2` (at least five `purchase` and plan "pro" or "team"). A deploy is a
//! restart with the new module in the modules directory.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{Backend, Server, ServerOptions};

const BUCKET: &str = "big-spenders";
const ON_LEAVE: &str = "bucket-big-spenders-on-leave";
const PEOPLE: usize = 2_000;
const EVENTS_PER_PERSON: usize = 5;
const PLANS: [&str; 3] = ["free", "pro", "team"];

fn user(i: usize) -> String {
    format!("p{i:04}")
}

/// Event `k` of person `i`: a `purchase` or a `page.viewed`, every other one setting the
/// contact's plan. Deterministic, with purchase counts from 0 to 5 spread over people.
fn event(i: usize, k: usize) -> Value {
    let purchase = (i * 31 + k * 17) % 10 < i % 7 + 2;
    let mut body = json!({
        "name": if purchase { "purchase" } else { "page.viewed" },
        "userId": user(i),
        "eventProperties": { "k": k },
    });
    if (i + k).is_multiple_of(2) {
        body["contactProperties"] = json!({ "plan": PLANS[(i * 13 + k * 5) % 3] });
    }
    body
}

/// Every event, round by round (person `i`'s events stay in order).
fn history() -> Vec<Value> {
    (0..EVENTS_PER_PERSON)
        .flat_map(|k| (0..PEOPLE).map(move |i| event(i, k)))
        .collect()
}

/// Per person: purchases and final plan, as the history leaves them.
fn final_states() -> BTreeMap<String, (usize, Option<String>)> {
    let mut states: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
    for e in history() {
        let state = states
            .entry(e["userId"].as_str().unwrap().to_owned())
            .or_default();
        if e["name"] == "purchase" {
            state.0 += 1;
        }
        if let Some(plan) = e["contactProperties"]["plan"].as_str() {
            state.1 = Some(plan.to_owned());
        }
    }
    states
}

/// Who matches, by the written criteria of each version.
fn expected(matches: impl Fn(usize, Option<&str>) -> bool) -> BTreeSet<String> {
    final_states()
        .into_iter()
        .filter(|(_, (purchases, plan))| matches(*purchases, plan.as_deref()))
        .map(|(key, _)| key)
        .collect()
}

fn v1_matches(purchases: usize, plan: Option<&str>) -> bool {
    purchases >= 3 && plan == Some("pro")
}

fn v2_matches(purchases: usize, plan: Option<&str>) -> bool {
    purchases >= 5 && matches!(plan, Some("pro" | "team"))
}

async fn ingest_history(server: &Server) {
    for chunk in history().chunks(1_000) {
        let (status, body) = server
            .post("/v1/events/batch", json!({ "events": chunk }))
            .await;
        assert_eq!(status, 202, "POST /v1/events/batch: {body}");
        assert_eq!(
            body["summary"]["stored"],
            chunk.len(),
            "{}",
            body["summary"]
        );
    }
}

/// Every current member's key (walking the member pages).
async fn members(server: &Server) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page = server
            .get(&format!(
                "/v1/buckets/{BUCKET}/members?limit=100&cursor={cursor}"
            ))
            .await;
        for member in page["members"].as_array().unwrap() {
            keys.insert(member["key"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return keys,
        }
    }
}

/// Wait until the bucket's backfill of `mode` completed; its `backfill` object.
async fn completed_backfill(server: &Server, mode: &str) -> Value {
    server
        .eventually_within(
            &format!("the {mode} backfill of {BUCKET} to complete"),
            Duration::from_secs(180),
            async || {
                let detail = server.get(&format!("/v1/buckets/{BUCKET}")).await;
                let backfill = detail["backfill"].clone();
                assert_ne!(backfill["state"], "failed", "{backfill}");
                (backfill["state"] == "completed" && backfill["mode"] == mode).then_some(backfill)
            },
        )
        .await
}

/// The person's transition events of the bucket named `name`.
async fn transitions(server: &Server, key: &str, name: &str) -> Vec<Value> {
    let timeline = server
        .get(&format!("/v1/contacts/{key}/events?name={name}"))
        .await;
    timeline["events"].as_array().cloned().unwrap_or_default()
}

async fn server(backend: Backend, modules: Vec<&'static str>) -> Server {
    Server::start(ServerOptions {
        backend,
        modules,
        ..Default::default()
    })
    .await
}

e2e!(
    given_ten_thousand_historical_events_when_the_bucket_is_deployed_then_the_backfill_finds_exactly_the_real_time_members_silently,
    |backend: Backend| async move {
        // Given 10,000 events ingested while no module declared big-spenders
        let mut late = server(backend, vec![]).await;
        ingest_history(&late).await;
        // And a host that had the bucket from the start, fed the same events in real time
        let live = server(backend, vec!["backfill-v1"]).await;
        ingest_history(&live).await;
        let real_time = members(&live).await;
        assert_eq!(real_time, expected(v1_matches), "the real-time members");
        assert!(real_time.len() > 100, "a meaningful bucket: {}", real_time.len());

        // When big-spenders is deployed
        late.replace_modules(&["backfill-v1"]);
        late.restart().await;

        // Then its first backfill scans every contact and completes
        let backfill = completed_backfill(&late, "first-time").await;
        assert_eq!(backfill["done"], PEOPLE, "{backfill}");
        assert_eq!(backfill["total"], PEOPLE, "{backfill}");
        assert_eq!(backfill["joined"], real_time.len(), "{backfill}");
        assert!(backfill["finishedAt"].is_string(), "{backfill}");
        let listed = late.get("/v1/buckets").await;
        assert_eq!(listed["buckets"][0]["backfillState"], "completed");
        // And its members are exactly the real-time ones
        assert_eq!(members(&late).await, real_time);
        // And the joins were silent: no bucket:entered events (the real-time host has them)
        for key in real_time.iter().take(20) {
            let entered = format!("bucket:entered:{BUCKET}");
            assert!(transitions(&late, key, &entered).await.is_empty(), "{key}");
            assert_eq!(transitions(&live, key, &entered).await.len(), 1, "{key}");
        }
        let membership = late
            .get(&format!("/v1/buckets/{BUCKET}/members/{}", real_time.first().unwrap()))
            .await;
        assert_eq!(membership["entryCount"], 1, "{membership}");

        // And a restart with the same criteria queues nothing new
        late.restart().await;
        let again = late.get(&format!("/v1/buckets/{BUCKET}")).await;
        assert_eq!(again["backfill"]["state"], "completed");
        assert_eq!(again["backfill"]["finishedAt"], backfill["finishedAt"]);
    }
);

e2e!(
    given_computed_members_when_the_criteria_change_then_exactly_the_non_matchers_leave_with_events,
    |backend: Backend| async move {
        // Given big-spenders v1, backfilled over the history
        let mut host = server(backend, vec![]).await;
        ingest_history(&host).await;
        host.replace_modules(&["backfill-v1"]);
        host.restart().await;
        completed_backfill(&host, "first-time").await;
        let before = members(&host).await;
        assert_eq!(before, expected(v1_matches));

        // When v2 (at least five purchases, pro or team) is deployed
        host.replace_modules(&["backfill-v2"]);
        host.restart().await;
        let backfill = completed_backfill(&host, "reeval").await;

        // Then the members are exactly v2's matchers
        let after = members(&host).await;
        assert_eq!(after, expected(v2_matches));
        let leavers: BTreeSet<String> = before.difference(&after).cloned().collect();
        let joiners: BTreeSet<String> = after.difference(&before).cloned().collect();
        assert!(
            !leavers.is_empty() && !joiners.is_empty(),
            "{leavers:?} {joiners:?}"
        );
        assert_eq!(backfill["left"], leavers.len(), "{backfill}");
        assert_eq!(backfill["joined"], joiners.len(), "{backfill}");

        // And exactly the leavers got the leave reaction
        let leave_runs = host
            .eventually("every leave reaction to run", async || {
                let runs = host
                    .get(&format!("/v1/runs?journey={ON_LEAVE}&limit=1000"))
                    .await;
                let runs = runs["runs"].as_array().cloned().unwrap_or_default();
                (runs.len() >= leavers.len()).then_some(runs)
            })
            .await;
        let reacted: BTreeSet<String> = leave_runs
            .iter()
            .map(|run| run["userId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(reacted, leavers);
        assert_eq!(leave_runs.len(), leavers.len());
        // And each leaver has one bucket:left event: reason criteria, source backfill
        let left = format!("bucket:left:{BUCKET}");
        for key in leavers.iter().take(10) {
            let events = transitions(&host, key, &left).await;
            assert_eq!(events.len(), 1, "{key}: {events:?}");
            assert_eq!(events[0]["properties"]["reason"], "criteria");
            assert_eq!(events[0]["properties"]["source"], "backfill");
        }
        // And the joiners entered silently
        for key in joiners.iter().take(10) {
            let entered = format!("bucket:entered:{BUCKET}");
            assert!(transitions(&host, key, &entered).await.is_empty(), "{key}");
        }

        // When an admin restarts the backfill with the CLI, then it shows the progress and
        // ends successfully, changing nothing
        let url = host.base.clone();
        let key = host.key.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(support::BIN)
                .args(["buckets", "backfill", BUCKET, "--url", &url, "--key", &key])
                .env("WAYMARK_LOG", "warn")
                .output()
                .expect("running waymark buckets backfill")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("completed"), "{stdout}");
        assert!(stderr.contains("completed"), "the progress bar: {stderr}");
        assert_eq!(members(&host).await, after);

        // And the CLI exits non-zero for a bucket that does not exist
        let url = host.base.clone();
        let key = host.key.clone();
        let missing = tokio::task::spawn_blocking(move || {
            std::process::Command::new(support::BIN)
                .args(["buckets", "backfill", "nope", "--url", &url, "--key", &key])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    }
);
