//! What a guest can see: no environment, no files, no network — and WASI clocks that are the
//! host's journaled clock, so even `std::time::SystemTime::now()` replays identically.

mod support;

use serde_json::{Value, json};
use support::{Backend, Server, ServerOptions, started_run};

fn probe_vars(run: &Value) -> Vec<Value> {
    run["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["step"] == "send-email")
        .map(|step| step["request"]["vars"].clone())
        .collect()
}

e2e!(
    a_guest_sees_no_environment_files_or_network_and_its_wasi_clock_is_the_journaled_host_clock,
    |backend: Backend| async move {
        // Given the sandbox probe
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["sandbox-probe"],
            ..Default::default()
        })
        .await;

        // When it runs up to its one-day sleep
        let run_id = started_run(&server.send_event(json!({"name": "test.sandbox_probe", "userId": "probe", "email": "probe@example.com"})).await);
        let waiting = server.run_reaches(&run_id, "waiting").await;

        // Then ordinary std calls found nothing to reach
        let before = &probe_vars(&waiting)[0];
        assert_eq!(before["env_vars"], 0, "{before}");
        assert_eq!(before["args"], 0, "{before}");
        assert_eq!(before["file_read"], false, "{before}");
        assert_eq!(before["dir_listed"], false, "{before}");
        assert_eq!(before["tcp_connected"], false, "{before}");
        // And its wall-clock read was journaled
        let steps = support::steps(&waiting);
        assert!(steps.iter().any(|s| s == "wasi-wall-clock"), "{steps:?}");

        // When the host clock moves a day forward and the run replays
        server.advance_clock("1d").await;
        let done = server.run_reaches(&run_id, "completed").await;

        // Then the replay saw its recorded first reading (no divergence), and the new reading is
        // the host's advanced clock, not the machine's
        let vars = probe_vars(&done);
        assert_eq!(vars[0], *before);
        let first = before["wall_clock_ms"].as_u64().unwrap();
        let second = vars[1]["wall_clock_ms"].as_u64().unwrap();
        assert!(
            second >= first + 86_400_000,
            "the guest's clock moved with the host's: {first} -> {second}"
        );
    }
);
