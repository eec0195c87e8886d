//! The guest-side workspaces (the Rust SDK, the examples, the test modules) build for the
//! native target too, where their own unit tests run — e.g. the SDK's builders and its
//! `TestHost`, and each module's manifest check. They are separate cargo workspaces (guests
//! never join the host's), so this runs their suites from here to keep `cargo test --workspace`
//! the one command for everything.

mod support;

use waymark::modules::build::clean_command;

fn cargo_test(manifest: &str) {
    let root = support::repo_root();
    let output = clean_command("cargo", &root)
        .args([
            "test",
            "--quiet",
            "--manifest-path",
            manifest,
            "--target-dir",
        ])
        .arg(root.join("target/guest-native"))
        .output()
        .expect("running cargo test");
    assert!(
        output.status.success(),
        "cargo test --manifest-path {manifest} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_rust_guest_sdk_passes_its_own_tests() {
    cargo_test("guest-sdk/rust/Cargo.toml");
}

#[test]
fn the_example_modules_pass_their_own_tests() {
    cargo_test("examples/Cargo.toml");
}

#[test]
fn the_test_modules_declare_valid_manifests() {
    cargo_test("tests/guests/Cargo.toml");
}
