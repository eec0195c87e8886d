//! Several hosts on one PostgreSQL database: two `waymark serve` processes share a data dir and
//! a database, take signups through both APIs, and share the scheduling and delivery. What is
//! provable from outside, and proved here: the two agree on the dev clock; both ran
//! activations; every activation either process started committed (none was refused for a
//! lost lease, so none overlapped another of the same run), and each run committed exactly
//! its two steps, once, whichever process ran them; every journal is gap-free; every email
//! was queued once and reached the SMTP sink once. And when one host dies holding claims, the
//! other reclaims them once their leases lapse and finishes the work.
//!
//! PostgreSQL only (the embedded SQLite database belongs to one process): skipped when
//! `WAYMARK_TEST_DATABASE_URL` is unset.

mod support;

use std::collections::HashMap;
use std::time::Duration;
use support::smtp::SmtpSink;
use support::welcome::{self, MODULE};
use support::{Backend, Server, ServerOptions, postgres_url};

const DAY_MS: i64 = 86_400_000;
const PEOPLE: usize = 400;
/// Signups go out in batches of this size, alternately to each host.
const BATCH: usize = 20;
const AT_SCALE: Duration = Duration::from_secs(120);

/// Two hosts on one fresh PostgreSQL database, delivering to `sink`; None (and a note) when no
/// PostgreSQL is configured.
async fn two_hosts(sink: &SmtpSink) -> Option<(Server, Server)> {
    if postgres_url().is_none() {
        eprintln!("skipped: set WAYMARK_TEST_DATABASE_URL to run the several-hosts tests");
        return None;
    }
    let first = Server::start(ServerOptions {
        backend: Backend::Postgres,
        modules: vec![MODULE],
        smtp_port: Some(sink.port),
        ..Default::default()
    })
    .await;
    let second = first.start_peer("second").await;
    Some((first, second))
}

async fn clock_offset(server: &Server) -> i64 {
    server.get("/v1/admin/clock").await["offsetMs"]
        .as_i64()
        .expect("offsetMs")
}

#[tokio::test]
async fn advancing_the_clock_on_one_host_moves_it_on_the_other() {
    // Given two hosts on one database
    let sink = SmtpSink::start().await;
    let Some((first, second)) = two_hosts(&sink).await else {
        return;
    };

    // When the first host's clock is advanced by a day, and then the second's by another
    first.advance_clock("1d").await;
    second
        .eventually("the second host to see the first's advance", async || {
            (clock_offset(&second).await == DAY_MS).then_some(())
        })
        .await;
    second.advance_clock("1d").await;

    // Then both advances count, and both hosts agree on the offset
    assert_eq!(clock_offset(&second).await, 2 * DAY_MS);
    first
        .eventually("the first host to see the second's advance", async || {
            (clock_offset(&first).await == 2 * DAY_MS).then_some(())
        })
        .await;
}

#[tokio::test]
async fn two_hosts_on_one_database_share_the_work_and_run_every_step_and_email_once() {
    // Given two hosts on one database, both running the welcome series
    let sink = SmtpSink::start().await;
    let Some((first, second)) = two_hosts(&sink).await else {
        return;
    };

    // When 400 people sign up in batches sent to both hosts at once, alternately
    let hosts = [&first, &second];
    let send_every_other = async |host: usize| {
        for batch in (host..PEOPLE / BATCH).step_by(2) {
            welcome::sign_up_batch(hosts[host], batch * BATCH..(batch + 1) * BATCH).await;
        }
    };
    tokio::join!(send_every_other(0), send_every_other(1));

    // Then every run sends its welcome and waits out its two days
    welcome::wait_for_runs(&second, "waiting", PEOPLE, AT_SCALE).await;
    welcome::wait_for_distinct_messages(&first, &sink, PEOPLE, AT_SCALE).await;

    // When two days pass — the clock is advanced on the first host only
    first.advance_clock("2d").await;

    // Then every run completes, and every email is sent and recorded
    welcome::wait_for_runs(&second, "completed", PEOPLE, AT_SCALE).await;
    welcome::wait_for_distinct_messages(&first, &sink, 2 * PEOPLE, AT_SCALE).await;
    welcome::wait_for_outbox_sent(&first, PEOPLE, AT_SCALE).await;

    // And each run committed its two steps exactly once, with a gap-free journal
    let journaled = welcome::assert_every_run_completed_once(&first, PEOPLE).await;

    // And each person received exactly one welcome and one follow-up, each once at the sink
    let report = welcome::assert_each_person_emailed_once(&sink, PEOPLE, &journaled);
    assert!(
        report.resent.is_empty(),
        "no host died, so no email was sent twice: {:?}",
        report.resent
    );

    // And both hosts ran activations, and together ran each run's two exactly once: no
    // activation was claimed and then refused its commit (the sign of two activations of one
    // run at once), so none overlapped another of its run
    let by_first = first.committed_activations();
    let by_second = second.committed_activations();
    assert!(
        !by_first.is_empty() && !by_second.is_empty(),
        "both hosts ran activations: {} and {}",
        by_first.len(),
        by_second.len()
    );
    let mut per_run: HashMap<&str, usize> = HashMap::new();
    for run in by_first.iter().chain(&by_second) {
        *per_run.entry(run).or_default() += 1;
    }
    assert_eq!(per_run.len(), PEOPLE, "every run's activations are logged");
    assert!(
        journaled
            .keys()
            .all(|run| per_run.get(run.as_str()) == Some(&2)),
        "each run was activated exactly twice in all: {per_run:?}"
    );
    for host in hosts {
        let refused = host.uncommitted_activations();
        assert!(
            refused.is_empty(),
            "activations that did not commit: {refused:#?}"
        );
    }
    eprintln!(
        "activations: {} on the first host, {} on the second",
        by_first.len(),
        by_second.len()
    );

    // And both hosts agree on the time
    assert_eq!(clock_offset(&second).await, 2 * DAY_MS);
}

