//! Durable waits, end to end: `wait-for-event`, `sleep-until`, `checkpoint` and the per-run
//! step cap, through the compiled `trial-conversion` example and the `waits` test guest, over
//! real HTTP with the dev clock and a real SMTP sink.
//!
//! A waiting run is parked in the database. Ingesting an event of the awaited name for its
//! person makes it due at once; the woken activation decides whether the event matches (its
//! `where`) and otherwise waits on. The timeout is the run's timer.

mod support;

use serde_json::{Value, json};
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions, started_run};

async fn server(backend: Backend, sink: &SmtpSink, modules: Vec<&'static str>) -> Server {
    Server::start(ServerOptions {
        backend,
        modules,
        smtp_port: Some(sink.port),
        ..Default::default()
    })
    .await
}

fn event(name: &str, user: &str, properties: Value) -> Value {
    json!({
        "name": name,
        "userId": user,
        "email": format!("{user}@example.com"),
        "eventProperties": properties,
    })
}

/// The subjects of the emails `user` received, in arrival order, once there are `count`.
async fn subjects(server: &Server, sink: &SmtpSink, user: &str, count: usize) -> Vec<String> {
    let address = format!("{user}@example.com");
    server
        .eventually(&format!("{count} emails to {address}"), async || {
            let messages = sink.messages_to(&address);
            (messages.len() >= count).then(|| messages.iter().map(|m| m.subject()).collect())
        })
        .await
}

/// The run's timeline entry of `step`, the last one.
fn last_step<'a>(run: &'a Value, step: &str) -> &'a Value {
    run["timeline"]
        .as_array()
        .and_then(|t| t.iter().rev().find(|e| e["step"] == step))
        .unwrap_or_else(|| panic!("a {step} step in {run}"))
}

e2e!(
    a_payment_within_three_days_wakes_the_trial_run_at_once_and_it_sends_the_thanks,
    |backend: Backend| async move {
        // Given a trial that started and is waiting for its first payment
        let sink = SmtpSink::start().await;
        let server = server(backend, &sink, vec!["trial-conversion"]).await;
        let started = server
            .send_event(event("trial.started", "ada", json!({ "plan": "team" })))
            .await;
        let run_id = started_run(&started);
        assert_eq!(
            subjects(&server, &sink, "ada", 1).await,
            ["Your team trial has started"]
        );
        let waiting = server.run_reaches(&run_id, "waiting").await;
        assert_eq!(waiting["currentStep"], "wait for order.paid");
        assert_eq!(
            last_step(&waiting, "checkpoint")["request"]["label"],
            "waiting for the first payment"
        );
        let wait = last_step(&waiting, "wait-for-event");
        assert_eq!(wait["request"]["event"], "order.paid");
        assert_eq!(wait["request"]["timeoutMs"], 3 * 86_400_000_i64);

        // When the person pays a day later
        server.advance_clock("1d").await;
        server
            .send_event(event("order.paid", "ada", json!({ "amount": "$49" })))
            .await;

        // Then the run wakes at once (no more clock needed), receives the payment and thanks them
        let done = server.run_reaches(&run_id, "completed").await;
        assert_eq!(
            subjects(&server, &sink, "ada", 2).await,
            [
                "Your team trial has started",
                "Thank you for upgrading to team!"
            ]
        );
        let thanks = &sink.messages_to("ada@example.com")[1];
        assert!(thanks.data.contains("$49"), "{}", thanks.data);
        let resolved = last_step(&done, "wait-resolved");
        assert_eq!(resolved["response"]["event"]["name"], "order.paid");
        assert_eq!(resolved["response"]["event"]["properties"]["amount"], "$49");
        // And the wait's line in the timeline shows how long the run was parked
        let parked = last_step(&done, "wait-for-event")["elapsedMs"]
            .as_i64()
            .unwrap();
        assert!(parked >= 86_400_000, "{done}");
    }
);

e2e!(
    no_payment_in_three_days_times_the_wait_out_and_a_payment_before_the_trial_never_counts,
    |backend: Backend| async move {
        // Given a person who paid once before their trial started
        let sink = SmtpSink::start().await;
        let server = server(backend, &sink, vec!["trial-conversion"]).await;
        server
            .send_event(event("order.paid", "bob", json!({ "amount": "$5" })))
            .await;
        let started = server
            .send_event(event("trial.started", "bob", json!({ "plan": "pro" })))
            .await;
        let run_id = started_run(&started);
        server.run_reaches(&run_id, "waiting").await;

        // When two days pass the run still waits; when the third passes it times out
        server.advance_clock("2d").await;
        assert_eq!(server.run(&run_id).await["status"], "waiting");
        server.advance_clock("1d").await;

        // Then it sends the trial-ending nudge and completes
        let done = server.run_reaches(&run_id, "completed").await;
        assert_eq!(
            subjects(&server, &sink, "bob", 2).await,
            [
                "Your pro trial has started",
                "Hi, your pro trial is ending soon"
            ]
        );
        assert_eq!(
            last_step(&done, "wait-resolved")["response"],
            json!({ "timedOut": true })
        );
    }
);

