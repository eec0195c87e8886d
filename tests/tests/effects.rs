//! Journey effects and history reads, end to end: `update-contact` and `trigger` (the SDK's
//! `update_contact`, `emit` and `emit_for`) and the `history-*` reads, through the compiled
//! `effects` test guest, over real HTTP.
//!
//! An effect is stored with the commit of the step that recorded it and applied afterwards,
//! exactly once: an event through ingest (idempotency key `run:<run>:<seq>`), a patch through
//! the contact upsert. Replays after a sleep answer the steps from the journal and apply
//! nothing again.

mod support;

use serde_json::{Value, json};
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions, started_run};

/// The person's events named `name`, once there is at least one.
async fn events_named(server: &Server, key: &str, name: &str) -> Vec<Value> {
    server
        .eventually(&format!("a {name} event for {key}"), async || {
            // The person may not exist yet (404) while the effect is still being applied.
            let (_, list) = server
                .request(
                    reqwest::Method::GET,
                    &format!("/v1/contacts/{key}/events?name={name}"),
                    None,
                    Some(&server.key),
                )
                .await;
            let events = list["events"].as_array().cloned().unwrap_or_default();
            (!events.is_empty()).then_some(events)
        })
        .await
}

e2e!(
    a_journey_updates_its_persons_contact_and_emits_events_that_start_journeys_exactly_once,
    |backend: Backend| async move {
        // Given a trial user
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["effects"],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        server
            .send_event(json!({
                "name": "app.opened", "userId": "sam",
                "contactProperties": { "trial": true, "plan": "free" },
            }))
            .await;

        // When they buy, naming a referrer nobody knows yet
        let response = server
            .send_event(json!({
                "name": "purchase.made", "userId": "sam",
                "eventProperties": { "total": 42, "referrer": "rita" },
            }))
            .await;
        let run_id = started_run(&response);

        // Then their contact is updated (merged; a null removed `trial`)
        let sam = server
            .eventually("sam to be a customer", async || {
                let sam = server.get("/v1/contacts/sam").await;
                (sam["properties"]["customer"] == true).then_some(sam)
            })
            .await;
        assert_eq!(
            sam["properties"],
            json!({ "customer": true, "lastOrderTotal": 42, "plan": "free" })
        );

        // And the emitted event is theirs, keyed by the run step that emitted it
        let converted = events_named(&server, "sam", "customer.converted").await;
        assert_eq!(converted.len(), 1);
        assert_eq!(converted[0]["properties"], json!({ "total": 42 }));
        assert_eq!(
            converted[0]["idempotencyKey"],
            format!("run:{run_id}:1").as_str()
        );

        // And the referrer became a person whose event started the reward journey
        let rewarded = events_named(&server, "rita", "referral.rewarded").await;
        assert_eq!(rewarded[0]["properties"], json!({ "referred": "sam" }));
        let reward = server
            .eventually("the reward email", async || {
                sink.messages_to("referrals@example.com").into_iter().next()
            })
            .await;
        assert_eq!(reward.subject(), "Reward for rita");

        // And the run's timeline shows the three effects
        let run = server.run_reaches(&run_id, "waiting").await;
        let steps = support::steps(&run);
        assert_eq!(
            steps,
            ["update-contact", "trigger", "trigger", "sleep"],
            "{run}"
        );

        // When the run wakes and replays its steps
        server.advance_clock("1d").await;
        server.run_reaches(&run_id, "completed").await;

        // Then nothing was applied twice
        let again = server
            .get("/v1/contacts/sam/events?name=customer.converted")
            .await;
        assert_eq!(again["events"].as_array().map(Vec::len), Some(1));
        let rita = server
            .get("/v1/contacts/rita/events?name=referral.rewarded")
            .await;
        assert_eq!(rita["events"].as_array().map(Vec::len), Some(1));
        assert_eq!(sink.messages_to("referrals@example.com").len(), 1);
    }
);

