//! The `waymark` binary, built inside this crate so end-to-end tests can spawn it through
//! `CARGO_BIN_EXE_waymark-under-test` (cargo only exposes a package's own binaries).
fn main() -> std::process::ExitCode {
    waymark::cli::main()
}
