//! Per-tenant limits, end to end: the operator reads and changes a tenant's limits (bad input
//! refused whole, naming the field), a tenant's lowered CPU budget, memory cap and step cap
//! fail its own guests while another tenant keeps the host's defaults, a tenant's ingest rate
//! refuses what is over it and a raise lifts it at once, a deploy past the tenant's total
//! module size is refused, and a change made through one host applies on another without a
//! restart.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Backend, Server, ServerOptions, module_bytes, postgres_url, started_run};

/// Create tenant `name` as the operator; its id and admin key (every scope).
async fn create_tenant(server: &Server, operator: &str, name: &str) -> (String, String) {
    let (status, created) = server
        .request(
            Method::POST,
            "/v1/tenants",
            Some(json!({ "name": name })),
            Some(operator),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["adminKey"]["key"].as_str().unwrap().to_owned(),
    )
}

/// `PATCH /v1/tenants/{tenant}/limits` as the operator.
async fn patch_limits(server: &Server, operator: &str, tenant: &str, body: Value) -> (u16, Value) {
    server
        .request(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}/limits"),
            Some(body),
            Some(operator),
        )
        .await
}

async fn get_limits(server: &Server, operator: &str, tenant: &str) -> Value {
    let (status, body) = server
        .request(
            Method::GET,
            &format!("/v1/tenants/{tenant}/limits"),
            None,
            Some(operator),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The reason a run failed, once it has.
async fn failure(server: &Server, run: &str, key: &str) -> String {
    let path = format!("/v1/runs/{run}");
    server
        .eventually(&format!("run {run} to fail"), async || {
            let (_, detail) = server.request(Method::GET, &path, None, Some(key)).await;
            (detail["status"] == "failed").then(|| detail["error"].as_str().unwrap().to_owned())
        })
        .await
}

/// Post one event as `key`; the status, the `Retry-After` header and the body.
async fn post_event(server: &Server, key: &str, body: Value) -> (u16, Option<String>, Value) {
    let response = support::http_client()
        .post(server.url("/v1/events"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

e2e!(
    an_operator_reads_and_changes_a_tenants_limits_and_bad_input_changes_nothing,
    |backend: Backend| async move {
        // Given a host with the default limits (and a total module size of 100 MB), and
        // tenant acme
        let server = Server::start(ServerOptions {
            backend,
            extra_args: vec!["--tenant-module-bytes".into(), "100000000".into()],
            ..Default::default()
        })
        .await;
        let operator = server.operator_key();
        let (id, key) = create_tenant(&server, &operator, "acme").await;

        // Then it has the host's defaults, none of them its own
        let fresh = get_limits(&server, &operator, "acme").await;
        assert_eq!(
            fresh["defaults"],
            json!({"activationsInFlight": 32, "cpuBudgetMs": 2000, "memoryMb": 128,
                   "ingestRate": 10000, "ingestBurst": 20000, "moduleBytes": 100000000,
                   "runSteps": 10000})
        );
        assert_eq!(fresh["limits"], fresh["defaults"]);
        assert!(
            fresh["own"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_null)
        );
        assert_eq!(fresh["updatedAt"], Value::Null);

        // When the operator sets its CPU budget and steps, by name
        let (status, set) = patch_limits(
            &server,
            &operator,
            "acme",
            json!({"cpuBudgetMs": 500, "runSteps": 100}),
        )
        .await;

        // Then those apply, as its own, and the rest stay the host's
        assert_eq!(status, 200, "{set}");
        assert_eq!(set["limits"]["cpuBudgetMs"], 500);
        assert_eq!(set["limits"]["runSteps"], 100);
        assert_eq!(set["limits"]["memoryMb"], 128);
        assert_eq!(set["own"]["cpuBudgetMs"], 500);
        assert_eq!(set["own"]["memoryMb"], Value::Null);
        assert!(set["updatedAt"].is_string());
        assert_eq!(get_limits(&server, &operator, &id).await, set);
        // And the tenant reads the same with its own key
        let (status, own) = server
            .request(Method::GET, "/v1/limits", None, Some(&key))
            .await;
        assert_eq!((status, &own), (200, &set));

        // When bad bodies are sent, each is a 400 naming the field, and nothing is applied
        for (body, field, says) in [
            (json!({"cpuBudget": 5}), Some("cpuBudget"), "the limits are"),
            (
                json!({"cpuBudgetMs": "fast"}),
                Some("cpuBudgetMs"),
                "from 10 to 10000",
            ),
            (
                json!({"cpuBudgetMs": 60_000}),
                Some("cpuBudgetMs"),
                "--activation-timeout",
            ),
            (
                json!({"memoryMb": 4096}),
                Some("memoryMb"),
                "instance pool was sized for",
            ),
            (json!({"runSteps": 0}), Some("runSteps"), "from 1 to"),
            (
                json!({"ingestRate": -1}),
                Some("ingestRate"),
                "0 is unlimited",
            ),
            (
                json!({"activationsInFlight": 1.5}),
                Some("activationsInFlight"),
                "got 1.5",
            ),
            // The good field beside a bad one is not applied either
            (
                json!({"runSteps": 7, "moduleBytes": 0}),
                Some("moduleBytes"),
                "from 1 to",
            ),
            (json!([{"runSteps": 7}]), None, "JSON object of limits"),
        ] {
            let (status, refused) = patch_limits(&server, &operator, "acme", body.clone()).await;
            assert_eq!(status, 400, "{body}: {refused}");
            assert_eq!(
                refused["details"]["field"].as_str(),
                field,
                "{body}: {refused}"
            );
            assert!(
                refused["error"].as_str().unwrap().contains(says),
                "{body}: {refused}"
            );
        }
        assert_eq!(get_limits(&server, &operator, "acme").await, set);
        // And an unknown tenant is a 404
        let (status, _) = patch_limits(&server, &operator, "nobody", json!({"runSteps": 5})).await;
        assert_eq!(status, 404);
        let (status, _) = server
            .request(
                Method::GET,
                "/v1/tenants/nobody/limits",
                None,
                Some(&operator),
            )
            .await;
        assert_eq!(status, 404);

        // When its CPU budget is returned to the host's default (null), and the rest left out
        let (_, reset) = patch_limits(&server, &operator, &id, json!({"cpuBudgetMs": null})).await;

        // Then the default applies again and the steps stay its own
        assert_eq!(reset["limits"]["cpuBudgetMs"], 2000);
        assert_eq!(reset["own"]["cpuBudgetMs"], Value::Null);
        assert_eq!(reset["own"]["runSteps"], 100);

        // Given a total module size that fits one module but not two
        let (ok_fast, spin) = (module_bytes("ok-fast"), module_bytes("spin-forever"));
        let limit = ok_fast.len().max(spin.len()) + 1_000;
        assert!(ok_fast.len() + spin.len() > limit, "the two must not fit");
        patch_limits(&server, &operator, "acme", json!({"moduleBytes": limit})).await;
        let (status, body) = server.upload_module("ok-fast", ok_fast.clone(), &key).await;
        assert!(status == 200 || status == 201, "{status} {body}");

        // When a second module would take the total over it
        let (status, refused) = server.upload_module("spin", spin.clone(), &key).await;

        // Then it is refused, naming the limit and the total, and nothing is stored
        assert_eq!(status, 409, "{refused}");
        let message = refused["error"].as_str().unwrap();
        assert!(
            message.contains(&format!("over its limit of {limit} bytes"))
                && message.contains(&format!("they total {} bytes now", ok_fast.len())),
            "{message}"
        );
        let (_, modules) = server
            .request(Method::GET, "/v1/modules", None, Some(&key))
            .await;
        let names: Vec<&str> = modules["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ok-fast"], "{modules}");
        // And a new version of the module in place counts instead of the old one
        let (status, body) = server.upload_module("ok-fast", spin, &key).await;
        assert!(status == 200 || status == 201, "{status} {body}");
    }
);

e2e!(
    a_tenants_lowered_cpu_memory_and_step_limits_fail_its_guests_while_another_keeps_the_defaults,
    |backend: Backend| async move {
        // Given a host whose defaults are a 1 s CPU budget and 64 MiB, whose default tenant
        // has the hostile guests and the welcome series, and tenant acme with the same
        let modules = vec!["spin-forever", "memory-hog", "welcome-series"];
        let server = Server::start(ServerOptions {
            backend,
            modules: modules.clone(),
            extra_args: vec![
                "--cpu-budget".into(),
                "1s".into(),
                "--memory-limit-mb".into(),
                "64".into(),
            ],
            ..Default::default()
        })
        .await;
        let operator = server.operator_key();
        let (_, acme) = create_tenant(&server, &operator, "acme").await;
        for module in &modules {
            let (status, body) = server
                .upload_module(module, module_bytes(module), &acme)
                .await;
            assert!(status == 200 || status == 201, "{module}: {status} {body}");
        }

        // When the operator lowers acme's CPU budget, memory cap and steps per run
        let (status, body) = patch_limits(
            &server,
            &operator,
            "acme",
            json!({"cpuBudgetMs": 200, "memoryMb": 16, "runSteps": 1}),
        )
        .await;
        assert_eq!(status, 200, "{body}");

        // And each guest runs once for acme and once for the default tenant
        let start = async |key: &str, name: &str| {
            let event = json!({"name": name, "userId": "mallory", "email": "m@example.com"});
            let (status, answer) = server
                .request(Method::POST, "/v1/events", Some(event), Some(key))
                .await;
            assert_eq!(status, 202, "{answer}");
            started_run(&answer)
        };
        let default_key = server.key.clone();
        let mut runs = Vec::new();
        for key in [&acme, &default_key] {
            runs.push((
                start(key, "test.spin_forever").await,
                start(key, "test.memory_hog").await,
                start(key, "user.signed_up").await,
            ));
        }
        let [(acme_spin, acme_hog, acme_welcome), (spin, hog, welcome)] =
            <[_; 2]>::try_from(runs).unwrap();

        // Then acme's runs fail under acme's limits, each naming it
        let reason = failure(&server, &acme_spin, &acme).await;
        assert!(reason.contains("CPU budget of 200ms"), "{reason}");
        let reason = failure(&server, &acme_hog, &acme).await;
        assert!(reason.contains("memory limit of 16 MiB"), "{reason}");
        let reason = failure(&server, &acme_welcome, &acme).await;
        assert!(reason.contains("cap of 1 journal steps"), "{reason}");

        // And the default tenant's run under the host's defaults
        let reason = failure(&server, &spin, &default_key).await;
        assert!(reason.contains("CPU budget of 1s"), "{reason}");
        let reason = failure(&server, &hog, &default_key).await;
        assert!(reason.contains("memory limit of 64 MiB"), "{reason}");
        server.run_reaches(&welcome, "waiting").await;
    }
);

e2e!(
    a_tenant_over_its_ingest_rate_gets_429_while_another_ingests_and_a_raise_lifts_it_at_once,
    |backend: Backend| async move {
        // Given tenant acme at 1 event per second with bursts of 2
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let operator = server.operator_key();
        let (_, acme) = create_tenant(&server, &operator, "acme").await;
        let (status, body) = patch_limits(
            &server,
            &operator,
            "acme",
            json!({"ingestRate": 1, "ingestBurst": 2}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let event = |n: usize| json!({"name": "visited", "userId": format!("u{n}")});

        // When it sends three events at once
        let mut answers = Vec::new();
        for n in 0..3 {
            answers.push(post_event(&server, &acme, event(n)).await);
        }

        // Then the first two are taken and the third is a 429 naming its limit, with a retry time
        assert_eq!(answers[0].0, 202, "{:?}", answers[0]);
        assert_eq!(answers[1].0, 202, "{:?}", answers[1]);
        let (status, retry_after, refused) = &answers[2];
        assert_eq!(*status, 429, "{refused}");
        let retry_after: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("1 event per second with bursts of 2"),
            "{refused}"
        );
        // And a batch larger than its burst could never pass: a 400 naming the field
        let (status, body) = server
            .request(
                Method::POST,
                "/v1/events/batch",
                Some(json!({"events": [event(3), event(4), event(5)]})),
                Some(&acme),
            )
            .await;
        assert_eq!(
            (status, &body["details"]["field"]),
            (400, &json!("events")),
            "{body}"
        );

        // And the default tenant ingests on at the host's default rate
        for n in 0..5 {
            let (status, _, body) = post_event(&server, &server.key, event(n)).await;
            assert_eq!(status, 202, "{body}");
        }

        // When the operator raises acme's rate (0: unlimited)
        patch_limits(&server, &operator, "acme", json!({"ingestRate": 0})).await;

        // Then its next events are taken at once, without a restart
        let batch: Vec<Value> = (10..60).map(event).collect();
        let (status, body) = server
            .request(
                Method::POST,
                "/v1/events/batch",
                Some(json!({"events": batch})),
                Some(&acme),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["summary"]["stored"], 50);
    }
);

#[tokio::test]
async fn a_limit_changed_through_one_host_applies_on_another_without_a_restart() {
    if postgres_url().is_none() {
        eprintln!("skipped: set WAYMARK_TEST_DATABASE_URL to run the several-hosts tests");
        return;
    }
    // Given two hosts on one PostgreSQL database, and tenant acme ingesting through the second
    let first = Server::start(ServerOptions {
        backend: Backend::Postgres,
        ..Default::default()
    })
    .await;
    let second = first.start_peer("second").await;
    let operator = first.operator_key();
    let (_, acme) = create_tenant(&first, &operator, "acme").await;
    let event = json!({"name": "visited", "userId": "ada"});
    for _ in 0..3 {
        let (status, _, body) = post_event(&second, &acme, event.clone()).await;
        assert_eq!(status, 202, "{body}");
    }

    // When the operator lowers acme's rate through the first host
    let (status, body) = patch_limits(
        &first,
        &operator,
        "acme",
        json!({"ingestRate": 1, "ingestBurst": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let changed = Instant::now();

    // Then the second host refuses acme's events over it within a few seconds
    let refused = second
        .eventually_within(
            "the second host to apply acme's new rate",
            Duration::from_secs(10),
            async || {
                let (status, _, body) = post_event(&second, &acme, event.clone()).await;
                if status == 429 {
                    return Some(body);
                }
                assert_eq!(status, 202, "{body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            },
        )
        .await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("1 event per second with bursts of 1"),
        "{refused}"
    );
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    eprintln!("the second host applied the change after {took:?}");

    // And when the operator raises it again through the first host, the second follows
    patch_limits(
        &first,
        &operator,
        "acme",
        json!({"ingestRate": null, "ingestBurst": null}),
    )
    .await;
    second
        .eventually_within(
            "the second host to lift acme's rate",
            Duration::from_secs(10),
            async || {
                let statuses: Vec<u16> = three_events(&second, &acme, &event).await;
                statuses.iter().all(|s| *s == 202).then_some(())
            },
        )
        .await;
}

/// Three events in a row as `key`: their statuses.
async fn three_events(server: &Server, key: &str, event: &Value) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post_event(server, key, event.clone()).await.0);
    }
    statuses
}
