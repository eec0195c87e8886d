//! The contacts API: upsert (which moves property buckets), find, read with active runs, and
//! delete (a soft delete that exits live runs, stops future sends and erases personal data from
//! every response).

mod support;

use serde_json::json;
use support::{Backend, Server, ServerOptions, started_run};

e2e!(
    given_a_property_bucket_when_put_changes_the_property_then_the_person_joins_and_leaves_with_reactions,
    |backend: Backend| async move {
        // Given big-spenders (three purchases and plan "pro", with a leave reaction) and ada,
        // who made three purchases on the free plan
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["backfill-v1"],
            ..Default::default()
        })
        .await;
        for _ in 0..3 {
            server
                .send_event(json!({"name": "purchase", "userId": "ada",
                                   "contactProperties": {"plan": "free"}}))
                .await;
        }
        let member = async || server.get("/v1/buckets/big-spenders/members/ada").await;
        assert_eq!(member().await["member"], false);
        let client = reqwest::Client::new();
        let put = async |plan: &str| {
            client
                .put(server.url("/v1/contacts"))
                .bearer_auth(&server.key)
                .json(&json!({"userId": "ada", "properties": {"plan": plan}}))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        };

        // When PUT /v1/contacts moves her to pro, without an event
        let upgraded = put("pro").await;

        // Then she joins at once, the answer says so, and her timeline has the transition
        assert_eq!(
            upgraded["transitions"],
            json!([{"bucketId": "big-spenders", "transition": "entered",
                    "entryCount": 1, "emitted": true}])
        );
        assert_eq!(member().await["member"], true);
        let timeline = server
            .get("/v1/contacts/ada/events?name=bucket:entered:big-spenders")
            .await;
        assert_eq!(timeline["events"].as_array().unwrap().len(), 1, "{timeline}");

        // When the same plan is put again, then nothing moves
        assert_eq!(put("pro").await["transitions"], json!([]));

        // When she is put back on free, then she leaves and the leave reaction runs for her
        let downgraded = put("free").await;
        assert_eq!(downgraded["transitions"][0]["transition"], "left", "{downgraded}");
        assert_eq!(member().await["member"], false);
        let runs = server
            .eventually("the leave reaction to run", async || {
                let runs = server
                    .get("/v1/runs?journey=bucket-big-spenders-on-leave")
                    .await;
                let runs = runs["runs"].as_array().cloned().unwrap_or_default();
                (!runs.is_empty()).then_some(runs)
            })
            .await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["userId"], "ada");
    }
);

e2e!(
    put_creates_then_updates_a_contact_and_find_and_get_read_it,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let client = reqwest::Client::new();
        let put = async |body: serde_json::Value| {
            let response = client
                .put(server.url("/v1/contacts"))
                .bearer_auth(&server.key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        };
        let (status, created) = put(
            json!({"userId": "ada", "email": "Ada@Example.com", "properties": {"plan": "free"}}),
        )
        .await;
        assert_eq!((status, created["created"].clone()), (200, json!(true)));
        let (_, updated) =
            put(json!({"userId": "ada", "properties": {"plan": "pro", "team": "core"}})).await;
        assert_eq!(
            (updated["created"].clone(), updated["linked"].clone()),
            (json!(false), json!(true))
        );

        let found = server.get("/v1/contacts/find?email=ADA@example.com").await;
        assert_eq!(
            found["contacts"][0]["properties"],
            json!({"plan": "pro", "team": "core"})
        );
        let ada = server.get("/v1/contacts/ada").await;
        assert_eq!(ada["email"], "ada@example.com");
        assert!(ada["firstSeenAt"].is_string() && ada["lastSeenAt"].is_string());
        assert_eq!(ada["activeRuns"], json!([]));

        let (status, body) = put(json!({"properties": {"x": 1}})).await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/contacts/find",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 400);
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/contacts/nobody",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 404);
    }
);

e2e!(
    deleting_a_contact_exits_its_runs_stops_its_sends_and_erases_its_personal_data,
    |backend: Backend| async move {
        // Given a person in the middle of the welcome series
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            ..Default::default()
        })
        .await;
        let run = started_run(&server.send_event(json!({"name": "user.signed_up", "userId": "del-1", "email": "del@example.com", "contactProperties": {"name": "Del"}})).await);
        server.run_reaches(&run, "waiting").await;

        // When they are deleted
        let (status, body) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/contacts/del-1",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["contact"]["exitedRuns"], 1);

        // Then the run has exited and never sends its follow-up
        assert_eq!(server.run(&run).await["status"], "exited");
        server.advance_clock("3d").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // (their history moved to a key of its own: nothing is filed under the user id now)
        let by_user = server.get("/v1/emails?userId=del-1").await;
        assert_eq!(by_user["emails"], json!([]), "{by_user}");
        let emails = server.get("/v1/emails").await;
        assert_eq!(
            emails["emails"].as_array().unwrap().len(),
            1,
            "only the welcome that was already queued: {emails}"
        );
        // And no response carries their personal data any more
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/contacts/del-1",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 404);
        let text = format!("{}{}", server.run(&run).await, emails);
        assert!(
            !text.contains("del@example.com") && !text.contains("Del\""),
            "personal data leaked: {text}"
        );
        let found = server.get("/v1/contacts/find?email=del@example.com").await;
        assert_eq!(found["contacts"], json!([]));
        // And a later event with the same user id is a new person
        let again = server
            .send_event(json!({"name": "app.opened", "userId": "del-1"}))
            .await;
        assert_eq!(again["contactKey"], "del-1");
        assert_eq!(
            server.get("/v1/contacts/del-1").await["properties"],
            json!({})
        );
    }
);
