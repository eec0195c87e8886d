//! Tenants and keys: the CLI and HTTP key management, scopes (401/403), per-key rate limits,
//! and matrices proving a key of one tenant can neither read nor write another's data, no
//! tenant key reaches the operator's routes, and no operator key reaches a tenant's.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, Server, ServerOptions, started_run, tenant_key};

e2e!(
    the_cli_creates_tenants_and_keys_and_revokes_them_while_the_server_runs,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        // Given a key created by the CLI for a new tenant
        let key = tenant_key(&server, "acme", "ingest,read");
        assert!(
            key.starts_with("wmk_"),
            "the last line is the key alone: {key:?}"
        );
        let (status, _) = server
            .request(
                Method::POST,
                "/v1/events",
                Some(json!({"name": "a", "userId": "u"})),
                Some(&key),
            )
            .await;
        assert_eq!(status, 202);
        // And creating the tenant again is harmless
        assert!(server.cli(&["tenant", "create", "acme"]).status.success());

        // When it is revoked through the CLI
        let keys_of_acme = {
            let admin = tenant_key(&server, "acme", "admin");
            server
                .request(Method::GET, "/v1/keys", None, Some(&admin))
                .await
                .1
        };
        let id = keys_of_acme["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["scopes"] == json!(["ingest", "read"]))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let revoked = server.cli(&["key", "revoke", &id]);
        assert!(
            revoked.status.success(),
            "{}",
            String::from_utf8_lossy(&revoked.stderr)
        );

        // Then it no longer authenticates
        let (status, body) = server
            .request(Method::GET, "/v1/runs", None, Some(&key))
            .await;
        assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));
        // And bad CLI input is refused with a clear message
        let bad = server.cli(&["key", "create", "--tenant", "acme", "--scopes", "root"]);
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope \"root\""));
        let missing = server.cli(&["key", "create", "--tenant", "nope", "--scopes", "read"]);
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no tenant named \"nope\""));
    }
);