e2e!(
    a_journey_reads_the_persons_event_counts_journey_runs_and_earlier_emails,
    |backend: Backend| async move {
        // Given a customer with two purchases, one a day ago, whose first conversion completed
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["effects"],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        let purchase = json!({
            "name": "purchase.made", "userId": "una", "email": "una@example.com",
            "eventProperties": { "total": 10 },
        });
        let first = started_run(&server.send_event(purchase.clone()).await);
        server.run_reaches(&first, "waiting").await;
        server.advance_clock("1d").await;
        server.run_reaches(&first, "completed").await;
        let second = started_run(&server.send_event(purchase).await);
        server.run_reaches(&second, "waiting").await;

        // When they ask for a recap, twice
        let recap = json!({ "name": "recap.requested", "userId": "una" });
        let run = started_run(&server.send_event(recap.clone()).await);
        server.run_reaches(&run, "completed").await;
        let again = started_run(&server.send_event(recap).await);
        server.run_reaches(&again, "completed").await;

        // Then the first recap counted both purchases, one within the hour, two runs of
        // `convert` of which one completed, and no earlier recap; the second saw the first
        let bodies: Vec<String> = server
            .eventually("two recaps", async || {
                let mails = sink.messages_to("una@example.com");
                let recaps: Vec<String> = mails
                    .iter()
                    .filter(|m| m.subject() == "Your recap")
                    .map(|m| m.data.clone())
                    .collect();
                (recaps.len() == 2).then_some(recaps)
            })
            .await;
        assert!(
            bodies[0].contains("purchases=2 recent=1 converts=2 completed=1 recaps=0"),
            "{}",
            bodies[0]
        );
        assert!(bodies[1].contains("recaps=1"), "{}", bodies[1]);

        // And each read is a journaled step of the run
        let steps = support::steps(&server.run(&run).await);
        assert_eq!(
            steps,
            [
                "history-event-count",
                "history-event-count",
                "history-journey",
                "history-email",
                "send-email"
            ]
        );
    }
);

e2e!(
    a_journey_counts_events_since_its_start_and_since_an_instant_and_replays_the_counts,
    |backend: Backend| async move {
        // Given a person who used a feature once, an hour before their tally run starts
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["effects"],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        let used = json!({ "name": "feature.used", "userId": "tia", "email": "tia@example.com" });
        server.send_event(used.clone()).await;
        server.advance_clock("1h").await;
        let run = started_run(
            &server
                .send_event(json!({ "name": "tally.started", "userId": "tia" }))
                .await,
        );
        server.run_reaches(&run, "waiting").await;

        // When they use it twice while the run sleeps, and the run wakes a day later and counts
        server.send_event(used.clone()).await;
        server.send_event(used.clone()).await;
        server.advance_clock("1d").await;
        server
            .eventually("the counts to be taken", async || {
                let steps = support::steps(&server.run(&run).await);
                (steps.last().map(String::as_str) == Some("sleep") && steps.len() > 2).then_some(())
            })
            .await;
        // And they use it once more before the run's replay reports
        server.send_event(used).await;
        server.advance_clock("1h").await;
        server.run_reaches(&run, "completed").await;

        // Then the run counted two uses since it started, three of all time and none since the
        // moment it counted — the replay answered from the journal, not counting the fourth
        let body = server
            .eventually("the tally", async || {
                sink.messages_to("tia@example.com")
                    .into_iter()
                    .find(|m| m.subject() == "Your tally")
                    .map(|m| m.data)
            })
            .await;
        assert!(
            body.contains("since_start=2 all_time=3 since_now=0"),
            "{body}"
        );
        // And each count is a journaled step
        let steps = support::steps(&server.run(&run).await);
        assert_eq!(
            steps,
            [
                "sleep",
                "history-event-count",
                "history-event-count",
                "now",
                "history-event-count",
                "sleep",
                "send-email"
            ]
        );
    }
);