#[tokio::test]
async fn when_one_host_dies_mid_flight_the_other_takes_over_its_claims_and_finishes_the_work() {
    // Given two hosts on one database, both running the welcome series
    let sink = SmtpSink::start().await;
    let Some((mut first, second)) = two_hosts(&sink).await else {
        return;
    };
    const SOME: usize = 200;

    // When people sign up through the first host, and it is SIGKILLed as soon as the first
    // welcome email reaches the sink, with activations and deliveries in flight
    welcome::sign_up_batch(&first, 0..SOME).await;
    first
        .eventually("the first welcome email", async || {
            (!sink.messages().is_empty()).then_some(())
        })
        .await;
    first.kill();

    // Then the second host alone sends every welcome, once the dead host's leases lapse
    welcome::wait_for_runs(&second, "waiting", SOME, AT_SCALE).await;

    // When two days pass on the second host
    second.advance_clock("2d").await;

    // Then every run completes with each step committed once, every email is sent
    welcome::wait_for_runs(&second, "completed", SOME, AT_SCALE).await;
    welcome::wait_for_distinct_messages(&second, &sink, 2 * SOME, AT_SCALE).await;
    welcome::wait_for_outbox_sent(&second, SOME, AT_SCALE).await;
    let journaled = welcome::assert_every_run_completed_once(&second, SOME).await;

    // And each person received one welcome and one follow-up; at most the email the dead host
    // was sending went out twice, with the same Message-ID
    let report = welcome::assert_each_person_emailed_once(&sink, SOME, &journaled);
    assert!(
        report.resent.len() <= 1,
        "one death resends at most the email in flight: {:?}",
        report.resent
    );
}

#[tokio::test]
async fn a_deploy_on_one_host_goes_live_on_the_other_and_so_does_a_removal() {
    // Given two hosts on one database, neither with the steps module
    let sink = SmtpSink::start().await;
    let Some((first, second)) = two_hosts(&sink).await else {
        return;
    };
    let has_steps = async |server: &Server| {
        server.get("/v1/journeys").await["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == "steps")
    };
    assert!(!has_steps(&second).await);

    // When steps v1 is deployed through the first host's API
    let deployed = first.deploy("steps", "steps-v1").await;
    let picked_up = std::time::Instant::now();

    // Then the second host serves it (told by NOTIFY), and a trigger there starts a v1 run
    second
        .eventually("the second host to load the deploy", async || {
            has_steps(&second).await.then_some(())
        })
        .await;
    eprintln!("picked up by the other host in {:?}", picked_up.elapsed());
    let event = serde_json::json!({ "name": "test.steps", "userId": "ada" });
    let run = support::started_run(&second.send_event(event.clone()).await);
    assert_eq!(second.run(&run).await["moduleVersion"], deployed["version"]);

    // When the first host removes it, the second stops starting runs of it
    let (status, _) = first
        .request(
            reqwest::Method::DELETE,
            "/v1/modules/steps",
            None,
            Some(&first.key),
        )
        .await;
    assert_eq!(status, 200);
    second
        .eventually("the second host to drop the module", async || {
            (!has_steps(&second).await).then_some(())
        })
        .await;
    let ignored = second.send_event(event).await;
    assert!(
        ignored["started"].as_array().unwrap().is_empty(),
        "{ignored}"
    );
}
