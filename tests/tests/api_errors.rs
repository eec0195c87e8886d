//! The HTTP surface's refusals: authentication, bad input, unknown routes, dev-only routes.
//! Every error is JSON `{ "error": … }` and client input never produces a 500.

mod support;

use reqwest::Method;
use serde_json::json;
use support::{Backend, Server, ServerOptions};

e2e!(
    requests_without_a_valid_key_are_401_and_health_needs_none,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;

        let (status, body) = server
            .request(
                Method::POST,
                "/v1/events",
                Some(json!({"name": "x", "userId": "u"})),
                None,
            )
            .await;
        assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));

        let (status, body) = server
            .request(Method::GET, "/v1/runs", None, Some("wmk_not_a_real_key"))
            .await;
        assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));

        let (status, body) = server.request(Method::GET, "/v1/health", None, None).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");

        // The first-boot admin key is readable by its owner only
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.data_dir.path().join("admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
);

e2e!(
    bad_json_is_400_with_a_json_error_body,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let response = reqwest::Client::new()
            .post(server.url("/v1/events"))
            .bearer_auth(&server.key)
            .header("content-type", "application/json")
            .body("{\"name\": \"user.signed_up\", ")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "the body is not valid JSON");
        assert!(body["details"]["reason"].is_string(), "{body}");
    }
);

e2e!(
    invalid_events_are_400_naming_the_field,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;

        let (status, body) = server.post("/v1/events", json!({"userId": "u1"})).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["details"]["reason"].as_str().unwrap().contains("name"),
            "{body}"
        );

        let (status, body) = server.post("/v1/events", json!({"name": "x"})).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "email or userId is required");

        let (status, body) = server
            .post("/v1/events", json!({"name": "x", "email": "not-an-email"}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["field"], "email");

        let (status, body) = server
            .post(
                "/v1/events",
                json!({"name": "x", "userId": "u", "timestamp": "yesterday"}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["field"], "timestamp");

        let (status, body) = server
            .post(
                "/v1/events",
                json!({"name": "x", "userId": "u", "eventProperties": [1, 2]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");

        let (status, body) = server
            .request(
                Method::GET,
                "/v1/runs?status=sleeping",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["field"], "status");
    }
);

e2e!(
    the_event_alias_is_accepted_for_name,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let (status, body) = server
            .post("/v1/events", json!({"event": "app.opened", "userId": "u1"}))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["stored"], true);
    }
);

e2e!(
    unknown_routes_are_404_json_and_the_clock_route_exists_only_in_dev_mode,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            dev: false,
            ..Default::default()
        })
        .await;
        let (status, body) = server
            .request(Method::GET, "/v1/nothing-here", None, Some(&server.key))
            .await;
        assert_eq!((status, body), (404, json!({"error": "Not Found"})));
        let (status, _) = server
            .post("/v1/admin/clock/advance", json!({"by": "2d"}))
            .await;
        assert_eq!(status, 404);

        let dev = Server::start(ServerOptions {
            backend,
            dev: true,
            ..Default::default()
        })
        .await;
        let (status, body) = dev
            .post("/v1/admin/clock/advance", json!({"by": "soon"}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["field"], "by");
        let (status, body) = dev
            .post("/v1/admin/clock/advance", json!({"by": "1h"}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["offsetMs"], 3_600_000);

        // An advance past the clock's maximum (a hundred years ahead) is refused, naming it,
        // and leaves a data dir the host starts on
        let (status, body) = dev
            .post("/v1/admin/clock/advance", json!({"by": "300000000y"}))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["details"]["field"], "by");
        assert!(
            body["error"].as_str().unwrap().contains("100years"),
            "{body}"
        );
        let (status, _) = dev
            .post("/v1/admin/clock/advance", json!({"by": "99y"}))
            .await;
        assert_eq!(status, 200);
        let (status, body) = dev
            .post("/v1/admin/clock/advance", json!({"by": "2y"}))
            .await;
        assert_eq!(status, 400, "{body}");
        let mut dev = dev;
        dev.restart().await;
        assert_eq!(dev.get("/v1/health").await["status"], "ok");
    }
);

