//! Fair scheduling across tenants: when one tenant has a thousand runs due at once, another
//! tenant's single run due at the same moment is among the first activated, not behind the
//! thousand — on SQLite, and on PostgreSQL with two host processes claiming from one database.
//! The dev clock makes it deterministic: every run is put to sleep, then one advance makes them
//! all due together, the other tenant's last.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::smtp::SmtpSink;
use support::welcome::{self, MODULE};
use support::{Backend, Server, ServerOptions, module_bytes, tenant_key};

const FLOOD: usize = 1_000;
const AT_SCALE: Duration = Duration::from_secs(180);

/// When each completed run of the welcome series in `runs` committed its last step (host clock,
/// ms), by run id.
fn completed_at(runs: &[Value]) -> Vec<(i64, String)> {
    runs.iter()
        .map(|run| {
            let at = run["updatedAt"].as_str().expect("updatedAt");
            let at = chrono::DateTime::parse_from_rfc3339(at)
                .unwrap_or_else(|e| panic!("{at}: {e}"))
                .timestamp_millis();
            (at, run["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

e2e!(
    given_a_tenant_with_a_thousand_runs_due_when_another_has_one_due_then_it_is_among_the_first,
    |backend| async move {
        // Given the default tenant running the welcome series for a thousand people, each
        // waiting out its two days (two hosts on PostgreSQL)
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec![MODULE],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        let peer = match backend {
            Backend::Postgres => Some(server.start_peer("peer").await),
            Backend::Sqlite => None,
        };
        for batch in 0..FLOOD / 100 {
            welcome::sign_up_batch(&server, batch * 100..(batch + 1) * 100).await;
        }
        welcome::wait_for_runs(&server, "waiting", FLOOD, AT_SCALE).await;
        // And tenant beta with the same series and one person, signed up last
        let beta = tenant_key(&server, "beta", "ingest,read,deploy");
        let (status, body) = server
            .upload_module(MODULE, module_bytes(MODULE), &beta)
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
        let (status, body) = server
            .request(
                reqwest::Method::POST,
                "/v1/events",
                Some(welcome::signup(0)),
                Some(&beta),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let beta_run = body["started"][0]["runId"].as_str().unwrap().to_owned();
        server
            .eventually("beta's run to wait out its two days", async || {
                (server.run_as(&beta_run, &beta).await["status"] == "waiting").then_some(())
            })
            .await;

        // When two days pass: every run is due at once, beta's the last of them
        server.advance_clock("2d").await;

        // Then every run completes
        welcome::wait_for_runs(&server, "completed", FLOOD, AT_SCALE).await;
        let beta_done = server
            .eventually("beta's run to complete", async || {
                let run = server.run_as(&beta_run, &beta).await;
                (run["status"] == "completed").then_some(run)
            })
            .await;

        // And beta's run finished among the first: fewer than a tenth of the thousand before it
        // (claimed in due order, it would have been the last)
        let (beta_at, _) = completed_at(&[beta_done])[0];
        let flood = completed_at(&welcome::runs_with_status(&server, "completed").await);
        let before = flood.iter().filter(|(at, _)| *at < beta_at).count();
        assert!(
            before < FLOOD / 10,
            "{before} of the flooding tenant's {FLOOD} runs finished before beta's one"
        );
        eprintln!("{before} of {FLOOD} finished before beta's run");
        if let Some(peer) = peer {
            assert!(
                !peer.committed_activations().is_empty(),
                "the second host claimed too"
            );
        }
    }
);
