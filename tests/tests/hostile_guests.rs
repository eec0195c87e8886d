//! Misbehaving guests fail their own run with a clear reason; the host keeps serving others.

mod support;

use serde_json::json;
use support::{Backend, Server, ServerOptions, started_run};

e2e!(
    a_looping_an_allocating_and_a_panicking_guest_each_fail_their_own_run_while_others_complete,
    |backend: Backend| async move {
        // Given modules that loop forever, allocate without bound and panic, beside a well-behaved one
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["spin-forever", "memory-hog", "panics", "ok-fast"],
            extra_args: vec![
                "--cpu-budget".into(),
                "300ms".into(),
                "--memory-limit-mb".into(),
                "32".into(),
            ],
            ..Default::default()
        })
        .await;

        // When each is triggered
        let start = async |name: &str| {
            started_run(
                &server
                    .send_event(
                        json!({"name": name, "userId": "mallory", "email": "mallory@example.com"}),
                    )
                    .await,
            )
        };
        let spin = start("test.spin_forever").await;
        let hog = start("test.memory_hog").await;
        let panic = start("test.panics").await;

        // Then the host keeps answering while they misbehave, and the neighbour completes
        let (status, _) = server
            .request(reqwest::Method::GET, "/v1/health", None, None)
            .await;
        assert_eq!(status, 200);
        let ok = start("test.ok_fast").await;
        server.run_reaches(&ok, "completed").await;

        // And each hostile run failed with a reason that says what happened
        let reason = async |run: &str| {
            server.run_reaches(run, "failed").await["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let spin_reason = reason(&spin).await;
        assert!(spin_reason.contains("CPU budget"), "{spin_reason}");
        let hog_reason = reason(&hog).await;
        assert!(
            hog_reason.contains("memory limit of 32 MiB"),
            "{hog_reason}"
        );
        let panic_reason = reason(&panic).await;
        assert!(
            panic_reason.contains("boom: the journey panicked on purpose"),
            "{panic_reason}"
        );

        // And a failed run never queued anything
        let emails = server.get("/v1/emails?userId=mallory").await;
        assert_eq!(
            emails["emails"].as_array().unwrap().len(),
            1,
            "only ok-fast's email: {emails}"
        );
    }
);

e2e!(
    an_activation_over_its_wall_clock_timeout_fails_with_that_reason,
    |backend: Backend| async move {
        // Given a generous CPU budget but a short wall-clock timeout
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["spin-forever"],
            extra_args: vec![
                "--cpu-budget".into(),
                "60s".into(),
                "--activation-timeout".into(),
                "400ms".into(),
            ],
            ..Default::default()
        })
        .await;

        // When a guest that never returns runs
        let run = started_run(
            &server
                .send_event(json!({"name": "test.spin_forever", "userId": "slow"}))
                .await,
        );

        // Then the timeout ends it, and says so
        let failed = server.run_reaches(&run, "failed").await;
        let reason = failed["error"].as_str().unwrap();
        assert!(reason.contains("wall-clock timeout of 400ms"), "{reason}");
    }
);
