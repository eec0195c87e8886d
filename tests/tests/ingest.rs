//! Ingestion over HTTP: identity resolution across events, property bags, idempotency, batches
//! and group commit under concurrency.

mod support;

use serde_json::{Value, json};
use support::{Backend, Server, ServerOptions, started_run};

async fn contact(server: &Server, key: &str) -> Value {
    server.get(&format!("/v1/contacts/{key}")).await
}

e2e!(
    an_email_only_contact_that_later_gets_a_user_id_keeps_its_history_under_the_new_key,
    |backend: Backend| async move {
        // Given a person known only by email, with a waiting welcome run
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            ..Default::default()
        })
        .await;
        let first = server.send_event(json!({"name": "user.signed_up", "email": "Grace@Example.com", "contactProperties": {"name": "Grace"}})).await;
        let run = started_run(&first);
        let email_key = first["contactKey"].as_str().unwrap().to_owned();
        server.run_reaches(&run, "waiting").await;

        // When an event carries both the email and a user id
        let second = server.send_event(json!({"name": "app.opened", "email": "grace@example.com", "userId": "grace-1", "contactProperties": {"plan": "pro"}})).await;

        // Then the contact is now keyed by the user id, its properties merged
        assert_eq!(second["contactKey"], "grace-1");
        let grace = contact(&server, "grace-1").await;
        assert_eq!(grace["email"], "grace@example.com");
        assert_eq!(grace["properties"], json!({"name": "Grace", "plan": "pro"}));
        // And its run moved with it, and the old key still resolves
        assert_eq!(grace["activeRuns"][0]["id"], run.as_str());
        assert_eq!(contact(&server, &email_key).await["key"], "grace-1");
        let runs = server.get("/v1/runs?userId=grace-1").await;
        assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    }
);

e2e!(
    two_contacts_that_turn_out_to_be_one_person_are_merged_into_the_one_with_a_user_id,
    |backend: Backend| async move {
        // Given an anonymous visitor and a known user who are the same person
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        server.send_event(json!({"name": "page.viewed", "anonymousId": "anon-7", "contactProperties": {"referrer": "ads", "name": "old"}})).await;
        server.send_event(json!({"name": "app.opened", "userId": "lin", "email": "lin@example.com", "contactProperties": {"name": "Lin"}})).await;

        // When one event links the two
        let linked = server
            .send_event(json!({"name": "app.opened", "userId": "lin", "anonymousId": "anon-7"}))
            .await;

        // Then one contact survives: the one with the user id, with both property bags folded
        assert_eq!(linked["contactKey"], "lin");
        let lin = contact(&server, "lin").await;
        assert_eq!(lin["anonymousId"], "anon-7");
        assert_eq!(lin["properties"], json!({"referrer": "ads", "name": "Lin"}));
        let found = server
            .get("/v1/contacts/find?userId=lin&email=lin@example.com")
            .await;
        assert_eq!(found["contacts"].as_array().unwrap().len(), 1);
        // And the anonymous key resolves to the survivor
        assert_eq!(contact(&server, "anon-7").await["key"], "lin");
    }
);

e2e!(
    contact_properties_merge_with_null_removing_and_never_mix_with_event_properties,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        server.send_event(json!({"name": "a", "userId": "u1", "contactProperties": {"plan": "free", "age": 30}, "eventProperties": {"page": "/x"}})).await;
        server.send_event(json!({"name": "b", "userId": "u1", "contactProperties": {"plan": "pro", "age": null}})).await;
        let u1 = contact(&server, "u1").await;
        assert_eq!(u1["properties"], json!({"plan": "pro"}));
    }
);

e2e!(
    the_idempotency_header_wins_over_the_body_and_keys_are_per_tenant,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let first = server
            .send_event(json!({"name": "a", "userId": "u1", "idempotencyKey": "k-1"}))
            .await;
        // The header key differs from the body's: the header wins, so this is new
        let response = reqwest::Client::new()
            .post(server.url("/v1/events"))
            .bearer_auth(&server.key)
            .header("Idempotency-Key", "k-2")
            .json(&json!({"name": "a", "userId": "u1", "idempotencyKey": "k-1"}))
            .send()
            .await
            .unwrap();
        let second: Value = response.json().await.unwrap();
        assert_eq!(
            (first["stored"].clone(), second["stored"].clone()),
            (json!(true), json!(true))
        );
        // Another tenant may use the same key
        let other = support::tenant_key(&server, "acme", "ingest,read");
        let (status, body) = server
            .request(
                reqwest::Method::POST,
                "/v1/events",
                Some(json!({"name": "a", "userId": "u1", "idempotencyKey": "k-1"})),
                Some(&other),
            )
            .await;
        assert_eq!((status, body["stored"].clone()), (202, json!(true)));
    }
);

e2e!(
    a_batch_answers_per_item_and_one_bad_item_does_not_sink_the_others,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let (status, body) = server
            .post(
                "/v1/events/batch",
                json!({"events": [
                    {"name": "a", "userId": "b1", "idempotencyKey": "dup"},
                    {"name": "a"},
                    {"name": "a", "userId": "b2", "idempotencyKey": "dup"},
                    {"name": "a", "userId": "b3", "timestamp": "never"},
                    "not an object",
                    {"name": "a", "email": "b4@example.com", "eventProperties": {"n": 4}}
                ]}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let statuses: Vec<&str> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            [
                "stored",
                "invalid",
                "duplicate",
                "invalid",
                "invalid",
                "stored"
            ]
        );
        assert_eq!(body["results"][1]["field"], "userId");
        assert_eq!(body["results"][3]["field"], "timestamp");
        assert_eq!(body["results"][2]["eventId"], body["results"][0]["eventId"]);
        assert_eq!(
            body["summary"],
            json!({"stored": 2, "duplicate": 1, "invalid": 3, "error": 0})
        );

        let (status, body) = server
            .post(
                "/v1/events/batch",
                json!({"events": vec![json!({"name": "a", "userId": "x"}); 1001]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["details"]["field"], "events");
    }
);

e2e!(concurrent_first_events_for_one_new_person_create_exactly_one_contact_and_every_202_is_committed, |backend: Backend| async move {
    // Given many producers posting at once, half of them about one brand-new person
    let server = Server::start(ServerOptions { backend, ..Default::default() }).await;
    let client = reqwest::Client::new();
    let mut posts = Vec::new();
    for i in 0..64 {
        let body = if i % 2 == 0 {
            json!({"name": "app.opened", "userId": "newcomer", "email": "newcomer@example.com", "idempotencyKey": format!("e-{i}")})
        } else {
            json!({"name": "app.opened", "userId": format!("other-{i}"), "idempotencyKey": format!("e-{i}")})
        };
        let request = client.post(server.url("/v1/events")).bearer_auth(&server.key).json(&body);
        posts.push(tokio::spawn(async move { request.send().await.unwrap().status().as_u16() }));
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), 202);
    }
    // Then every accepted event is already visible, and the newcomer is one contact
    let found = server.get("/v1/contacts/find?userId=newcomer&email=newcomer@example.com").await;
    assert_eq!(found["contacts"].as_array().unwrap().len(), 1, "{found}");
    for i in (1..64).step_by(2) {
        assert_eq!(contact(&server, &format!("other-{i}")).await["key"], format!("other-{i}"));
    }
    // And replaying all of them stores none
    let (_, again) = server.post("/v1/events/batch", json!({"events": (0..64).map(|i| json!({"name": "app.opened", "userId": "newcomer", "idempotencyKey": format!("e-{i}")})).collect::<Vec<_>>()})).await;
    assert_eq!(again["summary"]["duplicate"], 64);
});
