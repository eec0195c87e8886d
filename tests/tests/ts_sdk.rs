//! The TypeScript SDK's own tests and the TypeScript example's test-kit tests pass (`npm test`
//! in each: type-check with `tsc`, then node's test runner), so `cargo test --workspace` runs
//! them too.

mod support;

use std::path::Path;
use std::process::Command;

fn npm(dir: &Path, args: &[&str]) {
    let output = Command::new("npm")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running npm {args:?} in {}: {e}", dir.display()));
    assert!(
        output.status.success(),
        "npm {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_typescript_sdk_and_example_tests_pass() {
    // The example's packages are installed by the module build (under its lock).
    support::built_modules();
    let root = support::repo_root();
    let sdk = root.join("guest-sdk/ts");
    npm(&sdk, &["install", "--no-audit", "--no-fund"]);
    npm(&sdk, &["test"]);
    npm(&root.join("examples/ts-onboarding"), &["test"]);
}
