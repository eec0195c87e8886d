//! The operator API, end to end: an operator key creates a tenant (and its first admin key),
//! suspends it (its keys are refused and its due runs wait), resumes it (nothing was lost)
//! and deletes it once suspended (its key is refused, and no row of it remains in any table).

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::catalog::tenant_rows;
use support::{Backend, Server, ServerOptions, module_bytes, started_run};

e2e!(
    an_operator_creates_suspends_resumes_and_deletes_a_tenant_and_nothing_of_it_is_left,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let operator = server.operator_key();
        // The default tenant has a person of its own, which nothing below may touch
        server
            .send_event(json!({"name": "visited", "userId": "bob"}))
            .await;
        let as_operator = async |method: Method, path: &str, body: Option<Value>| {
            server.request(method, path, body, Some(&operator)).await
        };

        // When the operator creates tenant acme
        let (status, created) =
            as_operator(Method::POST, "/v1/tenants", Some(json!({"name": "acme"}))).await;

        // Then it is active, with an admin key of every scope shown this once
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["name"], "acme");
        assert_eq!(created["status"], "active");
        assert_eq!(created["suspendedAt"], Value::Null);
        assert_eq!(
            created["adminKey"]["scopes"],
            json!(["ingest", "read", "admin", "deploy"])
        );
        let id = created["id"].as_str().unwrap().to_owned();
        let key = created["adminKey"]["key"].as_str().unwrap().to_owned();
        let (_, listed) = as_operator(Method::GET, "/v1/tenants", None).await;
        let names: Vec<&str> = listed["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["default", "acme"]);
        assert!(
            !listed.to_string().contains(&key),
            "the secret is never listed"
        );
        // And bad input is a 4xx naming the field, with nothing made
        let (status, body) =
            as_operator(Method::POST, "/v1/tenants", Some(json!({"name": "acme"}))).await;
        assert_eq!((status, &body["details"]["field"]), (409, &json!("name")));
        let (status, body) =
            as_operator(Method::POST, "/v1/tenants", Some(json!({"name": "a b"}))).await;
        assert_eq!((status, &body["details"]["field"]), (400, &json!("name")));
        let (status, _) = as_operator(Method::GET, "/v1/tenants/nobody", None).await;
        assert_eq!(status, 404);
        let (_, listed) = as_operator(Method::GET, "/v1/tenants", None).await;
        assert_eq!(listed["tenants"].as_array().unwrap().len(), 2);

        // Given acme, with its key, deploys the welcome series and a person signs up
        let (status, deployed) = server
            .upload_module("welcome-series", module_bytes("welcome-series"), &key)
            .await;
        assert!(status == 200 || status == 201, "{status} {deployed}");
        let signup = json!({"name": "user.signed_up", "userId": "ada", "email": "ada@example.com"});
        let (status, answer) = server
            .request(Method::POST, "/v1/events", Some(signup.clone()), Some(&key))
            .await;
        assert_eq!(status, 202, "{answer}");
        let run = started_run(&answer);
        let run_path = format!("/v1/runs/{run}");
        server
            .eventually("the run to wait two days", async || {
                let (_, detail) = server
                    .request(Method::GET, &run_path, None, Some(&key))
                    .await;
                (detail["status"] == "waiting").then_some(())
            })
            .await;
        let activations = |server: &Server| {
            server
                .committed_activations()
                .into_iter()
                .filter(|r| *r == run)
                .count()
        };
        let before = activations(&server);

        // When the operator suspends it, by name, twice
        let (status, suspended) = as_operator(Method::POST, "/v1/tenants/acme/suspend", None).await;
        let (_, again) = as_operator(Method::POST, "/v1/tenants/acme/suspend", None).await;

        // Then it is suspended since the first time, and its key is refused, ingest included
        assert_eq!(status, 200);
        assert_eq!(suspended["status"], "suspended");
        assert!(suspended["suspendedAt"].is_string());
        assert_eq!(again["suspendedAt"], suspended["suspendedAt"]);
        for (method, path, body) in [
            (Method::GET, run_path.as_str(), None),
            (Method::POST, "/v1/events", Some(signup.clone())),
        ] {
            let (status, body) = server.request(method, path, body, Some(&key)).await;
            assert_eq!(
                (status, body),
                (403, json!({"error": "tenant acme is suspended"}))
            );
        }
        // And its run, due once the clock passes its two days, does not activate
        server.advance_clock("3d").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            activations(&server),
            before,
            "no activation while suspended"
        );

        // When the operator resumes it, by id
        let (status, resumed) =
            as_operator(Method::POST, &format!("/v1/tenants/{id}/resume"), None).await;

        // Then it is active, and the run that fell due meanwhile completes
        assert_eq!((status, &resumed["status"]), (200, &json!("active")));
        assert_eq!(resumed["suspendedAt"], Value::Null);
        server
            .eventually("the run to complete after the resume", async || {
                let (_, detail) = server
                    .request(Method::GET, &run_path, None, Some(&key))
                    .await;
                (detail["status"] == "completed").then_some(())
            })
            .await;
        let rows = tenant_rows(&server, &id).await;
        for table in [
            "contacts", "events", "runs", "journal", "emails", "modules", "api_keys",
        ] {
            assert!(rows[table] > 0, "acme has rows in {table}: {rows:?}");
        }
        let default_id = listed["tenants"][0]["id"].as_str().unwrap().to_owned();
        // (Only its tables with rows: a background job may start a row of its own meanwhile.)
        let default_rows: Vec<(String, i64)> = tenant_rows(&server, &default_id)
            .await
            .into_iter()
            .filter(|(_, rows)| *rows > 0)
            .collect();
        assert!(default_rows.iter().any(|(table, _)| table == "contacts"));

        // And an active tenant is not deleted
        let (status, body) = as_operator(Method::DELETE, "/v1/tenants/acme", None).await;
        assert_eq!(status, 409, "{body}");
        assert!(body["error"].as_str().unwrap().contains("suspend it first"));

        // (On PostgreSQL, a second host has acme's modules loaded too.)
        let peer = match backend {
            Backend::Postgres => Some(server.start_peer("peer").await),
            Backend::Sqlite => None,
        };

        // When the operator suspends it again and deletes it
        as_operator(Method::POST, "/v1/tenants/acme/suspend", None).await;
        let (status, _) = as_operator(Method::DELETE, "/v1/tenants/acme", None).await;

        // Then it is gone: its key is refused, it is no tenant, and no row of it remains
        assert_eq!(status, 204);
        let (status, _) = server
            .request(Method::GET, "/v1/runs", None, Some(&key))
            .await;
        assert_eq!(status, 401);
        let (status, _) = as_operator(Method::GET, &format!("/v1/tenants/{id}"), None).await;
        assert_eq!(status, 404);
        let (status, _) = as_operator(Method::DELETE, "/v1/tenants/acme", None).await;
        assert_eq!(status, 404);
        let left: Vec<(String, i64)> = tenant_rows(&server, &id)
            .await
            .into_iter()
            .filter(|(_, rows)| *rows > 0)
            .collect();
        assert!(
            left.is_empty(),
            "rows of the deleted tenant remain: {left:?}"
        );
        // And every host unloaded its modules
        for host in std::iter::once(&server).chain(peer.as_ref()) {
            host.eventually("the deleted tenant's modules to be unloaded", async || {
                let unloaded = format!("tenant={id}");
                support::log_lines_with(&host.log(), "modules unloaded")
                    .iter()
                    .any(|line| line.contains(&unloaded))
                    .then_some(())
            })
            .await;
        }
        // And the default tenant's rows are untouched, and it cannot be deleted
        let now = tenant_rows(&server, &default_id).await;
        for (table, rows) in &default_rows {
            assert_eq!(now[table], *rows, "the default tenant's {table}");
        }
        let (status, body) = as_operator(Method::DELETE, "/v1/tenants/default", None).await;
        assert_eq!(status, 409, "{body}");
        // And a tenant of the same name is a new one, with nothing of the old
        let (status, recreated) =
            as_operator(Method::POST, "/v1/tenants", Some(json!({"name": "acme"}))).await;
        assert_eq!(status, 201);
        assert_ne!(recreated["id"], id);
        let fresh = recreated["adminKey"]["key"].as_str().unwrap();
        let (_, runs) = server
            .request(Method::GET, "/v1/runs", None, Some(fresh))
            .await;
        assert_eq!(runs["runs"], json!([]));
    }
);
