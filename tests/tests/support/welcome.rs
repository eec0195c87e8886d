//! The welcome series at scale: signing many people up at once, and checking from outside —
//! runs and their journals over the API, messages at the SMTP sink — that every run did each
//! of its steps exactly once.
//!
//! The series is `user.signed_up` → email `welcome` → sleep two days → email `tips-a` or
//! `tour-b`, so a finished run has committed exactly two activations (the sleep is the only
//! suspension) and journaled exactly two emails; each email's id is the `Message-ID` it is
//! sent with (`<email-id@waymark>`).

use super::Server;
use super::smtp::SmtpSink;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

pub const MODULE: &str = "welcome-series";

/// The address of person `i`.
pub fn address(i: usize) -> String {
    format!("person{i}@example.com")
}

pub fn user_id(i: usize) -> String {
    format!("user-{i}")
}

/// Person `i`'s signup event.
pub fn signup(i: usize) -> Value {
    json!({
        "name": "user.signed_up",
        "userId": user_id(i),
        "email": address(i),
        "contactProperties": { "name": format!("Person {i}"), "plan": "pro" },
        "eventProperties": { "source": "load-test" },
    })
}

/// Sign people `from..to` up in one `POST /v1/events/batch`; each starts one run.
pub async fn sign_up_batch(server: &Server, people: std::ops::Range<usize>) {
    let count = people.len();
    let events: Vec<Value> = people.map(signup).collect();
    let (status, body) = server
        .post("/v1/events/batch", json!({ "events": events }))
        .await;
    assert_eq!(status, 202, "POST /v1/events/batch: {body}");
    assert_eq!(body["summary"]["stored"], count, "{}", body["summary"]);
    let started = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["started"].as_array().map(Vec::len) == Some(1))
        .count();
    assert_eq!(started, count, "each signup starts one run");
}

/// The runs of the welcome series with `status` (at most 1,000: the API's largest page).
pub async fn runs_with_status(server: &Server, status: &str) -> Vec<Value> {
    let list = server
        .get(&format!(
            "/v1/runs?journey={MODULE}&status={status}&limit=1000"
        ))
        .await;
    list["runs"].as_array().expect("runs").clone()
}

/// Wait (up to `limit`) until `count` runs have `status`.
pub async fn wait_for_runs(server: &Server, status: &str, count: usize, limit: Duration) {
    server
        .eventually_within(&format!("{count} runs {status}"), limit, async || {
            (runs_with_status(server, status).await.len() == count).then_some(())
        })
        .await
}

/// Wait (up to `limit`) until the sink holds messages with `count` distinct `Message-ID`s.
pub async fn wait_for_distinct_messages(
    server: &Server,
    sink: &SmtpSink,
    count: usize,
    limit: Duration,
) {
    server
        .eventually_within(
            &format!("{count} distinct emails at the sink"),
            limit,
            async || (sink.count_by_message_id().len() >= count).then_some(()),
        )
        .await
}

/// Wait (up to `limit` for each) until each person's two emails are recorded as sent in the
/// outbox, so no delivery worker will pick one up again.
pub async fn wait_for_outbox_sent(server: &Server, people: usize, limit: Duration) {
    for i in 0..people {
        let what = format!("both emails to {} recorded as sent", address(i));
        server
            .eventually_within(&what, limit, async || {
                let emails = server
                    .get(&format!("/v1/emails?userId={}", user_id(i)))
                    .await;
                let emails = emails["emails"].as_array().unwrap().clone();
                assert!(emails.len() <= 2, "more than two emails queued: {emails:?}");
                (emails.len() == 2 && emails.iter().all(|e| e["status"] == "sent")).then_some(())
            })
            .await;
    }
}

