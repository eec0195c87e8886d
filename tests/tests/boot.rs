//! Starting up: a bad module refuses the boot with an error that names it, instead of a server
//! that silently lacks a journey.

mod support;

use std::process::Command;

fn serve_with_module(file_name: &str, bytes: &[u8]) -> (bool, String) {
    let data = tempfile::tempdir().unwrap();
    let modules = tempfile::tempdir().unwrap();
    std::fs::write(modules.path().join(file_name), bytes).unwrap();
    let output = Command::new(support::BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .arg("--modules")
        .arg(modules.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("WAYMARK_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_file_that_is_not_webassembly_refuses_the_boot_naming_the_file() {
    let (ok, stderr) = serve_with_module("broken.wasm", b"definitely not wasm");
    assert!(!ok);
    assert!(
        stderr.contains("broken.wasm") && stderr.contains("not WebAssembly"),
        "{stderr}"
    );
}

#[test]
fn a_core_module_instead_of_a_component_refuses_the_boot_and_says_how_to_build_one() {
    // The smallest core module: magic and version 1.
    let (ok, stderr) = serve_with_module("core.wasm", b"\0asm\x01\0\0\0");
    assert!(!ok);
    assert!(
        stderr.contains("core.wasm") && stderr.contains("not a component"),
        "{stderr}"
    );
}

#[test]
fn a_component_that_does_not_fit_the_world_refuses_the_boot() {
    // The smallest valid component: it exports nothing, so it cannot be a journey module.
    let (ok, stderr) = serve_with_module("empty.wasm", b"\0asm\x0d\0\x01\0");
    assert!(!ok);
    assert!(
        stderr.contains("empty.wasm") && stderr.contains("waymark:journey"),
        "{stderr}"
    );
}