e2e!(an_oversized_body_is_413, |backend: Backend| async move {
    let server = Server::start(ServerOptions {
        backend,
        extra_args: vec!["--max-body-bytes".into(), "1024".into()],
        ..Default::default()
    })
    .await;
    let big = "x".repeat(4096);
    let (status, body) = server
        .post(
            "/v1/events",
            json!({"name": "x", "userId": "u", "eventProperties": {"blob": big}}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].is_string());
});

e2e!(
    a_nul_character_anywhere_is_a_400_naming_where_it_is,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let cases: Vec<(reqwest::Method, &str, Option<serde_json::Value>, &str)> = vec![
            (reqwest::Method::GET, "/v1/runs/a%00b", None, "path"),
            (reqwest::Method::GET, "/v1/contacts/a%00b", None, "path"),
            (
                reqwest::Method::GET,
                "/v1/runs?journey=x%00",
                None,
                "journey",
            ),
            (
                reqwest::Method::GET,
                "/v1/contacts/find?email=a%00@x.io",
                None,
                "email",
            ),
            (
                reqwest::Method::PUT,
                "/v1/templates/hello",
                Some(json!({ "subject": "hi\u{0}", "text": "t" })),
                "subject",
            ),
            (
                reqwest::Method::PUT,
                "/v1/contacts",
                Some(json!({ "userId": "ada", "properties": { "plan": ["pro", "a\u{0}"] } })),
                "properties.plan[1]",
            ),
            (
                reqwest::Method::POST,
                "/v1/keys",
                Some(json!({ "name": "k\u{0}", "scopes": ["read"] })),
                "name",
            ),
        ];
        for (method, path, body, field) in cases {
            let (status, answer) = server.request(method, path, body, Some(&server.key)).await;
            assert_eq!(status, 400, "{path}: {answer}");
            assert_eq!(answer["details"]["field"], field, "{path}: {answer}");
        }
        // And in a batch, the event with a NUL is refused alone, naming its field
        let (status, answer) = server
            .post(
                "/v1/events/batch",
                json!({ "events": [{ "name": "ok", "userId": "a" }, { "name": "x\u{0}", "userId": "b" }] }),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["results"][0]["status"], "stored", "{answer}");
        assert_eq!(answer["results"][1]["field"], "name", "{answer}");
        // And nothing of the refused requests was stored
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/templates/hello",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 404);
    }
);

e2e!(
    a_runs_timeline_and_the_journeys_list_come_in_pages,
    |backend: Backend| async move {
        // Given a run of steps v1 asleep after two steps
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["steps-v1"],
            ..Default::default()
        })
        .await;
        let run = support::started_run(
            &server
                .send_event(
                    json!({"name": "test.steps", "userId": "ada", "email": "ada@example.com"}),
                )
                .await,
        );
        let detail = server.run_reaches(&run, "waiting").await;
        assert_eq!(
            detail["timelinePage"],
            json!({ "from": 0, "limit": 100, "total": 2, "next": null })
        );

        // When it is read a step at a time
        let first = server.get(&format!("/v1/runs/{run}?limit=1")).await;
        let second = server.get(&format!("/v1/runs/{run}?from=1&limit=1")).await;

        // Then each page holds one step and points at the next
        assert_eq!(first["timeline"].as_array().unwrap().len(), 1);
        assert_eq!(first["timelinePage"]["next"], 1);
        assert_eq!(second["timeline"][0]["step"], "sleep", "{second}");
        assert_eq!(second["timelinePage"]["next"], json!(null));

        // And the journeys list comes in pages too
        let listed = server.get("/v1/journeys?limit=1").await;
        assert_eq!(listed["journeys"][0]["id"], "steps");
        assert_eq!(
            listed["page"],
            json!({ "from": 0, "limit": 1, "total": 1, "next": null })
        );
    }
);
