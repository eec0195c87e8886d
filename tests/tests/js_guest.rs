//! The WIT world works from JavaScript: a componentize-js guest loads and runs in the host.

mod support;

use serde_json::json;
use support::{Backend, Server, ServerOptions, started_run};

e2e!(
    a_javascript_guest_built_with_componentize_js_runs_a_journey,
    |backend: Backend| async move {
        // Given the JS proof module
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["js-hello"],
            ..Default::default()
        })
        .await;

        // When its trigger arrives
        let response = server
            .send_event(json!({"name": "js.hello", "userId": "js-user", "email": "js@example.com"}))
            .await;
        let run = started_run(&response);

        // Then the run completes having read the clock and queued its email
        let detail = server.run_reaches(&run, "completed").await;
        let steps = support::steps(&detail);
        assert!(
            steps.iter().any(|s| s == "now") && steps.iter().any(|s| s == "send-email"),
            "{detail}"
        );
        let emails = server.get("/v1/emails?to=js@example.com").await;
        assert_eq!(emails["emails"].as_array().unwrap().len(), 1, "{emails}");
    }
);
