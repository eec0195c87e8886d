//! Buckets, end to end: the compiled `win-back` example (a `power-users` bucket — at least five
//! `feature.used` within 7 days — whose enter and leave reactions send email) and the `vip-list`
//! test guest (a manual `vip` bucket), over real HTTP, on a real SMTP sink.
//!
//! Membership moves in real time, inside the transaction that stores the event; every change is
//! one transition event (`bucket:entered:<id>` / `bucket:left:<id>`) stored once under its
//! idempotency key `bucket:<id>:<key>:<entered|left>:<entry count>`, and each starts the
//! bucket's reaction journey (`bucket-<id>-on-enter` / `bucket-<id>-on-leave`), whose runs and
//! inputs are what these tests observe.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions};

const ON_ENTER: &str = "bucket-power-users-on-enter";
const ON_LEAVE: &str = "bucket-power-users-on-leave";

async fn win_back_server(backend: Backend, sink: &SmtpSink) -> Server {
    Server::start(ServerOptions {
        backend,
        modules: vec!["win-back"],
        smtp_port: Some(sink.port),
        ..Default::default()
    })
    .await
}

fn feature_used(user: &str) -> Value {
    json!({
        "name": "feature.used",
        "userId": user,
        "email": format!("{user}@example.com"),
        "contactProperties": { "name": capitalized(user) },
        "eventProperties": { "feature": "export" },
    })
}

