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
            // A budget the log flood (100,000 calls into the host) fits in on a loaded
            // machine running a debug build, while the spinning guest still meets it soon.
            extra_args: vec![
                "--cpu-budget".into(),
                "1s".into(),
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
        let stack = start("test.overflows_stack").await;
        let forever = start("test.sleeps_forever").await;
        let flood = start("test.floods_log").await;
        let huge = start("test.huge_argument").await;

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
        let stack_reason = reason(&stack).await;
        assert!(stack_reason.contains("stack overflowing"), "{stack_reason}");
        let forever_reason = reason(&forever).await;
        assert!(
            forever_reason.contains("longer than the maximum of 10years"),
            "{forever_reason}"
        );

        let huge_reason = reason(&huge).await;
        assert!(
            huge_reason.contains("the template key is 8388608 bytes, over the 65536-byte limit"),
            "{huge_reason}"
        );

        // And a guest that floods the log completes with a few hundred lines kept of 100,000
        server.run_reaches(&flood, "completed").await;
        let log = server.log();
        let kept = support::log_lines_with(&log, "flood line").len();
        assert!((1..=200).contains(&kept), "{kept} lines kept");
        assert_eq!(
            support::log_lines_with(&log, "reached its log limit").len(),
            1
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

e2e!(
    a_template_written_to_spin_fails_its_send_and_the_host_keeps_answering,
    |backend: Backend| async move {
        // Given the tenant's own `step-one` template, written to loop ten billion times
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["steps-v1"],
            ..Default::default()
        })
        .await;
        let spinning = json!({
            "subject": "hello",
            "text": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x",
        });
        let (status, body) = server
            .request(
                reqwest::Method::PUT,
                "/v1/templates/step-one",
                Some(spinning),
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 201, "{body}");

        // When two runs send it
        let runs = [
            started_run(
                &server
                    .send_event(
                        json!({"name": "test.steps", "userId": "a", "email": "a@example.com"}),
                    )
                    .await,
            ),
            started_run(
                &server
                    .send_event(
                        json!({"name": "test.steps", "userId": "b", "email": "b@example.com"}),
                    )
                    .await,
            ),
        ];

        // Then the host keeps answering, and each run fails naming the template's budget
        let (status, _) = server
            .request(reqwest::Method::GET, "/v1/health", None, None)
            .await;
        assert_eq!(status, 200);
        for run in runs {
            let failed = server.run_reaches(&run, "failed").await;
            let reason = failed["error"].as_str().unwrap_or_default();
            assert!(
                reason.contains("step-one") && reason.contains("steps to render"),
                "{reason}"
            );
        }
    }
);

/// The nice value of each of the process's threads named `name`, from /proc.
fn thread_niceness(pid: u32, name: &str) -> Vec<i64> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command; the nice value is field 19 of the line.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        if let Some(nice) = after
            .split_whitespace()
            .nth(16)
            .and_then(|n| n.parse().ok())
        {
            found.push(nice);
        }
    }
    found
}

#[tokio::test]
async fn guests_run_on_threads_of_their_own_at_a_lower_priority_than_the_api() {
    let server = Server::start(ServerOptions::default()).await;
    let pid = server.pid().unwrap();
    let guests = thread_niceness(pid, "waymark-guest");
    assert!(!guests.is_empty(), "no waymark-guest threads");
    assert!(guests.iter().all(|&nice| nice == 10), "{guests:?}");
    let api = thread_niceness(pid, "tokio-rt-worker");
    assert!(
        !api.is_empty() && api.iter().all(|&nice| nice == 0),
        "{api:?}"
    );
}
