//! The welcome series, end to end: HTTP in, a real compiled Rust module, durable sleep, the dev
//! clock, and email out through a real SMTP sink — including a SIGKILL while runs wait.

mod support;

use serde_json::{Value, json};
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions, started_run};

const DAY_MS: i64 = 86_400_000;

fn millis(rfc3339: &Value) -> i64 {
    let text = rfc3339.as_str().expect("a timestamp");
    waymark::clock::Timestamp::parse_rfc3339(text)
        .expect("RFC 3339")
        .0
}

async fn welcome_server(backend: Backend, sink: &SmtpSink) -> Server {
    Server::start(ServerOptions {
        backend,
        modules: vec!["welcome-series"],
        smtp_port: Some(sink.port),
        ..Default::default()
    })
    .await
}

fn signup(user: &str, email: &str) -> Value {
    json!({
        "name": "user.signed_up",
        "userId": user,
        "email": email,
        "contactProperties": { "name": "Ada", "plan": "pro" },
        "eventProperties": { "source": "landing-page" },
    })
}

e2e!(
    a_signup_sends_the_welcome_email_waits_two_days_then_sends_the_follow_up_and_completes,
    |backend: Backend| async move {
        // Given a server running the welcome series, delivering to a local SMTP sink
        let sink = SmtpSink::start().await;
        let server = welcome_server(backend, &sink).await;

        // When a user signs up
        let response = server.send_event(signup("user-1", "Ada@Example.com")).await;
        assert_eq!(response["stored"], true);
        assert!(response["eventId"].is_string());
        assert_eq!(response["exits"], json!([]));
        let run_id = started_run(&response);

        // Then the welcome email reaches the SMTP sink
        let welcome = server
            .eventually("the welcome email at the sink", async || {
                sink.messages_to("ada@example.com").into_iter().next()
            })
            .await;
        assert!(
            welcome.data.contains("Ada"),
            "the welcome email is personalised: {}",
            welcome.data
        );

        // And the run waits, with a wake time two days after it started
        let run = server.run_reaches(&run_id, "waiting").await;
        assert_eq!(run["journeyId"], "welcome-series");
        assert_eq!(
            run["moduleVersion"].as_str().map(str::len),
            Some(64),
            "pinned to a sha256 version: {run}"
        );
        let waited = millis(&run["wakeAt"]) - millis(&run["createdAt"]);
        assert!(
            (2 * DAY_MS..2 * DAY_MS + 60_000).contains(&waited),
            "wakes two days later: {run}"
        );
        let steps = support::steps(&run);
        assert!(
            steps.iter().any(|s| s == "send-email")
                && steps.last().map(String::as_str) == Some("sleep"),
            "timeline: {steps:?}"
        );

        // And the email is listed as sent, with its timestamps
        let emails = server
            .eventually("the email to be marked sent", async || {
                let list = server.get("/v1/emails?to=ada@example.com").await;
                (list["emails"][0]["status"] == "sent").then_some(list)
            })
            .await;
        assert_eq!(emails["emails"].as_array().unwrap().len(), 1);
        assert!(
            emails["emails"][0]["sentAt"].is_string()
                && emails["emails"][0]["createdAt"].is_string()
        );

        // When two days pass on the host clock
        server.advance_clock("2d").await;

        // Then the follow-up is sent and the run completes
        let run = server.run_reaches(&run_id, "completed").await;
        let messages = server
            .eventually("two emails at the sink", async || {
                (sink.messages_to("ada@example.com").len() == 2)
                    .then(|| sink.messages_to("ada@example.com"))
            })
            .await;
        assert_ne!(
            messages[0].subject(),
            messages[1].subject(),
            "the follow-up is a different email"
        );
        let by_user = server.get("/v1/emails?userId=user-1").await;
        assert_eq!(by_user["emails"].as_array().unwrap().len(), 2);
        let timeline = run["timeline"].as_array().unwrap();
        let emails_in_journal = timeline
            .iter()
            .filter(|e| e["step"] == "send-email")
            .count();
        assert_eq!(emails_in_journal, 2, "{run}");
        assert!(run["wakeAt"].is_null());
    }
);

e2e!(
    sigkill_while_runs_wait_loses_nothing_and_sends_no_email_twice,
    |backend: Backend| async move {
        // Given three people whose runs are waiting out their two days
        let sink = SmtpSink::start().await;
        let mut server = welcome_server(backend, &sink).await;
        let mut runs = Vec::new();
        for i in 0..3 {
            let response = server
                .send_event(signup(
                    &format!("user-{i}"),
                    &format!("person{i}@example.com"),
                ))
                .await;
            runs.push(started_run(&response));
        }
        for run in &runs {
            server.run_reaches(run, "waiting").await;
        }
        server
            .eventually("three welcome emails", async || {
                (sink.messages().len() == 3).then_some(())
            })
            .await;
        server
            .eventually("all three marked sent", async || {
                let list = server.get("/v1/emails").await;
                list["emails"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["status"] == "sent")
                    .then_some(())
            })
            .await;

        // When the host is killed with SIGKILL and started again on the same data
        server.restart().await;

        // Then the module was loaded from the compiled-artifact cache, not compiled again
        assert_eq!(
            server.log().matches("compiled module").count(),
            1,
            "{}",
            server.log()
        );
        // And the runs are still waiting and nothing was re-sent
        for run in &runs {
            assert_eq!(server.run(run).await["status"], "waiting");
        }
        assert_eq!(sink.messages().len(), 3);

        // When their time comes
        server.advance_clock("2d").await;

        // Then every run completes and each person got exactly two distinct emails
        for run in &runs {
            server.run_reaches(run, "completed").await;
        }
        server
            .eventually("six emails in all", async || {
                (sink.messages().len() >= 6).then_some(())
            })
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let messages = sink.messages();
        assert_eq!(
            messages.len(),
            6,
            "no duplicates: {:#?}",
            messages
                .iter()
                .map(|m| (&m.to, m.subject()))
                .collect::<Vec<_>>()
        );
        for i in 0..3 {
            let mine = sink.messages_to(&format!("person{i}@example.com"));
            assert_eq!(mine.len(), 2);
            assert_ne!(mine[0].header("Message-ID"), mine[1].header("Message-ID"));
        }
    }
);

e2e!(
    a_repeated_idempotency_key_is_not_stored_and_starts_nothing,
    |backend: Backend| async move {
        // Given a first signup with an idempotency key
        let sink = SmtpSink::start().await;
        let server = welcome_server(backend, &sink).await;
        let mut event = signup("user-7", "seven@example.com");
        event["idempotencyKey"] = json!("signup-7");
        let first = server.send_event(event.clone()).await;
        assert_eq!(first["stored"], true);
        let run_id = started_run(&first);

        // When the same event is sent again, with the key in the body and then in the header
        let again = server.send_event(event.clone()).await;
        let (status, by_header) = {
            let mut body = event.clone();
            body.as_object_mut().unwrap().remove("idempotencyKey");
            let response = reqwest::Client::new()
                .post(server.url("/v1/events"))
                .bearer_auth(&server.key)
                .header("Idempotency-Key", "signup-7")
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        };

        // Then both answer stored: false with the original event's id, and start nothing
        assert_eq!(again["stored"], false);
        assert_eq!(again["eventId"], first["eventId"]);
        assert_eq!(again["started"], json!([]));
        assert_eq!(status, 202);
        assert_eq!(by_header["stored"], false);
        server.run_reaches(&run_id, "waiting").await;
        let runs = server.get("/v1/runs?userId=user-7").await;
        assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    }
);
