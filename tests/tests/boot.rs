//! Starting up: a module in the `--modules` directory that fails validation is skipped with an
//! error naming its file and the cause, and every other module is served — one broken file
//! must not take the tenant's other modules (or the server) down.

mod support;

use support::{Server, ServerOptions};

#[tokio::test]
async fn bad_module_files_are_skipped_with_their_cause_and_the_rest_are_served() {
    // Given a modules directory with a good module, three broken files and a module whose
    // `describe` panics
    let server = Server::start(ServerOptions {
        modules: vec!["welcome-series"],
        module_files: vec![
            ("broken.wasm", b"definitely not wasm".to_vec()),
            // The smallest core module: magic and version 1.
            ("core.wasm", b"\0asm\x01\0\0\0".to_vec()),
            // The smallest valid component: it exports nothing, so it is no journey module.
            ("empty.wasm", b"\0asm\x0d\0\x01\0".to_vec()),
            (
                "describe-panics.wasm",
                support::module_bytes("describe-panics"),
            ),
        ],
        ..Default::default()
    })
    .await;

    // Then the server serves the good module alone
    let modules = server.get("/v1/modules").await;
    let names: Vec<&str> = modules["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["welcome-series"], "{modules}");
    assert!(
        !server.get("/v1/journeys").await["journeys"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // And the log names each skipped file with its cause
    let log = server.log();
    for (file, cause) in [
        ("broken.wasm", "not WebAssembly"),
        ("core.wasm", "not a component"),
        ("empty.wasm", "waymark:journey"),
        ("describe-panics.wasm", "describe panicked on purpose"),
    ] {
        let lines = support::log_lines_with(&log, file);
        assert!(
            lines
                .iter()
                .any(|line| line.contains("skipped") && line.contains(cause)),
            "{file}: {cause}; log:\n{log}"
        );
    }
}
