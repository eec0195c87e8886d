//! Buckets over time, end to end: the compiled `win-back` example's `went-dormant` bucket
//! (active at some point, not in the last 7 days) with its enter reaction (`we-miss-you`) and
//! its dwell reaction three days into the membership (`win-back-offer`), on a real SMTP sink.
//!
//! Nothing but the clock makes someone dormant: the reconcile job does. Advancing the dev
//! clock runs the job for the schedule ticks it passed over, coalesced, so the join happens as
//! of the first tick after the seventh day and the dwell as of the first tick three days later.

mod support;

use serde_json::{Value, json};
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions};

const DAY_MS: i64 = 86_400_000;

async fn win_back_server(backend: Backend, sink: &SmtpSink) -> Server {
    Server::start(ServerOptions {
        backend,
        modules: vec!["win-back"],
        smtp_port: Some(sink.port),
        ..Default::default()
    })
    .await
}

async fn active(server: &Server, user: &str) -> Value {
    server
        .send_event(json!({
            "name": "app.active",
            "userId": user,
            "email": format!("{user}@example.com"),
        }))
        .await
}

/// The person's stored events named `name`, oldest first.
async fn events_named(server: &Server, user: &str, name: &str) -> Vec<Value> {
    let timeline = server
        .get(&format!("/v1/contacts/{user}/events?limit=1000"))
        .await;
    let mut found: Vec<Value> = timeline["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["name"] == name)
        .collect();
    found.reverse();
    found
}

/// Wait until `user` received `count` emails with this subject prefix.
async fn emails(server: &Server, sink: &SmtpSink, user: &str, subject: &str, count: usize) {
    let address = format!("{user}@example.com");
    server
        .eventually(
            &format!("{count} {subject:?} email(s) to {user}"),
            async || {
                let got = sink
                    .messages_to(&address)
                    .iter()
                    .filter(|m| m.subject().starts_with(subject))
                    .count();
                (got >= count).then_some(())
            },
        )
        .await;
}

e2e!(
    given_an_active_person_when_the_clock_moves_ten_days_then_they_go_dormant_on_day_seven_and_get_the_offer_on_day_ten,
    |backend: Backend| async move {
        let sink = SmtpSink::start().await;
        let server = win_back_server(backend, &sink).await;
        let first = active(&server, "ada").await;
        assert_eq!(first["buckets"], json!([]), "activity makes nobody dormant");

        // (a minute more: the schedule ticks on whole minutes, so the join's tick may fall up to
        // a minute after the seventh day, and the dwell three days after that)
        server.advance_clock("10d 1m").await;

        emails(&server, &sink, "ada", "It's been a while", 1).await;
        emails(&server, &sink, "ada", "A month on us", 1).await;
        let entered = events_named(&server, "ada", "bucket:entered:went-dormant").await;
        assert_eq!(entered.len(), 1, "{entered:?}");
        assert_eq!(entered[0]["idempotencyKey"], "bucket:went-dormant:ada:entered:1");
        assert_eq!(entered[0]["properties"]["source"], "reconcile");
        let dwell = server
            .eventually("the dwell event", async || {
                let found =
                    events_named(&server, "ada", "bucket:dwell:went-dormant:after-259200000")
                        .await;
                (!found.is_empty()).then_some(found)
            })
            .await;
        assert_eq!(dwell.len(), 1, "{dwell:?}");
        assert_eq!(
            dwell[0]["idempotencyKey"],
            "bucket:went-dormant:ada:dwell:after-259200000:1:1"
        );
        // Coalesced, but as of the ticks the work fell due: the join at the first tick after
        // the seventh day, the dwell three days after that join.
        let active_at = first_occurred(&server, "ada", "app.active").await;
        let joined_at = occurred(&entered[0]);
        assert!(
            joined_at > active_at + 7 * DAY_MS && joined_at <= active_at + 7 * DAY_MS + 60_000,
            "joined {} ms after the activity",
            joined_at - active_at
        );
        let fired_at = occurred(&dwell[0]);
        assert!(
            fired_at >= joined_at + 3 * DAY_MS && fired_at <= joined_at + 3 * DAY_MS + 60_000,
            "the dwell fired {} ms after the join",
            fired_at - joined_at
        );

        // Back: she leaves. Dormant again: a new membership, whose dwell fires again.
        let back = active(&server, "ada").await;
        assert_eq!(
            back["buckets"],
            json!([{"bucketId": "went-dormant", "transition": "left", "entryCount": 1,
                    "emitted": true}])
        );
        server.advance_clock("10d 1m").await;
        emails(&server, &sink, "ada", "A month on us", 2).await;
        let dwell = events_named(&server, "ada", "bucket:dwell:went-dormant:after-259200000").await;
        assert_eq!(
            dwell
                .iter()
                .map(|e| e["idempotencyKey"].as_str().unwrap_or_default())
                .collect::<Vec<_>>(),
            [
                "bucket:went-dormant:ada:dwell:after-259200000:1:1",
                "bucket:went-dormant:ada:dwell:after-259200000:2:1"
            ]
        );
    }
);

fn occurred(event: &Value) -> i64 {
    let text = event["occurredAt"].as_str().unwrap_or_default();
    chrono_ms(text).unwrap_or_else(|| panic!("an occurredAt in {event}"))
}

async fn first_occurred(server: &Server, user: &str, name: &str) -> i64 {
    occurred(&events_named(server, user, name).await[0])
}

/// Milliseconds since the epoch of an RFC 3339 timestamp as the host writes it
/// (`2026-01-02T03:04:05.678Z`).
fn chrono_ms(text: &str) -> Option<i64> {
    waymark::clock::Timestamp::parse_rfc3339(text).map(|t| t.0)
}
