//! Journeys administered over HTTP, with a real compiled module (`tests/guests/trial-guards`):
//! every enrollment guard's skip counted by reason, the admin switch taking effect at once,
//! `exitOn` events ending waiting runs (whose later emails are never sent), cancelling a run,
//! enrolling a person, and the routes' scopes and tenant isolation.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions, started_run, tenant_key};

async fn trial_server(backend: Backend, sink: Option<&SmtpSink>) -> Server {
    Server::start(ServerOptions {
        backend,
        modules: vec!["trial-guards"],
        smtp_port: sink.map(|s| s.port),
        ..Default::default()
    })
    .await
}

fn trial_started(user: &str, plan: &str) -> Value {
    json!({
        "name": "trial.started",
        "userId": user,
        "email": format!("{user}@example.com"),
        "eventProperties": { "plan": plan },
    })
}

fn event(name: &str, user: &str) -> Value {
    json!({ "name": name, "userId": user, "email": format!("{user}@example.com") })
}

/// The reasons an ingest answer lists for `journey`'s skips.
fn skip_reason(response: &Value, journey: &str) -> Option<String> {
    response["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["journeyId"] == journey)
        .map(|s| s["reason"].as_str().unwrap_or_default().to_owned())
}

async fn patch(server: &Server, path: &str, body: Value, key: &str) -> (u16, Value) {
    server
        .request(Method::PATCH, path, Some(body), Some(key))
        .await
}

e2e!(
    every_guard_skips_with_its_reason_counts_it_and_the_admin_switch_acts_at_once,
    |backend: Backend| async move {
        let server = trial_server(backend, None).await;

        // Given a free-plan trial: `trial` filters it out and `dormant` is declared disabled
        let free = server.send_event(trial_started("ada", "free")).await;
        assert_eq!(free["started"], json!([]));
        assert_eq!(
            skip_reason(&free, "trial").as_deref(),
            Some("trigger_conditions_not_met")
        );
        assert_eq!(
            skip_reason(&free, "dormant").as_deref(),
            Some("journey_disabled")
        );
        // When a pro trial starts twice, then the once-only journey runs once
        let pro = server.send_event(trial_started("ada", "pro")).await;
        started_run(&pro);
        let again = server.send_event(trial_started("ada", "pro")).await;
        assert_eq!(
            skip_reason(&again, "trial").as_deref(),
            Some("already_entered_once")
        );
        // And a daily digest due twice runs once within the day
        started_run(&server.send_event(event("digest.due", "ada")).await);
        let digest_again = server.send_event(event("digest.due", "ada")).await;
        assert_eq!(
            skip_reason(&digest_again, "digest").as_deref(),
            Some("period_not_elapsed")
        );
        // And a second ping while the first waits finds it live
        let first_ping = started_run(&server.send_event(event("ping", "ada")).await);
        server.run_reaches(&first_ping, "waiting").await;
        let second_ping = server.send_event(event("ping", "ada")).await;
        assert_eq!(
            skip_reason(&second_ping, "ping").as_deref(),
            Some("already_active")
        );

        // When an admin switches `ping` off
        let (status, switched) = patch(
            &server,
            "/v1/journeys/ping",
            json!({"enabled": false}),
            &server.key,
        )
        .await;
        assert_eq!(status, 200, "{switched}");
        assert_eq!(switched["enabled"], false);
        assert_eq!(switched["declaredEnabled"], true);
        assert_eq!(switched["adminEnabled"], false);

        // Then the very next ping starts nothing, skipped by the admin switch
        let off = server.send_event(event("ping", "bob")).await;
        assert_eq!(off["started"], json!([]));
        assert_eq!(
            skip_reason(&off, "ping").as_deref(),
            Some("journey_disabled_by_admin")
        );
        // And the run already started goes on
        assert_eq!(server.run(&first_ping).await["status"], "waiting");

        // When it is switched on again, then the next ping starts a run
        let (status, _) = patch(
            &server,
            "/v1/journeys/ping",
            json!({"enabled": true}),
            &server.key,
        )
        .await;
        assert_eq!(status, 200);
        started_run(&server.send_event(event("ping", "bob")).await);

        // And each journey shows its skips by reason and its runs by status
        let ping = server.get("/v1/journeys/ping").await;
        assert_eq!(ping["enabled"], true);
        assert_eq!(ping["skips"]["already_active"], 1);
        assert_eq!(ping["skips"]["journey_disabled_by_admin"], 1);
        assert_eq!(ping["skips"]["trigger_conditions_not_met"], 0);
        assert_eq!(
            ping["runs"]["waiting"].as_u64().unwrap() + ping["runs"]["active"].as_u64().unwrap(),
            2
        );
        let trial = server.get("/v1/journeys/trial").await;
        assert_eq!(trial["skips"]["trigger_conditions_not_met"], 1);
        assert_eq!(trial["skips"]["already_entered_once"], 1);
        assert_eq!(trial["triggerWhere"]["property"], "plan");
        assert_eq!(
            trial["exitOn"][0],
            json!({"event": "account.deleted", "where": null})
        );
        assert_eq!(trial["exitOn"][1]["where"]["operator"], "gt");
        let dormant = server.get("/v1/journeys/dormant").await;
        assert_eq!(dormant["enabled"], false);
        assert_eq!(dormant["skips"]["journey_disabled"], 3);
        let digest = server.get("/v1/journeys/digest").await;
        assert_eq!(digest["skips"]["period_not_elapsed"], 1);

        // And the list shows every journey with its counts
        let list = server.get("/v1/journeys").await;
        let ids: Vec<&str> = list["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "trial",
                "dormant",
                "digest",
                "ping",
                "bucket-blocked-on-enter"
            ]
        );
        assert_eq!(list["journeys"][3]["skips"], ping["skips"]);

        // And bad input is refused naming the field; an unknown journey is 404
        let (status, body) = patch(
            &server,
            "/v1/journeys/ping",
            json!({"enabled": "no"}),
            &server.key,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = patch(&server, "/v1/journeys/ping", json!({}), &server.key).await;
        assert_eq!(
            (status, body["details"]["field"].clone()),
            (400, json!("enabled"))
        );
        let (status, _) = patch(
            &server,
            "/v1/journeys/nope",
            json!({"enabled": false}),
            &server.key,
        )
        .await;
        assert_eq!(status, 404);
    }
);

e2e!(
    an_exit_event_ends_a_waiting_run_and_its_later_email_is_never_sent,
    |backend: Backend| async move {
        // Given two pro trials, each waiting out its three days after the welcome email
        let sink = SmtpSink::start().await;
        let server = trial_server(backend, Some(&sink)).await;
        let ada = started_run(&server.send_event(trial_started("ada", "pro")).await);
        let bob = started_run(&server.send_event(trial_started("bob", "pro")).await);
        let carol = started_run(&server.send_event(trial_started("carol", "team")).await);
        for run in [&ada, &bob, &carol] {
            server.run_reaches(run, "waiting").await;
        }

        // When ada pays nothing, then her run goes on (the exit rule needs an amount above 0)
        let mut unpaid = event("order.paid", "ada");
        unpaid["eventProperties"] = json!({"amount": 0});
        let unpaid = server.send_event(unpaid).await;
        assert_eq!(unpaid["exits"], json!([]));

        // When ada pays, then the answer lists her trial run as exited, and it is
        let mut paid = event("order.paid", "ada");
        paid["eventProperties"] = json!({"amount": 49});
        let paid = server.send_event(paid).await;
        assert_eq!(paid["exits"], json!([{"runId": ada, "journeyId": "trial"}]));
        let exited = server.run(&ada).await;
        assert_eq!(exited["status"], "exited");
        assert!(exited["wakeAt"].is_null());

        // When carol enters the bucket `blocked`, then her trial exits on the transition
        let (status, body) = server
            .post("/v1/buckets/blocked/members/carol", json!({}))
            .await;
        assert!(status == 200 || status == 201, "{status}: {body}");
        assert_eq!(server.run(&carol).await["status"], "exited");

        // When the three days pass
        server.advance_clock("3d").await;

        // Then bob's trial ends with its second email, while ada and carol got only the first
        server.run_reaches(&bob, "completed").await;
        server
            .eventually("bob's two emails", async || {
                (sink.messages_to("bob@example.com").len() == 2).then_some(())
            })
            .await;
        for (person, run) in [("ada", &ada), ("carol", &carol)] {
            let detail = server.run(run).await;
            assert_eq!(detail["status"], "exited");
            let sends = support::steps(&detail)
                .iter()
                .filter(|s| *s == "send-email")
                .count();
            assert_eq!(sends, 1, "{detail}");
            let emails = server.get(&format!("/v1/emails?userId={person}")).await;
            assert_eq!(emails["emails"].as_array().unwrap().len(), 1, "{emails}");
        }
        let trial = server.get("/v1/journeys/trial").await;
        assert_eq!(trial["runs"]["exited"], 2);
        assert_eq!(trial["runs"]["completed"], 1);
    }
);

e2e!(
    an_admin_cancels_a_live_run_and_a_finished_one_is_refused,
    |backend: Backend| async move {
        let server = trial_server(backend, None).await;
        // Given a waiting ping run
        let run = started_run(&server.send_event(event("ping", "ada")).await);
        server.run_reaches(&run, "waiting").await;

        // When a read-only key tries to cancel it, then it is forbidden
        let reader = tenant_key(&server, "default", "read");
        let path = format!("/v1/runs/{run}");
        let (status, _) = server
            .request(Method::DELETE, &path, None, Some(&reader))
            .await;
        assert_eq!(status, 403);

        // When an admin cancels it, then it exits
        let (status, body) = server
            .request(Method::DELETE, &path, None, Some(&server.key))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"id": run, "journeyId": "ping", "status": "exited"})
        );
        let detail = server.run(&run).await;
        assert_eq!(detail["status"], "exited");
        assert!(detail["wakeAt"].is_null());

        // When it is cancelled again, then it has already finished (409); unknown runs are 404
        let (status, body) = server
            .request(Method::DELETE, &path, None, Some(&server.key))
            .await;
        assert_eq!(status, 409, "{body}");
        let (status, _) = server
            .request(Method::DELETE, "/v1/runs/nope", None, Some(&server.key))
            .await;
        assert_eq!(status, 404);

        // And a new ping starts a run at once: the cancelled one no longer holds the slot
        started_run(&server.send_event(event("ping", "ada")).await);
    }
);