e2e!(
    an_event_that_fails_the_where_wakes_the_run_which_waits_on_for_one_that_matches,
    |backend: Backend| async move {
        // Given a run waiting a day for an order of at least 100
        let sink = SmtpSink::start().await;
        let server = server(backend, &sink, vec!["waits"]).await;
        let started = server
            .send_event(event("cart.created", "cy", json!({})))
            .await;
        let run_id = started_run(&started);
        server.run_reaches(&run_id, "waiting").await;

        // When a small order comes
        server
            .send_event(event("order.paid", "cy", json!({ "total": 20 })))
            .await;

        // Then the run looks, finds no match, and waits again (one more activation, no email)
        server
            .eventually("the run to look at the small order", async || {
                let run = server.run(&run_id).await;
                (run["activations"].as_u64() >= Some(2) && run["status"] == "waiting").then_some(())
            })
            .await;
        assert!(sink.messages_to("cy@example.com").is_empty());

        // When a big order comes, the run receives that one
        server
            .send_event(event("order.paid", "cy", json!({ "total": 150 })))
            .await;
        server.run_reaches(&run_id, "completed").await;
        assert_eq!(subjects(&server, &sink, "cy", 1).await, ["Big order"]);
        let mail = &sink.messages_to("cy@example.com")[0];
        assert!(mail.data.contains("150"), "{}", mail.data);
    }
);

e2e!(
    a_wait_for_the_trigger_name_does_not_receive_the_trigger_itself,
    |backend: Backend| async move {
        // Given a run started by a ping, waiting an hour for the next ping
        let sink = SmtpSink::start().await;
        let server = server(backend, &sink, vec!["waits"]).await;
        let run_id = started_run(&server.send_event(event("ping", "dee", json!({}))).await);
        server.run_reaches(&run_id, "waiting").await;

        // When another ping comes, then that one ends the wait
        server.send_event(event("ping", "dee", json!({}))).await;
        server.run_reaches(&run_id, "completed").await;
        assert_eq!(subjects(&server, &sink, "dee", 1).await, ["Pong"]);
    }
);

e2e!(
    sleep_until_parks_the_run_until_the_instant_and_a_past_instant_returns_at_once,
    |backend: Backend| async move {
        // Given the host clock
        let sink = SmtpSink::start().await;
        let server = server(backend, &sink, vec!["waits"]).await;
        let now = server.get("/v1/admin/clock").await["nowMs"]
            .as_i64()
            .unwrap();

        // When a reminder is due in an hour, then the run sleeps until exactly then
        let later = started_run(
            &server
                .send_event(event("remind.me", "eve", json!({ "at": now + 3_600_000 })))
                .await,
        );
        let run = server.run_reaches(&later, "waiting").await;
        assert_eq!(
            waymark::clock::Timestamp::parse_rfc3339(run["wakeAt"].as_str().unwrap())
                .unwrap()
                .0,
            now + 3_600_000
        );
        assert_eq!(run["currentStep"], "until the reminder is due");

        // And when the hour passes the reminder goes out
        server.advance_clock("1h").await;
        server.run_reaches(&later, "completed").await;

        // When a reminder is already due, it goes out at once
        let past = started_run(
            &server
                .send_event(event("remind.me", "fay", json!({ "at": now - 1 })))
                .await,
        );
        server.run_reaches(&past, "completed").await;
        assert_eq!(subjects(&server, &sink, "fay", 1).await, ["Reminder"]);
        assert_eq!(subjects(&server, &sink, "eve", 1).await, ["Reminder"]);
    }
);

e2e!(
    a_run_that_loops_without_end_fails_at_the_step_cap_naming_it,
    |backend: Backend| async move {
        // Given a server whose runs may record at most 25 steps
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["waits"],
            smtp_port: Some(sink.port),
            extra_args: vec!["--max-run-steps".into(), "25".into()],
            ..Default::default()
        })
        .await;

        // When a journey checkpoints forever
        let run_id = started_run(&server.send_event(event("chatter", "gus", json!({}))).await);

        // Then its run fails with the cap in the reason
        let run = server.run_reaches(&run_id, "failed").await;
        let error = run["error"].as_str().unwrap();
        assert!(error.contains("cap of 25 journal steps"), "{error}");
    }
);

e2e!(
    deleting_the_account_ends_a_waiting_trial_run_and_nothing_more_is_sent,
    |backend: Backend| async move {
        // Given a trial waiting for its first payment
        let sink = SmtpSink::start().await;
        let server = server(backend, &sink, vec!["trial-conversion"]).await;
        let run_id = started_run(
            &server
                .send_event(event("trial.started", "hal", json!({ "plan": "pro" })))
                .await,
        );
        server.run_reaches(&run_id, "waiting").await;
        subjects(&server, &sink, "hal", 1).await;

        // When the account is deleted, then the run exits in that event's own transaction
        let deleted = server
            .send_event(event("account.deleted", "hal", json!({})))
            .await;
        assert_eq!(deleted["exits"][0]["runId"], run_id.as_str(), "{deleted}");
        assert_eq!(server.run(&run_id).await["status"], "exited");

        // And when the three days pass, no trial-ending email follows
        server.advance_clock("3d").await;
        server.send_event(event("ping", "hal", json!({}))).await;
        assert_eq!(server.run(&run_id).await["status"], "exited");
        assert_eq!(sink.messages_to("hal@example.com").len(), 1);
    }
);
