//! Journey effects, end to end: `update-contact` and `trigger` (the SDK's `update_contact`,
//! `emit` and `emit_for`) through the compiled `effects` test guest, over real HTTP.
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
            let list = server
                .get(&format!("/v1/contacts/{key}/events?name={name}"))
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