fn capitalized(user: &str) -> String {
    let mut chars = user.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

async fn use_feature(server: &Server, user: &str, times: usize) -> Vec<Value> {
    let mut responses = Vec::new();
    for _ in 0..times {
        responses.push(server.send_event(feature_used(user)).await);
    }
    responses
}

/// `GET /v1/buckets/{bucket}/members/{key}`.
async fn membership(server: &Server, bucket: &str, key: &str) -> Value {
    server
        .get(&format!("/v1/buckets/{bucket}/members/{key}"))
        .await
}

/// The keys of a page of `GET /v1/buckets/{bucket}/members`.
fn member_keys(page: &Value) -> Vec<String> {
    page["members"]
        .as_array()
        .unwrap_or_else(|| panic!("a members list: {page}"))
        .iter()
        .map(|m| m["key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The person's runs of journey `journey`, newest first.
async fn runs_of(server: &Server, journey: &str, user: &str) -> Vec<Value> {
    let list = server
        .get(&format!("/v1/runs?journey={journey}&userId={user}"))
        .await;
    list["runs"].as_array().cloned().unwrap_or_default()
}

/// Wait for the person's `count`-th run of `journey` to complete; returns the runs' details,
/// oldest first.
async fn completed_runs(server: &Server, journey: &str, user: &str, count: usize) -> Vec<Value> {
    let runs = server
        .eventually(
            &format!("{count} run(s) of {journey} for {user}"),
            async || {
                let runs = runs_of(server, journey, user).await;
                (runs.len() >= count).then_some(runs)
            },
        )
        .await;
    let mut details = Vec::new();
    for run in runs.iter().rev() {
        let id = run["id"].as_str().unwrap();
        details.push(server.run_reaches(id, "completed").await);
    }
    details
}

/// Wait for the person's run of `journey` to be waiting; returns its id.
async fn waiting_run(server: &Server, journey: &str, user: &str) -> String {
    server
        .eventually(&format!("{user}'s run of {journey} to wait"), async || {
            let runs = runs_of(server, journey, user).await;
            runs.first()
                .filter(|r| r["status"] == "waiting")
                .and_then(|r| r["id"].as_str().map(str::to_owned))
        })
        .await
}

/// The journeys an ingest response says it started.
fn started_journeys(response: &Value) -> Vec<String> {
    response["started"]
        .as_array()
        .unwrap_or_else(|| panic!("started runs: {response}"))
        .iter()
        .map(|run| run["journeyId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The bucket transitions an ingest response reports (`buckets`).
fn transitions(response: &Value) -> &Value {
    &response["buckets"]
}

/// One reported transition of `power-users`.
fn power_users(transition: &str, entry_count: u32) -> Value {
    json!([{
        "bucketId": "power-users",
        "transition": transition,
        "entryCount": entry_count,
        "emitted": true,
    }])
}

/// Let background work (routing, delivery) settle before asserting that something did NOT
/// happen.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Whether a transition with this idempotency key (`bucket:<id>:<person>:<kind>:<epoch>`) is
/// stored: it shows in the person's timeline, `GET /v1/contacts/{person}/events`.
async fn key_is_taken(server: &Server, idempotency_key: &str) -> bool {
    let person = idempotency_key
        .split(':')
        .nth(2)
        .expect("a transition key names its person third");
    let timeline = server
        .get(&format!("/v1/contacts/{person}/events?limit=1000"))
        .await;
    timeline["events"]
        .as_array()
        .expect("a list of events")
        .iter()
        .any(|event| event["idempotencyKey"] == idempotency_key)
}

e2e!(
    given_a_client_when_it_sends_a_bucket_event_name_or_key_then_it_is_refused_naming_the_field,
    |backend: Backend| async move {
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        // A transition event name is reserved
        let (status, body) = server
            .post(
                "/v1/events",
                json!({"name": "bucket:entered:power-users", "userId": "eve"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["details"]["field"], "name", "{body}");
        // And so is a transition's idempotency key: taking one first would silence it
        let (status, body) = server
            .post(
                "/v1/events",
                json!({"name": "feature.used", "userId": "eve",
                       "idempotencyKey": "bucket:power-users:eve:entered:1"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["details"]["field"], "idempotencyKey", "{body}");
        // Nothing was stored for eve
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/contacts/eve",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 404);
    }
);

e2e!(
    given_four_uses_when_the_fifth_arrives_then_the_person_enters_power_users_once_and_is_welcomed,
    |backend: Backend| async move {
        // Given Ada used a feature four times this week
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        for response in use_feature(&server, "ada", 4).await {
            assert_eq!(started_journeys(&response), Vec::<String>::new());
            assert_eq!(transitions(&response), &json!([]), "{response}");
        }
        assert_eq!(
            membership(&server, "power-users", "ada").await["member"],
            false
        );

        // When the fifth use arrives
        let fifth = server.send_event(feature_used("ada")).await;

        // Then, as soon as it is accepted, she is a member on her first entry
        assert_eq!(transitions(&fifth), &power_users("entered", 1), "{fifth}");
        assert_eq!(started_journeys(&fifth), [ON_ENTER], "{fifth}");
        let member = membership(&server, "power-users", "ada").await;
        assert_eq!(member["member"], true, "{member}");
        assert_eq!(member["entryCount"], 1, "{member}");

        // And exactly one entered transition was stored, under its deterministic key, and it
        // started the enter reaction with the documented properties
        let runs = completed_runs(&server, ON_ENTER, "ada", 1).await;
        assert_eq!(runs.len(), 1);
        let trigger = &runs[0]["input"]["trigger"];
        assert_eq!(trigger["name"], "bucket:entered:power-users");
        assert_eq!(
            trigger["properties"],
            json!({
                "bucketId": "power-users",
                "bucketName": "Power users",
                "userId": "ada",
                "transition": "entered",
                "source": "event",
                "entryCount": 1,
                "isFirstEntry": true,
            })
        );
        assert!(key_is_taken(&server, "bucket:power-users:ada:entered:1").await);
        assert!(!key_is_taken(&server, "bucket:power-users:ada:entered:2").await);

        // And the welcome email reaches her
        let welcome = server
            .eventually("the power-user welcome at the sink", async || {
                sink.messages_to("ada@example.com").into_iter().next()
            })
            .await;
        assert_eq!(welcome.subject(), "You're a power user, Ada!");

        // When she uses the feature a sixth time
        let sixth = server.send_event(feature_used("ada")).await;

        // Then she stays a member of the same epoch and nothing transitions again
        assert_eq!(transitions(&sixth), &json!([]), "{sixth}");
        assert_eq!(started_journeys(&sixth), Vec::<String>::new(), "{sixth}");
        let member = membership(&server, "power-users", "ada").await;
        assert_eq!(
            (member["member"].clone(), member["entryCount"].clone()),
            (json!(true), json!(1))
        );
        settle().await;
        assert_eq!(runs_of(&server, ON_ENTER, "ada").await.len(), 1);
        assert_eq!(runs_of(&server, ON_LEAVE, "ada").await.len(), 0);
        assert_eq!(sink.messages_to("ada@example.com").len(), 1);
    }
);

e2e!(
    given_a_power_user_when_a_week_passes_then_the_reconcile_job_makes_them_leave_and_they_can_rejoin,
    |backend: Backend| async move {
        // Given Bob became a power user and was welcomed
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        use_feature(&server, "bob", 5).await;
        completed_runs(&server, ON_ENTER, "bob", 1).await;

        // When more than seven days pass (the reconcile job runs for the ticks passed over)
        server.advance_clock("8d").await;

        // Then he has left, and the leave reaction ran with reason "criteria"
        server
            .eventually("bob leaves power-users", async || {
                let m = membership(&server, "power-users", "bob").await;
                (m["member"] == false).then_some(())
            })
            .await;
        let lone_use = server.send_event(feature_used("bob")).await;
        assert_eq!(transitions(&lone_use), &json!([]), "{lone_use}");
        let leaves = completed_runs(&server, ON_LEAVE, "bob", 1).await;
        let trigger = &leaves[0]["input"]["trigger"];
        assert_eq!(trigger["name"], "bucket:left:power-users");
        assert_eq!(
            trigger["properties"],
            json!({
                "bucketId": "power-users",
                "bucketName": "Power users",
                "userId": "bob",
                "transition": "left",
                "source": "reconcile",
                "entryCount": 1,
                "reason": "criteria",
            })
        );
        assert!(key_is_taken(&server, "bucket:power-users:bob:left:1").await);

        // And the closed membership is counted as left
        let bucket = server.get("/v1/buckets/power-users").await;
        assert_eq!(
            bucket["counts"],
            json!({"active": 0, "left": 1}),
            "{bucket}"
        );

        // And he gets the "missed you" email
        let missed = server
            .eventually("the missed-you email", async || {
                let mine = sink.messages_to("bob@example.com");
                (mine.len() == 2).then(|| mine[1].clone())
            })
            .await;
        assert_eq!(missed.subject(), "We missed you this week, Bob");

        // When he uses it four more times (five within the window again)
        let uses = use_feature(&server, "bob", 4).await;

        // Then the fourth brings him back, on his second entry
        let rejoin: Vec<Vec<String>> = uses.iter().map(started_journeys).collect();
        assert_eq!(
            rejoin,
            [vec![], vec![], vec![], vec![ON_ENTER.to_owned()]],
            "only the fifth use in the window re-enters"
        );
        let reported: Vec<&Value> = uses.iter().map(transitions).collect();
        let (quiet, entered) = (json!([]), power_users("entered", 2));
        assert_eq!(reported, [&quiet, &quiet, &quiet, &entered]);
        let member = membership(&server, "power-users", "bob").await;
        assert_eq!(member["member"], true, "{member}");
        assert_eq!(member["entryCount"], 2, "{member}");
        let entries = completed_runs(&server, ON_ENTER, "bob", 2).await;
        assert_eq!(
            entries[1]["input"]["trigger"]["properties"]["entryCount"],
            2
        );
        assert_eq!(
            entries[1]["input"]["trigger"]["properties"]["isFirstEntry"],
            false
        );
        assert!(key_is_taken(&server, "bucket:power-users:bob:entered:2").await);

        // And he is welcomed back
        let back = server
            .eventually("the welcome-back email", async || {
                let mine = sink.messages_to("bob@example.com");
                (mine.len() == 3).then(|| mine[2].clone())
            })
            .await;
        assert_eq!(back.subject(), "Welcome back, Bob!");
        let bucket = server.get("/v1/buckets/power-users").await;
        assert_eq!(
            bucket["counts"],
            json!({"active": 1, "left": 1}),
            "{bucket}"
        );
    }
);

e2e!(
    given_the_event_that_made_a_member_when_it_is_resent_with_its_idempotency_key_then_nothing_transitions_again,
    |backend: Backend| async move {
        // Given four uses, and a fifth sent with an idempotency key, which made Cleo a member
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        use_feature(&server, "cleo", 4).await;
        let mut fifth = feature_used("cleo");
        fifth["idempotencyKey"] = json!("cleo-use-5");
        let first = server.send_event(fifth.clone()).await;
        assert_eq!(transitions(&first), &power_users("entered", 1), "{first}");
        assert_eq!(started_journeys(&first), [ON_ENTER]);

        // When the same event is resent, with the key in the body and then in the header
        let again = server.send_event(fifth.clone()).await;
        let by_header = {
            let mut body = fifth.clone();
            body.as_object_mut().unwrap().remove("idempotencyKey");
            reqwest::Client::new()
                .post(server.url("/v1/events"))
                .bearer_auth(&server.key)
                .header("Idempotency-Key", "cleo-use-5")
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };

        // Then neither is stored, neither starts anything, and the membership is unchanged
        for duplicate in [&again, &by_header] {
            assert_eq!(duplicate["stored"], false, "{duplicate}");
            assert_eq!(duplicate["eventId"], first["eventId"]);
            assert_eq!(started_journeys(duplicate), Vec::<String>::new());
            assert_eq!(transitions(duplicate), &json!([]), "{duplicate}");
        }
        let member = membership(&server, "power-users", "cleo").await;
        assert_eq!((member["member"].clone(), member["entryCount"].clone()), (json!(true), json!(1)));
        completed_runs(&server, ON_ENTER, "cleo", 1).await;
        settle().await;
        assert_eq!(runs_of(&server, ON_ENTER, "cleo").await.len(), 1);
        assert!(!key_is_taken(&server, "bucket:power-users:cleo:entered:2").await);
        assert_eq!(sink.messages_to("cleo@example.com").len(), 1);
    }
);

e2e!(
    given_a_new_person_when_ten_uses_arrive_at_once_then_exactly_one_entered_transition_happens,
    |backend: Backend| async move {
        // Given a person Waymark has never heard of
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;

        // When ten of their feature uses are posted concurrently
        let client = reqwest::Client::new();
        let posts: Vec<_> = (0..10)
            .map(|_| {
                let request = client
                    .post(server.url("/v1/events"))
                    .bearer_auth(&server.key)
                    .json(&feature_used("dora"));
                tokio::spawn(async move {
                    let response = request.send().await.unwrap();
                    (
                        response.status().as_u16(),
                        response.json::<Value>().await.unwrap(),
                    )
                })
            })
            .collect();
        let mut responses = Vec::new();
        for post in posts {
            let (status, body) = post.await.unwrap();
            assert_eq!(status, 202, "{body}");
            responses.push(body);
        }

        // Then exactly one of them made Dora a member, and she is on her first entry
        let entering: Vec<&Value> = responses
            .iter()
            .filter(|r| started_journeys(r).iter().any(|j| j == ON_ENTER))
            .collect();
        assert_eq!(entering.len(), 1, "{responses:#?}");
        assert_eq!(transitions(entering[0]), &power_users("entered", 1));
        let quiet = responses
            .iter()
            .filter(|r| transitions(r) == &json!([]))
            .count();
        assert_eq!(quiet, 9, "the other nine change nothing: {responses:#?}");
        let member = membership(&server, "power-users", "dora").await;
        assert_eq!(
            (member["member"].clone(), member["entryCount"].clone()),
            (json!(true), json!(1))
        );

        // And one entered transition ran its reaction, and one welcome was sent
        completed_runs(&server, ON_ENTER, "dora", 1).await;
        server
            .eventually("the welcome email", async || {
                (!sink.messages_to("dora@example.com").is_empty()).then_some(())
            })
            .await;
        settle().await;
        assert_eq!(runs_of(&server, ON_ENTER, "dora").await.len(), 1);
        assert_eq!(runs_of(&server, ON_LEAVE, "dora").await.len(), 0);
        assert!(key_is_taken(&server, "bucket:power-users:dora:entered:1").await);
        assert!(!key_is_taken(&server, "bucket:power-users:dora:entered:2").await);
        assert_eq!(sink.messages_to("dora@example.com").len(), 1);
        let members = server.get("/v1/buckets/power-users/members").await;
        assert_eq!(member_keys(&members), ["dora"], "{members}");
        assert_eq!(members["total"], 1);
    }
);

e2e!(
    given_two_power_users_when_one_contact_is_deleted_then_they_vanish_from_the_members_and_the_count,
    |backend: Backend| async move {
        // Given Eve and Finn are both power users
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        use_feature(&server, "eve", 5).await;
        use_feature(&server, "finn", 5).await;
        let members = server.get("/v1/buckets/power-users/members").await;
        let mut keys = member_keys(&members);
        keys.sort();
        assert_eq!(keys, ["eve", "finn"], "{members}");
        assert_eq!(members["total"], 2);

        // When Finn's contact is deleted
        let (status, body) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/contacts/finn",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 200, "{body}");

        // Then the members list and every count leave him out
        let members = server.get("/v1/buckets/power-users/members").await;
        assert_eq!(member_keys(&members), ["eve"], "{members}");
        assert_eq!(members["total"], 1);
        assert_eq!(membership(&server, "power-users", "finn").await["member"], false);
        let bucket = server.get("/v1/buckets/power-users").await;
        assert_eq!(bucket["counts"]["active"], 1, "{bucket}");
        let listed = server.get("/v1/buckets").await;
        let power = listed["buckets"]
            .as_array()
            .unwrap_or_else(|| panic!("a buckets list: {listed}"))
            .iter()
            .find(|b| b["id"] == "power-users")
            .cloned()
            .unwrap_or_else(|| panic!("power-users is listed: {listed}"));
        assert_eq!(power["counts"]["active"], 1, "{power}");
    }
);

e2e!(
    given_a_deleted_power_user_when_someone_new_arrives_with_their_user_id_then_the_newcomer_inherits_nothing,
    |backend: Backend| async move {
        // Given Gus was a power user, and his contact was deleted
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        use_feature(&server, "gus", 5).await;
        completed_runs(&server, ON_ENTER, "gus", 1).await;
        let (status, body) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/contacts/gus",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 200, "{body}");

        // When a new person arrives with the same user id and uses the feature once
        let first = server.send_event(feature_used("gus")).await;

        // Then they are a new person: not a member, and the old membership neither shows up
        // again nor leaves (no leave reaction, no "missed you" email)
        assert_eq!(transitions(&first), &json!([]), "{first}");
        assert_eq!(started_journeys(&first), Vec::<String>::new(), "{first}");
        assert_eq!(membership(&server, "power-users", "gus").await["member"], false);
        let members = server.get("/v1/buckets/power-users/members").await;
        assert_eq!(member_keys(&members), Vec::<String>::new(), "{members}");
        assert_eq!(members["total"], 0);
        settle().await;
        assert_eq!(runs_of(&server, ON_LEAVE, "gus").await.len(), 0);

        // And the deleted person's uses do not count toward theirs: four more are not enough
        for response in use_feature(&server, "gus", 3).await {
            assert_eq!(started_journeys(&response), Vec::<String>::new(), "{response}");
        }
        assert_eq!(membership(&server, "power-users", "gus").await["member"], false);
        let entering = server.send_event(feature_used("gus")).await;
        assert_eq!(started_journeys(&entering), [ON_ENTER], "{entering}");
    }
);

e2e!(
    given_a_manual_bucket_when_a_person_is_added_and_removed_through_the_api_then_each_is_one_manual_transition,
    |backend: Backend| async move {
        // Given a manual VIP bucket and a contact, Hana
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["vip-list", "win-back"],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        server
            .send_event(json!({"name": "user.signed_up", "userId": "hana", "email": "hana@example.com"}))
            .await;

        // When she is added to it
        let (status, added) = server.post("/v1/buckets/vip/members/hana", json!({})).await;

        // Then she is a member, through one entered transition with source "manual"
        assert_eq!(status, 200, "{added}");
        assert_eq!(added["changed"], true, "{added}");
        let member = membership(&server, "vip", "hana").await;
        assert_eq!((member["member"].clone(), member["entryCount"].clone()), (json!(true), json!(1)));
        let entered = completed_runs(&server, "bucket-vip-on-enter", "hana", 1).await;
        assert_eq!(
            entered[0]["input"]["trigger"]["properties"],
            json!({
                "bucketId": "vip",
                "bucketName": "VIPs",
                "userId": "hana",
                "transition": "entered",
                "source": "manual",
                "entryCount": 1,
                "isFirstEntry": true,
            })
        );
        assert!(key_is_taken(&server, "bucket:vip:hana:entered:1").await);

        // When she is added again
        let (status, again) = server.post("/v1/buckets/vip/members/hana", json!({})).await;

        // Then nothing changes
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["changed"], false, "{again}");
        settle().await;
        assert_eq!(runs_of(&server, "bucket-vip-on-enter", "hana").await.len(), 1);

        // When she is removed
        let (status, removed) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/buckets/vip/members/hana",
                None,
                Some(&server.key),
            )
            .await;

        // Then she has left, with reason "manual", and the leave reaction wrote to her
        assert_eq!(status, 200, "{removed}");
        assert_eq!(removed["changed"], true, "{removed}");
        assert_eq!(membership(&server, "vip", "hana").await["member"], false);
        let left = completed_runs(&server, "bucket-vip-on-leave", "hana", 1).await;
        assert_eq!(
            left[0]["input"]["trigger"]["properties"],
            json!({
                "bucketId": "vip",
                "bucketName": "VIPs",
                "userId": "hana",
                "transition": "left",
                "source": "manual",
                "entryCount": 1,
                "reason": "manual",
            })
        );
        assert!(key_is_taken(&server, "bucket:vip:hana:left:1").await);
        let goodbye = server
            .eventually("the VIP goodbye", async || {
                sink.messages_to("hana@example.com")
                    .into_iter()
                    .find(|m| m.subject().contains("left"))
            })
            .await;
        assert_eq!(goodbye.subject(), "You left the VIP list (manual)");

        // When she is added back
        server.post("/v1/buckets/vip/members/hana", json!({})).await;

        // Then it is her second entry
        assert_eq!(membership(&server, "vip", "hana").await["entryCount"], 2);

        // And someone Waymark has never heard of cannot be added
        let (status, body) = server
            .post("/v1/buckets/vip/members/nobody", json!({}))
            .await;
        assert_eq!(status, 404, "{body}");
    }
);

e2e!(
    given_an_enter_reaction_that_runs_until_the_person_leaves_when_they_leave_then_it_exits_and_sends_no_more,
    |backend: Backend| async move {
        // Given the VIP bucket, whose enter reaction follows a concierge VIP up a week later
        // and exits when they leave the bucket, and two concierge VIPs
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["vip-list"],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        for user in ["iva", "jon"] {
            server
                .send_event(json!({"name": "user.signed_up", "userId": user,
                                   "email": format!("{user}@example.com"),
                                   "contactProperties": {"concierge": true}}))
                .await;
            let (status, added) = server
                .post(&format!("/v1/buckets/vip/members/{user}"), json!({}))
                .await;
            assert_eq!(status, 200, "{added}");
        }
        let iva = waiting_run(&server, "bucket-vip-on-enter", "iva").await;
        let jon = waiting_run(&server, "bucket-vip-on-enter", "jon").await;

        // When Iva leaves the bucket before the week is up
        let (status, removed) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/buckets/vip/members/iva",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 200, "{removed}");

        // Then her enter reaction exited (her leave reaction still ran)
        server.run_reaches(&iva, "exited").await;
        completed_runs(&server, "bucket-vip-on-leave", "iva", 1).await;

        // And when the week is up, only Jon, still a VIP, is checked in on
        server.advance_clock("7d").await;
        server.run_reaches(&jon, "completed").await;
        server
            .eventually("Jon's check-in", async || {
                sink.messages_to("jon@example.com")
                    .into_iter()
                    .find(|m| m.subject().starts_with("A week as a VIP"))
            })
            .await;
        settle().await;
        assert_eq!(server.run(&iva).await["status"], "exited");
        assert!(
            !sink
                .messages_to("iva@example.com")
                .iter()
                .any(|m| m.subject().starts_with("A week as a VIP")),
            "Iva left before the week was up"
        );
        // And the reaction lists its exit rule
        let journey = server.get("/v1/journeys/bucket-vip-on-enter").await;
        assert_eq!(
            journey["exitOn"],
            json!([{"event": "bucket:left:vip", "where": null}]),
            "{journey}"
        );
    }
);

e2e!(
    given_a_computed_bucket_when_someone_tries_to_change_its_members_by_hand_then_it_is_refused,
    |backend: Backend| async move {
        // Given the computed power-users bucket and a contact who is not in it
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        server.send_event(feature_used("ivy")).await;

        // When someone adds or removes her by hand
        let (add_status, add) = server
            .post("/v1/buckets/power-users/members/ivy", json!({}))
            .await;
        let (remove_status, remove) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/buckets/power-users/members/ivy",
                None,
                Some(&server.key),
            )
            .await;

        // Then both are refused as a conflict with an error saying why, and nothing changed
        for (status, body) in [(add_status, &add), (remove_status, &remove)] {
            assert_eq!(status, 409, "{body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("power-users") && error.contains("manual"),
                "the error names the bucket and says only manual buckets can be changed: {body}"
            );
        }
        assert_eq!(
            membership(&server, "power-users", "ivy").await["member"],
            false
        );
        settle().await;
        assert_eq!(runs_of(&server, ON_ENTER, "ivy").await.len(), 0);

        // And an unknown bucket is a 404
        let (status, body) = server.post("/v1/buckets/nope/members/ivy", json!({})).await;
        assert_eq!(status, 404, "{body}");
    }
);