e2e!(
    an_admin_key_manages_its_tenants_keys_over_http_and_scopes_gate_routes,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        // Given a read-only key made over HTTP
        let (status, created) = server
            .post(
                "/v1/keys",
                json!({"name": "dashboards", "scopes": ["read"]}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let reader = created["key"].as_str().unwrap().to_owned();

        // Then it may read but not ingest or manage keys
        assert_eq!(
            server
                .request(Method::GET, "/v1/runs", None, Some(&reader))
                .await
                .0,
            200
        );
        let (status, body) = server
            .request(
                Method::POST,
                "/v1/events",
                Some(json!({"name": "a", "userId": "u"})),
                Some(&reader),
            )
            .await;
        assert_eq!(
            (status, body["error"].clone()),
            (403, json!("Forbidden: insufficient scope"))
        );
        assert_eq!(
            server
                .request(
                    Method::POST,
                    "/v1/keys",
                    Some(json!({"name": "x", "scopes": ["admin"]})),
                    Some(&reader)
                )
                .await
                .0,
            403
        );
        // And the secret is never listed
        let listed = server.get("/v1/keys").await;
        assert!(!listed.to_string().contains(&reader));

        // When the admin revokes it
        let id = created["id"].as_str().unwrap();
        let (status, _) = server
            .request(
                Method::DELETE,
                &format!("/v1/keys/{id}"),
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            server
                .request(Method::GET, "/v1/runs", None, Some(&reader))
                .await
                .0,
            401
        );
        // And bad requests name the field
        let (status, body) = server
            .post("/v1/keys", json!({"name": "x", "scopes": ["superuser"]}))
            .await;
        assert_eq!(
            (status, body["details"]["field"].clone()),
            (400, json!("scopes"))
        );
    }
);

e2e!(
    a_key_of_one_tenant_can_neither_read_nor_write_anything_of_another,
    |backend: Backend| async move {
        // Given tenant A (the default tenant) with a contact, a waiting run, an email and keys
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            ..Default::default()
        })
        .await;
        let a = server.key.clone();
        let run = started_run(&server.send_event(json!({"name": "user.signed_up", "userId": "alice", "email": "alice@example.com", "contactProperties": {"secret": "A"}})).await);
        server.run_reaches(&run, "waiting").await;
        let a_keys = server.get("/v1/keys").await;
        let a_key_id = a_keys["keys"][0]["id"].as_str().unwrap().to_owned();

        // And tenant B with an all-scopes key
        let b = tenant_key(&server, "tenant-b", "ingest,read,admin,deploy");
        let as_b = async |method: Method, path: &str, body: Option<Value>| {
            server.request(method, path, body, Some(&b)).await
        };

        // Then B reads nothing of A's
        assert_eq!(
            as_b(Method::GET, "/v1/runs", None).await.1["runs"],
            json!([])
        );
        assert_eq!(
            as_b(Method::GET, &format!("/v1/runs/{run}"), None).await.0,
            404
        );
        assert_eq!(
            as_b(Method::GET, "/v1/runs?userId=alice", None).await.1["runs"],
            json!([])
        );
        assert_eq!(
            as_b(Method::GET, "/v1/emails?to=alice@example.com", None)
                .await
                .1["emails"],
            json!([])
        );
        assert_eq!(
            as_b(Method::GET, "/v1/emails?userId=alice", None).await.1["emails"],
            json!([])
        );
        assert_eq!(as_b(Method::GET, "/v1/contacts/alice", None).await.0, 404);
        assert_eq!(
            as_b(
                Method::GET,
                "/v1/contacts/find?userId=alice&email=alice@example.com",
                None
            )
            .await
            .1["contacts"],
            json!([])
        );
        let b_keys = as_b(Method::GET, "/v1/keys", None).await.1;
        assert!(!b_keys.to_string().contains(&a_key_id));

        // And B changes nothing of A's
        assert_eq!(
            as_b(Method::DELETE, "/v1/contacts/alice", None).await.0,
            404
        );
        assert_eq!(
            as_b(Method::DELETE, &format!("/v1/keys/{a_key_id}"), None)
                .await
                .0,
            404
        );
        let (status, b_alice) = as_b(Method::POST, "/v1/events", Some(json!({"name": "user.signed_up", "userId": "alice", "contactProperties": {"secret": "B"}}))).await;
        assert_eq!(status, 202);
        assert_eq!(
            b_alice["started"],
            json!([]),
            "B has no modules, so nothing starts"
        );
        let client = reqwest::Client::new();
        let put = client
            .put(server.url("/v1/contacts"))
            .bearer_auth(&b)
            .json(&json!({"userId": "alice", "properties": {"secret": "B2"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 200);

        // And A's data is as it was, and A's key still works
        let alice = server
            .request(Method::GET, "/v1/contacts/alice", None, Some(&a))
            .await
            .1;
        assert_eq!(alice["properties"], json!({"secret": "A"}));
        assert_eq!(alice["activeRuns"][0]["id"], run.as_str());
        assert_eq!(server.run(&run).await["status"], "waiting");
        // And B's alice is B's own
        assert_eq!(
            as_b(Method::GET, "/v1/contacts/alice", None).await.1["properties"],
            json!({"secret": "B2"})
        );
    }
);

/// Every operator route, with a body where it takes one.
fn operator_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/tenants", None),
        (
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "intruder"})),
        ),
        (Method::GET, "/v1/tenants/tenant-b", None),
        (Method::POST, "/v1/tenants/tenant-b/suspend", None),
        (Method::POST, "/v1/tenants/tenant-b/resume", None),
        (Method::DELETE, "/v1/tenants/tenant-b", None),
        (Method::GET, "/v1/tenants/tenant-b/limits", None),
        (
            Method::PATCH,
            "/v1/tenants/tenant-b/limits",
            Some(json!({"cpuBudgetMs": 100})),
        ),
        (Method::GET, "/v1/tenants/tenant-b/usage", None),
        (Method::GET, "/v1/usage/tenants", None),
    ]
}

