//! Modules as a hosted plugin platform, over HTTP: deploying versions per tenant, runs pinned
//! to the version they started on, rollback and removal, bad uploads refused with the previous
//! version serving, tenants isolated, and the catalog surviving a restart.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, Server, ServerOptions, module_bytes, started_run, tenant_key};

fn versions(detail: &Value) -> Vec<(String, bool, u64)> {
    detail["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                v["active"].as_bool().unwrap(),
                v["liveRuns"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn subjects_to(server: &Server, to: &str) -> Vec<String> {
    let emails = server.get(&format!("/v1/emails?to={to}")).await;
    let mut subjects: Vec<String> = emails["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    subjects.sort();
    subjects
}

fn steps_event(user: &str) -> Value {
    json!({ "name": "test.steps", "userId": user, "email": format!("{user}@example.com") })
}

e2e!(
    deployed_versions_start_new_runs_while_live_runs_finish_on_the_version_they_started_on,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;

        // Given steps v1 deployed over HTTP to a server with no modules
        let v1 = server.deploy("steps", "steps-v1").await;
        assert_eq!(v1["changed"], true, "{v1}");
        assert_eq!(v1["changes"]["journeys"]["added"], json!(["steps"]));
        assert_eq!(
            v1["changes"]["templates"]["added"],
            json!(["step-one", "step-two"])
        );
        let v1_hash = v1["version"].as_str().unwrap().to_owned();

        // When a trigger arrives, a run starts on v1, sends step one and sleeps a day
        let ada = started_run(&server.send_event(steps_event("ada")).await);
        let run = server.run_reaches(&ada, "waiting").await;
        assert_eq!(run["moduleVersion"], v1_hash.as_str());

        // When the same component is deployed again, nothing changes
        let (status, again) = server
            .upload_module("steps", module_bytes("steps-v1"), &server.key)
            .await;
        assert_eq!((status, &again["changed"]), (200, &json!(false)), "{again}");
        assert_eq!(again["revision"], v1["revision"]);

        // When v2 is deployed, it says what changed, and new triggers start v2 runs
        let v2 = server.deploy("steps", "steps-v2").await;
        let v2_hash = v2["version"].as_str().unwrap().to_owned();
        assert_eq!(
            v2["changes"]["journeys"]["changed"],
            json!(["steps"]),
            "{v2}"
        );
        assert!(
            v2["changes"]["templates"]["added"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let bob = started_run(&server.send_event(steps_event("bob")).await);
        // Asleep before the clock moves: a sleep begun after the advance would end a day later.
        let run = server.run_reaches(&bob, "waiting").await;
        assert_eq!(run["moduleVersion"], v2_hash.as_str());

        // And the module lists both versions, the active one first, each with its live run
        let detail = server.get("/v1/modules/steps").await;
        assert_eq!(detail["activeVersion"], v2_hash.as_str());
        assert_eq!(
            versions(&detail),
            vec![(v2_hash.clone(), true, 1), (v1_hash.clone(), false, 1)]
        );

        // When a day passes, ada's run wakes and finishes on v1, bob's on v2
        server.advance_clock("1d").await;
        server.run_reaches(&ada, "completed").await;
        server.run_reaches(&bob, "completed").await;
        assert_eq!(
            subjects_to(&server, "ada@example.com").await,
            vec!["Step one (v1)", "Step two (v1)"]
        );
        assert_eq!(
            subjects_to(&server, "bob@example.com").await,
            vec!["Step one (v2)", "Step two (v2)"]
        );

        // When rolled back, v1 is active again for new runs
        let (status, back) = server.post("/v1/modules/steps/rollback", json!({})).await;
        assert_eq!(status, 200, "{back}");
        assert_eq!(back["version"], v1_hash.as_str());
        let cy = started_run(&server.send_event(steps_event("cy")).await);
        let run = server.run_reaches(&cy, "waiting").await;
        assert_eq!(run["moduleVersion"], v1_hash.as_str());

        // When removed, triggers start nothing; cy's run stays live on v1; versions are kept
        let (status, removed) = server
            .request(Method::DELETE, "/v1/modules/steps", None, Some(&server.key))
            .await;
        assert_eq!(status, 200, "{removed}");
        assert_eq!(removed["changes"]["journeys"]["removed"], json!(["steps"]));
        let ignored = server.send_event(steps_event("dee")).await;
        assert!(
            ignored["started"].as_array().unwrap().is_empty(),
            "{ignored}"
        );
        let detail = server.get("/v1/modules/steps").await;
        assert_eq!(detail["status"], "removed");
        assert_eq!(
            versions(&detail),
            vec![(v1_hash.clone(), false, 1), (v2_hash.clone(), false, 0)]
        );
        server.advance_clock("1d").await;
        server.run_reaches(&cy, "completed").await;

        // When the server restarts, the catalog is served from the database
        let mut server = server;
        server.restart().await;
        let redeployed = server.deploy("steps", "steps-v2").await;
        assert_eq!(redeployed["changed"], true);
        let eve = started_run(&server.send_event(steps_event("eve")).await);
        assert_eq!(server.run(&eve).await["moduleVersion"], v2_hash.as_str());
        server.restart().await;
        let listed = server.get("/v1/modules").await;
        assert_eq!(
            listed["modules"][0]["activeVersion"],
            v2_hash.as_str(),
            "{listed}"
        );
        assert_eq!(listed["modules"][0]["journeys"], json!(["steps"]));
        let fay = started_run(&server.send_event(steps_event("fay")).await);
        assert_eq!(server.run(&fay).await["moduleVersion"], v2_hash.as_str());
    }
);

e2e!(
    bad_uploads_are_refused_naming_the_cause_and_the_previous_version_keeps_serving,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        // Given steps v1 and a bucket module active
        server.deploy("steps", "steps-v1").await;
        server.deploy("backfill-a", "backfill-v1").await;
        let before = server.get("/v1/modules").await;
        let reader = tenant_key(&server, server_tenant(), "ingest,read");

        // When each bad upload is tried
        let cap = 32 << 20;
        let admin = server.key.as_str();
        let reader = reader.as_str();
        let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
            (
                "steps",
                b"definitely not wasm".to_vec(),
                admin,
                400,
                "not WebAssembly",
            ),
            (
                "steps",
                b"\0asm\x01\0\0\0".to_vec(),
                admin,
                400,
                "not a component",
            ),
            (
                "steps",
                b"\0asm\x0d\0\x01\0".to_vec(),
                admin,
                400,
                "waymark:journey",
            ),
            (
                "bad name!",
                module_bytes("steps-v2"),
                admin,
                400,
                "invalid module name",
            ),
            (
                "alien",
                module_bytes("alien-import"),
                admin,
                400,
                "test:alien/gadget",
            ),
            (
                "describe-panics",
                module_bytes("describe-panics"),
                admin,
                400,
                "describe panicked on purpose",
            ),
            (
                "describe-spins",
                module_bytes("describe-spins"),
                admin,
                400,
                "CPU budget",
            ),
            ("steps", vec![0; cap + 1], admin, 413, "over the limit"),
            (
                "steps-copy",
                module_bytes("steps-v1"),
                admin,
                409,
                "already a version of module \"steps\"",
            ),
            (
                "backfill-b",
                module_bytes("backfill-v2"),
                admin,
                409,
                "bucket",
            ),
            ("steps", module_bytes("steps-v2"), reader, 403, "scope"),
        ];
        for (name, wasm, key, status, needle) in cases {
            let (got, body) = server.upload_module(name, wasm, key).await;
            // Then it is refused with a JSON error naming the cause
            assert_eq!(got, status, "{name}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(needle), "{name}: {needle:?} in {body}");
        }

        // And nothing was stored or changed: the previous versions still serve
        assert_eq!(server.get("/v1/modules").await, before);
        let run = started_run(&server.send_event(steps_event("ada")).await);
        assert_eq!(
            server.run(&run).await["moduleVersion"],
            before["modules"][1]["activeVersion"]
        );
        // Unknown modules and versions are 404s
        for path in ["/v1/modules/nope", "/v1/modules/nope/rollback"] {
            let method = if path.ends_with("rollback") {
                Method::POST
            } else {
                Method::GET
            };
            let (status, body) = server.request(method, path, None, Some(&server.key)).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        let (status, body) = server
            .post("/v1/modules/steps/rollback", json!({ "version": "ffff" }))
            .await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = server.post("/v1/modules/steps/rollback", json!({})).await;
        assert_eq!(status, 409, "only one version: {body}");
    }
);

/// The default tenant's name, which `tenant_key` creates keys for.
fn server_tenant() -> &'static str {
    "default"
}

e2e!(
    tenants_see_and_run_only_their_own_modules,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        // Given steps v1 deployed in the default tenant
        server.deploy("steps", "steps-v1").await;

        // When another tenant looks, it sees no module and cannot touch the default's
        let acme = tenant_key(&server, "acme", "ingest,read,deploy");
        let (_, listed) = server
            .request(Method::GET, "/v1/modules", None, Some(&acme))
            .await;
        assert_eq!(listed["modules"], json!([]), "{listed}");
        for (method, path) in [
            (Method::GET, "/v1/modules/steps"),
            (Method::DELETE, "/v1/modules/steps"),
            (Method::POST, "/v1/modules/steps/rollback"),
        ] {
            let (status, body) = server.request(method, path, None, Some(&acme)).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        let (_, journeys) = server
            .request(Method::GET, "/v1/journeys", None, Some(&acme))
            .await;
        assert_eq!(journeys["journeys"], json!([]));

        // When it deploys v2 under the same name, each tenant's triggers start its own version
        let (status, deployed) = server
            .upload_module("steps", module_bytes("steps-v2"), &acme)
            .await;
        assert_eq!(status, 201, "{deployed}");
        let (status, sent) = server
            .request(
                Method::POST,
                "/v1/events",
                Some(steps_event("ada")),
                Some(&acme),
            )
            .await;
        assert_eq!(status, 202, "{sent}");
        let acme_run = started_run(&sent);
        let default_run = started_run(&server.send_event(steps_event("ada")).await);
        let (_, acme_detail) = server
            .request(
                Method::GET,
                &format!("/v1/runs/{acme_run}"),
                None,
                Some(&acme),
            )
            .await;
        assert_eq!(acme_detail["moduleVersion"], deployed["version"]);
        assert_ne!(
            server.run(&default_run).await["moduleVersion"],
            deployed["version"]
        );
    }
);

#[tokio::test]
async fn a_routing_snapshot_keeps_routing_by_its_set_after_a_swap() {
    use serde_json::Map;
    use support::runtime::RuntimeFixture;
    use waymark::ids::TenantId;

    // Given steps v1 active, and a snapshot of the tenant's routing
    let fx = RuntimeFixture::new("test.steps", Map::new());
    let tenant = TenantId("t".into());
    let steps = fx.load("steps-v1").await;
    let buckets = fx.load("backfill-v1").await;
    fx.registry
        .activate(&tenant, std::slice::from_ref(&steps))
        .unwrap();
    let snapshot = fx.registry.routing_snapshot(&tenant);

    // When the set is swapped for one with a bucket and no steps journey
    fx.registry.activate(&tenant, &[buckets]).unwrap();

    // Then the snapshot still routes whole by the old set, and the registry by the new one
    let none = Map::new();
    let routed = snapshot.journeys(&tenant, "test.steps", &none);
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].module_hash, steps.hash);
    assert!(snapshot.buckets(&tenant).is_none());
    assert!(fx.registry.triggered_by(&tenant, "test.steps").is_empty());
    assert!(
        fx.registry
            .bucket_registry(&tenant)
            .get("big-spenders")
            .is_some()
    );
    // And a snapshot answers for its own tenant only
    let other = TenantId("other".into());
    assert!(snapshot.journeys(&other, "test.steps", &none).is_empty());
}

e2e!(
    events_ingested_across_twenty_swaps_each_start_one_run_on_a_whole_version,
    |backend: Backend| async move {
        let server = std::sync::Arc::new(
            Server::start(ServerOptions {
                backend,
                ..Default::default()
            })
            .await,
        );
        let v1 = server.deploy("steps", "steps-v1").await["version"].clone();

        // Given events ingested without pause, one person each
        let sender = {
            let server = server.clone();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let running = stop.clone();
            let task = tokio::spawn(async move {
                let mut responses = Vec::new();
                let mut n = 0;
                while !running.load(std::sync::atomic::Ordering::SeqCst) {
                    responses.push(server.send_event(steps_event(&format!("u{n}"))).await);
                    n += 1;
                }
                responses
            });
            (stop, task)
        };

        // When the module is swapped twenty times between v2 and v1
        let mut v2 = Value::Null;
        for swap in 0..20 {
            let build = if swap % 2 == 0 {
                "steps-v2"
            } else {
                "steps-v1"
            };
            let deployed = server.deploy("steps", build).await;
            assert_eq!(deployed["changed"], true, "swap {swap}: {deployed}");
            if swap == 0 {
                v2 = deployed["version"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        sender.0.store(true, std::sync::atomic::Ordering::SeqCst);
        let responses = sender.1.await.unwrap();

        // Then every event started exactly one run, on one of the two versions
        assert!(responses.len() >= 20, "only {} events", responses.len());
        for response in &responses {
            let run = started_run(response);
            let version = &server.run(&run).await["moduleVersion"];
            assert!(version == &v1 || version == &v2, "{response}: {version}");
        }
        // And the last swap (to v1) routes what comes after it
        let after = started_run(&server.send_event(steps_event("last")).await);
        assert_eq!(server.run(&after).await["moduleVersion"], v1);
    }
);

e2e!(
    a_watched_modules_directory_deploys_each_change_without_a_restart,
    |backend: Backend| async move {
        // Given a server watching a directory holding steps v1 as `steps.wasm`
        let server = Server::start(ServerOptions {
            backend,
            module_files: vec![("steps.wasm", module_bytes("steps-v1"))],
            ..Default::default()
        })
        .await;
        let active =
            async |server: &Server| server.get("/v1/modules/steps").await["activeVersion"].clone();
        let v1 = active(&server).await;
        assert_eq!(server.get("/v1/modules/steps").await["origin"], "directory");

        // When the file is replaced by v2
        server.drop_module_file("steps.wasm", &module_bytes("steps-v2"));

        // Then v2 goes live, and new runs start on it
        let v2 = server
            .eventually("the changed file to go live", async || {
                let now = active(&server).await;
                (now != v1).then_some(now)
            })
            .await;
        let run = started_run(&server.send_event(steps_event("ada")).await);
        assert_eq!(server.run(&run).await["moduleVersion"], v2);

        // When a broken file lands beside it, it is skipped and v2 keeps serving
        server.drop_module_file("broken.wasm", b"not wasm");
        server
            .eventually("the broken file to be reported", async || {
                server.log().contains("broken.wasm skipped").then_some(())
            })
            .await;
        assert_eq!(active(&server).await, v2);

        // When the file is deleted, the module it deployed is removed
        std::fs::remove_file(server.modules_path().join("steps.wasm")).unwrap();
        server
            .eventually("the module to be removed", async || {
                (server.get("/v1/modules/steps").await["status"] == "removed").then_some(())
            })
            .await;
        let ignored = server.send_event(steps_event("bob")).await;
        assert!(ignored["started"].as_array().unwrap().is_empty());
    }
);

e2e!(
    a_bucket_deployed_is_backfilled_a_removed_one_stops_and_one_added_back_is_evaluated_again,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let buy = async |user: &str, times: usize| {
            for _ in 0..times {
                server
                    .send_event(json!({ "name": "purchase", "userId": user,
                        "contactProperties": { "plan": "pro" } }))
                    .await;
            }
        };
        let backfill_done = async |mode: &str| {
            server
                .eventually(&format!("the {mode} backfill"), async || {
                    let detail = server.get("/v1/buckets/big-spenders").await;
                    let backfill = detail["backfill"].clone();
                    (backfill["state"] == "completed" && backfill["mode"] == mode).then_some(())
                })
                .await
        };
        let members = async || {
            let page = server.get("/v1/buckets/big-spenders/members").await;
            let mut keys: Vec<String> = page["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["key"].as_str().unwrap().to_owned())
                .collect();
            keys.sort();
            keys
        };
        // Given two big spenders in the history, before any module declares the bucket
        buy("ada", 3).await;
        buy("bob", 3).await;

        // When a module with big-spenders (three purchases on plan pro) is deployed
        let deployed = server.deploy("spenders", "backfill-v1").await;

        // Then the bucket is backfilled as at boot
        assert_eq!(
            deployed["changes"]["buckets"]["added"],
            json!(["big-spenders"])
        );
        assert_eq!(
            deployed["changes"]["bucketsToBackfill"],
            json!(["big-spenders"])
        );
        backfill_done("first-time").await;
        assert_eq!(members().await, vec!["ada", "bob"]);

        // When the module is removed, the bucket is no longer listed and stops moving
        let (status, _) = server
            .request(
                Method::DELETE,
                "/v1/modules/spenders",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(server.get("/v1/buckets").await["buckets"], json!([]));
        let (status, _) = server
            .request(
                Method::GET,
                "/v1/buckets/big-spenders",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 404);
        buy("cy", 3).await;

        // When it is deployed again, everyone is evaluated again: cy joins
        server.deploy("spenders", "backfill-v1").await;
        backfill_done("reeval").await;
        assert_eq!(members().await, vec!["ada", "bob", "cy"]);
    }
);

e2e!(
    an_upgrade_moves_the_runs_that_replay_cleanly_and_leaves_divergent_ones_on_their_version,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        // Given two v1 runs asleep after their first email (journal: send-email, sleep)
        let v1 = server.deploy("steps", "steps-v1").await["version"].clone();
        let ada = started_run(&server.send_event(steps_event("ada")).await);
        let bob = started_run(&server.send_event(steps_event("bob")).await);
        server.run_reaches(&ada, "waiting").await;
        server.run_reaches(&bob, "waiting").await;
        let verify = async |build: &str| {
            let (status, report) = server
                .post_component("/v1/modules/steps/verify", module_bytes(build), &server.key)
                .await;
            assert_eq!(status, 200, "{report}");
            report
        };

        // When v3 (a step appended after the sleep) is verified, both replay cleanly
        let v3_report = verify("steps-v3").await;
        assert_eq!(v3_report["runs"], 2, "{v3_report}");
        assert_eq!(v3_report["journeys"][0]["journey"], "steps");
        assert_eq!(v3_report["journeys"][0]["clean"], 2, "{v3_report}");

        // When v2 (the sleep moved before the first email) is verified, both diverge at step 0
        let v2_report = verify("steps-v2").await;
        let journey = &v2_report["journeys"][0];
        assert_eq!(journey["diverged"], 2, "{v2_report}");
        let run = &journey["runs"][0];
        assert_eq!(run["result"], "diverged");
        assert_eq!(run["step"], 0);
        assert!(
            run["recorded"].as_str().unwrap().starts_with("send-email"),
            "{run}"
        );
        assert!(
            run["called"].as_str().unwrap().starts_with("sleep"),
            "{run}"
        );
        // And verifying changed nothing
        assert_eq!(server.get("/v1/modules/steps").await["activeVersion"], v1);

        // When v2 is deployed as an upgrade, no run moves: both stay on v1
        let (status, upgraded) = server
            .post_component(
                "/v1/modules/steps/upgrade",
                module_bytes("steps-v2"),
                &server.key,
            )
            .await;
        assert_eq!(status, 201, "{upgraded}");
        assert_eq!(upgraded["migrated"], json!([]), "{upgraded}");
        assert_eq!(server.run(&ada).await["moduleVersion"], v1);

        // When v3 is deployed as an upgrade, both move to it
        let (status, upgraded) = server
            .post_component(
                "/v1/modules/steps/upgrade",
                module_bytes("steps-v3"),
                &server.key,
            )
            .await;
        assert_eq!(status, 201, "{upgraded}");
        let v3 = upgraded["version"].clone();
        let mut migrated: Vec<&str> = upgraded["migrated"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap())
            .collect();
        migrated.sort();
        let mut expected = vec![ada.as_str(), bob.as_str()];
        expected.sort();
        assert_eq!(migrated, expected, "{upgraded}");
        assert_eq!(server.run(&ada).await["moduleVersion"], v3);

        // Then they wake on v3 and finish its steps: the v1 email before the sleep, v3's after
        server.advance_clock("1d").await;
        server.run_reaches(&ada, "completed").await;
        assert_eq!(
            subjects_to(&server, "ada@example.com").await,
            vec!["Step one (v1)", "Step three (v3)", "Step two (v3)"]
        );
        let detail = server.get("/v1/modules/steps").await;
        assert!(
            versions(&detail).iter().all(|(_, _, live)| *live == 0),
            "{detail}"
        );
    }
);
