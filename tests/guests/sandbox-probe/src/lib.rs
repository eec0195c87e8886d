//! Test guest: journey `sandbox-probe` (trigger `test.sandbox_probe`) reports what the sandbox
//! lets ordinary Rust `std` code see — environment, arguments, files, network, wall clock — in
//! the vars of the emails it sends, once before a one-day sleep and once after. The host's
//! tests read those vars from the run's journal.

use std::time::{SystemTime, UNIX_EPOCH};
use waymark_guest::prelude::*;

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn observations() -> Email {
    email("probe")
        .var("env_vars", std::env::vars().count())
        .var("args", std::env::args().count())
        .var("file_read", std::fs::read("/etc/hostname").is_ok())
        .var("dir_listed", std::fs::read_dir("/").is_ok())
        .var("tcp_connected", std::net::TcpStream::connect("127.0.0.1:7700").is_ok())
        .var("wall_clock_ms", wall_clock_ms())
}

fn probe(ctx: &Ctx) -> JourneyResult {
    ctx.send_email(observations().var("phase", "before"))?;
    ctx.sleep(days(1), "one day");
    ctx.send_email(observations().var("phase", "after"))?;
    Ok(())
}

waymark_guest::module! {
    journeys: [
        journey("sandbox-probe").name("Sandbox probe").on("test.sandbox_probe").unlimited() => probe,
    ],
    templates: [
        template("probe").subject("Sandbox probe ({{ phase }})").body("env={{ env_vars }} files={{ file_read }} net={{ tcp_connected }} clock={{ wall_clock_ms }}"),
    ],
}