/// Assert that the series finished exactly once for each of `people` people: every run is
/// completed (none in any other state), one per person; each committed exactly two
/// activations; each journal is gap-free (seq 0..n) with exactly one sleep and exactly two
/// emails, `welcome` then a follow-up. Returns the journaled email ids, by run id.
pub async fn assert_every_run_completed_once(
    server: &Server,
    people: usize,
) -> HashMap<String, [String; 2]> {
    for status in ["active", "waiting", "failed", "exited"] {
        let runs = runs_with_status(server, status).await;
        assert!(runs.is_empty(), "runs left {status}: {runs:?}");
    }
    let completed = runs_with_status(server, "completed").await;
    assert_eq!(completed.len(), people, "every run completed");
    let users: HashSet<&str> = completed
        .iter()
        .map(|run| run["userId"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), people, "one run per person");

    let mut emails = HashMap::new();
    for summary in &completed {
        let id = summary["id"].as_str().unwrap();
        assert_eq!(
            summary["activations"], 2,
            "two commits (before and after the sleep), no more: {summary}"
        );
        let run = server.run(id).await;
        let timeline = run["timeline"].as_array().expect("a timeline");
        let seqs: Vec<u64> = timeline
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..timeline.len() as u64).collect::<Vec<_>>(),
            "a gap-free journal: {run}"
        );
        let sends: Vec<&Value> = timeline
            .iter()
            .filter(|e| e["step"] == "send-email")
            .collect();
        let sleeps = timeline.iter().filter(|e| e["step"] == "sleep").count();
        assert_eq!((sends.len(), sleeps), (2, 1), "{run}");
        assert_eq!(sends[0]["request"]["template"], "welcome", "{run}");
        assert!(
            ["tips-a", "tour-b"].contains(&sends[1]["request"]["template"].as_str().unwrap()),
            "{run}"
        );
        let email_id = |send: &Value| send["response"]["ok"].as_str().unwrap().to_owned();
        emails.insert(id.to_owned(), [email_id(sends[0]), email_id(sends[1])]);
    }
    emails
}

/// What the SMTP sink saw, checked against the journals.
#[derive(Debug)]
pub struct SinkReport {
    /// Messages the sink received again with a `Message-ID` it already had: a resend of an
    /// email whose first send was not recorded before its host died.
    pub resent: Vec<(String, String)>,
}

/// Assert that each of `people` people received exactly one welcome and exactly one
/// follow-up — by `Message-ID` — and that the set of `Message-ID`s at the sink is exactly the
/// set of emails the journals queued. A message received twice always has the same
/// `Message-ID` and the same recipient and subject (a resend, not a second email); these are
/// returned for the caller to bound.
pub fn assert_each_person_emailed_once(
    sink: &SmtpSink,
    people: usize,
    journaled: &HashMap<String, [String; 2]>,
) -> SinkReport {
    let messages = sink.messages();
    // Message-ID → (recipient, subject), checking a repeated Message-ID repeats both.
    let mut by_id: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut resent = Vec::new();
    for message in &messages {
        assert_eq!(message.to.len(), 1, "one recipient per email");
        let sent = (message.to[0].clone(), message.subject());
        match by_id.get(&message.message_id()) {
            None => {
                by_id.insert(message.message_id(), sent);
            }
            Some(first) => {
                assert_eq!(first, &sent, "a repeated Message-ID is the same email");
                resent.push(sent);
            }
        }
    }

    let expected: HashSet<String> = journaled
        .values()
        .flatten()
        .map(|id| format!("<{id}@waymark>"))
        .collect();
    let received: HashSet<String> = by_id.keys().cloned().collect();
    assert_eq!(
        expected.len(),
        2 * people,
        "distinct email ids in the journals"
    );
    assert_eq!(
        received, expected,
        "the sink received exactly the emails the journals queued"
    );

    let mut per_person: HashMap<&str, Vec<&str>> = HashMap::new();
    for (to, subject) in by_id.values() {
        per_person.entry(to).or_default().push(subject);
    }
    assert_eq!(per_person.len(), people, "every person was emailed");
    for i in 0..people {
        let subjects = &per_person[address(i).as_str()];
        let welcomes = subjects
            .iter()
            .filter(|s| s.starts_with("Welcome to Waymark"))
            .count();
        assert_eq!(
            (subjects.len(), welcomes),
            (2, 1),
            "{}: one welcome and one follow-up: {subjects:?}",
            address(i)
        );
    }
    SinkReport { resent }
}
