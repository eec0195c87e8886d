//! Crash safety at scale: a thousand runs in flight, the host SIGKILLed in the middle, started
//! again; every run still completes exactly once and every email is sent once.
//!
//! What "once" means at the SMTP boundary: an email is sent, then its delivery is recorded. A
//! kill between the two leaves an email that left but is still queued; after the dead host's
//! lease lapses it is sent again, with the same `Message-ID` (`<email-id@waymark>`), so the
//! receiver can drop it. The delivery worker sends one email at a time, so one kill can cause
//! at most one such resend; the test allows exactly that and no more. Everything else — runs,
//! journal steps, queued emails, distinct messages — is exactly once.

mod support;

use std::time::Duration;
use support::smtp::SmtpSink;
use support::welcome::{self, MODULE};
use support::{Backend, Server, ServerOptions};

const PEOPLE: usize = 1_000;
/// Long enough for the dead host's leases to lapse (a minute for emails) and the work after.
const AFTER_THE_CRASH: Duration = Duration::from_secs(150);

e2e!(
    a_sigkill_with_a_thousand_runs_in_flight_loses_no_run_and_repeats_no_step_or_email,
    |backend: Backend| async move {
        // Given a host running the welcome series
        let sink = SmtpSink::start().await;
        let mut server = Server::start(ServerOptions {
            backend,
            modules: vec![MODULE],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;

        // When a thousand people sign up at once
        welcome::sign_up_batch(&server, 0..PEOPLE).await;

        // And the host is SIGKILLed as soon as the first welcome email reaches the SMTP sink,
        // with activations and deliveries in flight
        server
            .eventually("the first welcome email", async || {
                (!sink.messages().is_empty()).then_some(())
            })
            .await;
        server.kill();
        let before_restart = sink.messages().len();

        // And started again on the same data
        server.restart().await;

        // Then every run sends its welcome and waits out its two days, once the dead host's
        // leases lapse
        welcome::wait_for_runs(&server, "waiting", PEOPLE, AFTER_THE_CRASH).await;

        // When two days pass
        server.advance_clock("2d").await;

        // Then every run completes and every email is sent and recorded
        welcome::wait_for_runs(&server, "completed", PEOPLE, AFTER_THE_CRASH).await;
        welcome::wait_for_distinct_messages(&server, &sink, 2 * PEOPLE, AFTER_THE_CRASH).await;
        welcome::wait_for_outbox_sent(&server, PEOPLE, AFTER_THE_CRASH).await;

        // And each run committed its two steps exactly once, with a gap-free journal
        let journaled = welcome::assert_every_run_completed_once(&server, PEOPLE).await;

        // And each person received exactly one welcome and one follow-up (by Message-ID, and
        // the Message-IDs are exactly the emails the journals queued)
        let report = welcome::assert_each_person_emailed_once(&sink, PEOPLE, &journaled);

        // And at most the one email being sent at the kill was sent again, with its Message-ID
        assert!(
            report.resent.len() <= 1,
            "one kill resends at most the email in flight: {:?}",
            report.resent
        );
        eprintln!(
            "{before_restart} message(s) at the sink at the kill; resent after restart: {:?}",
            report.resent
        );
    }
);