e2e!(
    no_tenant_key_reaches_an_operator_route_and_no_operator_key_reaches_a_tenant_route,
    |backend: Backend| async move {
        // Given the default tenant's all-scopes admin key, tenant B's all-scopes key, and the
        // operator key first boot wrote
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let b = tenant_key(&server, "tenant-b", "ingest,read,admin,deploy");
        let operator = server.operator_key();

        // Then every operator route refuses every tenant key (403, naming why), and a
        // missing or unknown key (401)
        for (method, path, body) in operator_routes() {
            for key in [&server.key, &b] {
                let (status, answer) = server
                    .request(method.clone(), path, body.clone(), Some(key))
                    .await;
                assert_eq!(status, 403, "{method} {path}: {answer}");
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap()
                        .contains("need an operator key"),
                    "{answer}"
                );
            }
            for key in [None, Some("wmk_nonsense")] {
                let (status, _) = server
                    .request(method.clone(), path, body.clone(), key)
                    .await;
                assert_eq!(status, 401, "{method} {path} with {key:?}");
            }
        }
        // And nothing was changed by them
        let (_, tenants) = server
            .request(Method::GET, "/v1/tenants", None, Some(&operator))
            .await;
        let tenants = tenants["tenants"].as_array().unwrap().clone();
        assert_eq!(tenants.len(), 2, "{tenants:?}");
        assert!(tenants.iter().all(|t| t["status"] == "active"));
        let (_, limits) = server
            .request(
                Method::GET,
                "/v1/tenants/tenant-b/limits",
                None,
                Some(&operator),
            )
            .await;
        assert_eq!(limits["own"]["cpuBudgetMs"], Value::Null, "{limits}");

        // And the operator key reaches no tenant route (it is no tenant's key)
        for (method, path, body) in [
            (Method::GET, "/v1/runs", None),
            (Method::GET, "/v1/keys", None),
            (Method::GET, "/v1/limits", None),
            (Method::GET, "/v1/usage", None),
            (Method::GET, "/v1/contacts/alice", None),
            (
                Method::POST,
                "/v1/events",
                Some(json!({"name": "a", "userId": "u"})),
            ),
            (
                Method::POST,
                "/v1/keys",
                Some(json!({"name": "x", "scopes": ["admin"]})),
            ),
        ] {
            let (status, answer) = server
                .request(method.clone(), path, body, Some(&operator))
                .await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap()
                    .contains("operator key reaches only the operator routes"),
                "{answer}"
            );
        }

        // And the CLI makes operator keys, printed once, which it revokes like any key
        let made = server.cli(&["key", "create", "--operator", "--name", "ci"]);
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let stdout = String::from_utf8(made.stdout).unwrap();
        let secret = stdout.lines().last().unwrap().trim().to_owned();
        let id = stdout
            .split_whitespace()
            .nth(3)
            .unwrap()
            .trim_end_matches(';')
            .to_owned();
        let list = async |key: &str| {
            server
                .request(Method::GET, "/v1/tenants", None, Some(key))
                .await
                .0
        };
        assert_eq!(list(&secret).await, 200);
        let revoked = server.cli(&["key", "revoke", &id]);
        assert!(
            revoked.status.success(),
            "{}",
            String::from_utf8_lossy(&revoked.stderr)
        );
        assert_eq!(list(&secret).await, 401);
        assert_eq!(list(&operator).await, 200);
        let both = server.cli(&["key", "create", "--operator", "--tenant", "tenant-b"]);
        assert!(!both.status.success(), "--operator takes no tenant");
    }
);

e2e!(
    a_key_over_its_rate_limit_gets_429_with_retry_after,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            extra_args: vec![
                "--rate-limit".into(),
                "1".into(),
                "--rate-limit-burst".into(),
                "3".into(),
            ],
            ..Default::default()
        })
        .await;
        // Given a fresh key: the harness's own key already spent tokens waiting for boot
        let key = tenant_key(&server, "limited", "read");
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..6 {
            let response = client
                .get(server.url("/v1/runs"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
            last = Some(response);
        }
        assert_eq!(&statuses[..3], [200, 200, 200]);
        assert_eq!(statuses[5], 429, "{statuses:?}");
        let last = last.unwrap();
        let retry_after: u64 = last.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry_after));
        let body: Value = last.json().await.unwrap();
        assert_eq!(body["error"], "Rate limit exceeded");
        // Health is never limited
        assert_eq!(
            server
                .request(Method::GET, "/v1/health", None, None)
                .await
                .0,
            200
        );
    }
);
