//! `waymark buckets backfill ID`: start a bucket's backfill over the HTTP API and draw its
//! progress until it completes or fails. A client of the API only: it must not open the
//! database.

use crate::api::client::ApiClient;
use anyhow::bail;
use reqwest::Method;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How often the progress is polled.
const POLL: Duration = Duration::from_millis(250);
/// Width of the bar, in cells.
const BAR_WIDTH: usize = 30;

/// `[#######-----------------------]  23%  2300/10000 running`.
pub fn progress_line(state: &str, done: u64, total: Option<u64>) -> String {
    let total = total.unwrap_or(0).max(done);
    let fraction = if total == 0 {
        if state == "completed" { 1.0 } else { 0.0 }
    } else {
        done as f64 / total as f64
    };
    let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    format!(
        "[{}{}] {:>3}%  {done}/{total} {state}",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        (fraction * 100.0).floor() as u64,
    )
}

/// Start the backfill of bucket `id` on the host at `url` with API key `key` (admin scope),
/// then poll `GET /v1/buckets/{id}` and draw its progress; an error when it fails.
pub async fn backfill(url: &str, key: &str, id: &str) -> anyhow::Result<()> {
    let client = ApiClient::new(url, key);
    let bucket_path = format!("/v1/buckets/{}", encode(id));
    client
        .send(client.request(Method::POST, &format!("{bucket_path}/backfill")))
        .await?;
    let tty = std::io::stderr().is_terminal();
    let mut last_printed = String::new();
    loop {
        let view = client
            .send(client.request(Method::GET, &bucket_path))
            .await?;
        let backfill = &view["backfill"];
        let state = backfill["state"].as_str().unwrap_or("pending");
        let done = backfill["done"].as_u64().unwrap_or(0);
        let line = progress_line(state, done, backfill["total"].as_u64());
        if tty {
            eprint!("\r{line}");
            std::io::stderr().flush().ok();
        } else if line != last_printed {
            eprintln!("{line}");
        }
        last_printed = line;
        match state {
            "completed" => {
                if tty {
                    eprintln!();
                }
                println!(
                    "backfill of {id} completed: {done} contacts scanned, {} joined, {} left",
                    backfill["joined"].as_u64().unwrap_or(0),
                    backfill["left"].as_u64().unwrap_or(0)
                );
                return Ok(());
            }
            "failed" => {
                if tty {
                    eprintln!();
                }
                bail!(
                    "backfill of {id} failed: {}",
                    backfill["error"].as_str().unwrap_or("unknown error")
                );
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Percent-encode a path segment (bucket ids are usually plain, but need not be).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_progress_when_drawn_then_the_bar_fills_in_proportion() {
        assert_eq!(
            progress_line("running", 0, Some(10)),
            format!("[{}]   0%  0/10 running", "-".repeat(30))
        );
        assert_eq!(
            progress_line("running", 5, Some(10)),
            format!("[{}{}]  50%  5/10 running", "#".repeat(15), "-".repeat(15))
        );
        assert_eq!(
            progress_line("completed", 10, Some(10)),
            format!("[{}] 100%  10/10 completed", "#".repeat(30))
        );
    }

    #[test]
    fn given_an_unknown_or_empty_total_when_drawn_then_it_never_overflows() {
        assert!(progress_line("pending", 0, None).contains("0/0 pending"));
        assert!(progress_line("completed", 0, Some(0)).contains("100%"));
        assert!(progress_line("running", 12, Some(10)).contains("100%  12/12"));
    }

    #[test]
    fn given_a_bucket_id_when_put_in_a_path_then_it_is_percent_encoded() {
        assert_eq!(encode("power-users"), "power-users");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