e2e!(
    enrolling_a_person_ingests_the_trigger_so_every_guard_applies,
    |backend: Backend| async move {
        let server = trial_server(backend, None).await;

        // When an admin enrolls a pro-plan person in the trial
        let (status, enrolled) = server
            .post(
                "/v1/journeys/trial/enroll",
                json!({"userId": "ada", "email": "ada@example.com", "properties": {"plan": "pro"}}),
            )
            .await;

        // Then the trigger event was ingested and the run started
        assert_eq!(status, 202, "{enrolled}");
        assert_eq!(enrolled["status"], "started");
        assert_eq!(enrolled["event"], "trial.started");
        let run = enrolled["runId"].as_str().unwrap().to_owned();
        server.run_reaches(&run, "waiting").await;
        let timeline = server.get("/v1/contacts/ada/events").await;
        assert_eq!(timeline["events"][0]["name"], "trial.started");

        // When the same person is enrolled again, then the entry limit refuses
        let (_, again) = server
            .post(
                "/v1/journeys/trial/enroll",
                json!({"userId": "ada", "properties": {"plan": "pro"}}),
            )
            .await;
        assert_eq!(again["status"], "skipped");
        assert_eq!(again["reason"], "already_entered_once");
        // And a free-plan person is refused by the trigger filter
        let (_, free) = server
            .post("/v1/journeys/trial/enroll", json!({"userId": "bob"}))
            .await;
        assert_eq!(
            (free["status"].clone(), free["reason"].clone()),
            (json!("skipped"), json!("trigger_conditions_not_met"))
        );
        // And an admin-disabled journey refuses enrollment by its switch
        patch(
            &server,
            "/v1/journeys/ping",
            json!({"enabled": false}),
            &server.key,
        )
        .await;
        let (_, off) = server
            .post("/v1/journeys/ping/enroll", json!({"userId": "ada"}))
            .await;
        assert_eq!(off["reason"], "journey_disabled_by_admin");
        let trial = server.get("/v1/journeys/trial").await;
        assert_eq!(trial["skips"]["already_entered_once"], 1);

        // And bad requests are refused: no identity (400 naming it), an unknown journey (404),
        // a bucket reaction (409: it starts from the bucket), a read-only key (403)
        let (status, body) = server
            .post("/v1/journeys/trial/enroll", json!({"properties": {}}))
            .await;
        assert_eq!(
            (status, body["details"]["field"].clone()),
            (400, json!("userId"))
        );
        let (status, _) = server
            .post("/v1/journeys/nope/enroll", json!({"userId": "ada"}))
            .await;
        assert_eq!(status, 404);
        let (status, body) = server
            .post(
                "/v1/journeys/bucket-blocked-on-enter/enroll",
                json!({"userId": "ada"}),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        let reader = tenant_key(&server, "default", "read");
        let (status, _) = server
            .request(
                Method::POST,
                "/v1/journeys/trial/enroll",
                Some(json!({"userId": "ada"})),
                Some(&reader),
            )
            .await;
        assert_eq!(status, 403);
    }
);

e2e!(
    the_journey_routes_see_only_the_callers_tenant,
    |backend: Backend| async move {
        // Given the default tenant's trial run, and another tenant's admin key
        let server = trial_server(backend, None).await;
        let run = started_run(&server.send_event(trial_started("ada", "pro")).await);
        let other = tenant_key(&server, "globex", "ingest,read,admin");
        let call = |method: Method, path: &str, body: Option<Value>| {
            let other = other.clone();
            let path = path.to_owned();
            let server = &server;
            async move { server.request(method, &path, body, Some(&other)).await }
        };

        // Then the other tenant sees no journeys, and cannot touch ours
        let (status, list) = call(Method::GET, "/v1/journeys", None).await;
        assert_eq!((status, &list["journeys"]), (200, &json!([])), "{list}");
        assert_eq!(call(Method::GET, "/v1/journeys/trial", None).await.0, 404);
        assert_eq!(
            call(
                Method::PATCH,
                "/v1/journeys/trial",
                Some(json!({"enabled": false}))
            )
            .await
            .0,
            404
        );
        assert_eq!(
            call(
                Method::POST,
                "/v1/journeys/trial/enroll",
                Some(json!({"userId": "ada"}))
            )
            .await
            .0,
            404
        );
        assert_eq!(
            call(Method::DELETE, &format!("/v1/runs/{run}"), None)
                .await
                .0,
            404
        );
        // And ours is untouched
        let trial = server.get("/v1/journeys/trial").await;
        assert_eq!(trial["enabled"], true);
        assert_eq!(trial["adminEnabled"], Value::Null);
        assert_ne!(server.run(&run).await["status"], "exited");
    }
);
