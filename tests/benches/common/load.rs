//! Sending events to a server over HTTP, and what it took.

use super::percentile;
use crate::support::Server;
use serde_json::{Value, json};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Events per batch request (the API's maximum).
pub const BATCH: usize = 1_000;

/// What one run of requests produced.
#[derive(Default)]
pub struct Measured {
    /// Events in the requests that were acknowledged.
    pub events: usize,
    /// Requests sent, and those not answered 202.
    pub requests: usize,
    pub failures: usize,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Per request, sorted.
    pub latencies: Vec<Duration>,
    /// The bodies ran out (before the time did, when there was a limit).
    pub exhausted: bool,
}

impl Measured {
    /// Add another slice of the same phase.
    pub fn absorb(&mut self, slice: Measured) {
        self.events += slice.events;
        self.requests += slice.requests;
        self.failures += slice.failures;
        self.elapsed += slice.elapsed;
        self.latencies.extend(slice.latencies);
        self.latencies.sort_unstable();
        self.exhausted |= slice.exhausted;
    }

    /// Acknowledged events per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// The nearest-rank `p`th percentile (0 to 100) of the latencies, ms (NaN with none).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        percentile(&self.latencies, p / 100.0).as_secs_f64() * 1e3
    }
}

/// A request body: `value` as JSON.
pub fn serialise(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialising JSON")
}

/// A `POST /v1/events/batch` body of `events`.
pub fn batch_body(events: &[Value]) -> Vec<u8> {
    serialise(&json!({ "events": events }))
}

/// POST the `bodies` in turn from `clients` concurrent keep-alive clients (each a connection
/// of its own) until they run out or, given a `limit`, that time is up (requests then in
/// flight complete and count). Body `i` carries `events_per_body[i]` events; a request
/// succeeds when answered 202. Latency per request.
pub async fn post_bodies(
    server: &Server,
    path: &str,
    bodies: Vec<Vec<u8>>,
    events_per_body: &[usize],
    clients: usize,
    limit: Option<Duration>,
) -> Measured {
    post_bodies_across(&[server], path, bodies, events_per_body, clients, limit).await
}

/// [`post_bodies`] to several hosts sharing one database: body `i` goes to host `i` mod the
/// number of hosts, as a round-robin load balancer would send it, so the hosts take equal
/// shares whatever the number of clients; each client keeps a connection to every host.
pub async fn post_bodies_across(
    servers: &[&Server],
    path: &str,
    bodies: Vec<Vec<u8>>,
    events_per_body: &[usize],
    clients: usize,
    limit: Option<Duration>,
) -> Measured {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| s.url(path)).collect());
    let key = same_key(servers);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients.min(bodies.len()) {
        let (bodies, next, urls, key) = (bodies.clone(), next.clone(), urls.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client");
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut exhausted = false;
            while limit.is_none_or(|limit| start.elapsed() < limit) {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    exhausted = true;
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .post(&urls[index % urls.len()])
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let failure = match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(_) if status == 202 => None,
                            Ok(body) => {
                                let body = String::from_utf8_lossy(&body);
                                Some(format!("HTTP {status}: {body}"))
                            }
                            Err(error) => Some(format!("HTTP {status}: {error}")),
                        }
                    }
                    Err(error) => Some(error.to_string()),
                };
                latencies.push(sent.elapsed());
                if let Some(failure) = failure {
                    failures.push((index, failure));
                }
            }
            (latencies, failures, exhausted)
        }));
    }
    let mut measured = Measured::default();
    let mut failures = Vec::new();
    for task in tasks {
        let (latencies, failed, exhausted) = task.await.expect("a client task");
        measured.latencies.extend(latencies);
        failures.extend(failed);
        measured.exhausted |= exhausted;
    }
    measured.elapsed = start.elapsed();
    measured.latencies.sort_unstable();
    // The clients took the bodies in order: the first `requests` were sent.
    measured.requests = measured.latencies.len();
    measured.failures = failures.len();
    let failed_events: usize = failures.iter().map(|(i, _)| events_per_body[*i]).sum();
    measured.events = events_per_body[..measured.requests].iter().sum::<usize>() - failed_events;
    if let Some((index, failure)) = failures.first() {
        eprintln!(
            "  {} of {} requests to {path} failed; the first (#{index}): {failure}",
            failures.len(),
            measured.requests
        );
    }
    measured
}

/// Send events named `name` for people `{prefix}-{i}`, `i` in `people`, with `properties` as
/// their `eventProperties` if given, in batches of [`BATCH`].
pub async fn trigger(
    server: &Server,
    name: &str,
    prefix: &str,
    people: Range<usize>,
    properties: Option<&Value>,
) {
    let mut sent = people.start;
    while sent < people.end {
        let end = (sent + BATCH).min(people.end);
        let events: Vec<Value> = (sent..end)
            .map(|i| {
                let mut event = json!({ "name": name, "userId": format!("{prefix}-{i}") });
                if let Some(properties) = properties {
                    event["eventProperties"] = properties.clone();
                }
                event
            })
            .collect();
        let (status, body) = server
            .post("/v1/events/batch", json!({ "events": events }))
            .await;
        assert_eq!(status, 202, "batch: {body}");
        sent = end;
    }
}

/// The API key every one of `servers` accepts (hosts sharing a database share the admin key).
fn same_key(servers: &[&Server]) -> String {
    let key = servers.first().expect("a server").key.clone();
    assert!(
        servers.iter().all(|s| s.key == key),
        "the hosts share an admin key"
    );
    key
}

/// [`trigger`] through several hosts sharing one database (without `eventProperties`): batch
/// `j` goes to host `j` mod the number of hosts; each host takes its batches one after
/// another, the hosts at once. With one host, the batches go in turn, as [`trigger`] sends
/// them.
pub async fn trigger_across(servers: &[&Server], name: &str, prefix: &str, people: Range<usize>) {
    let key = same_key(servers);
    let mut tasks = Vec::with_capacity(servers.len());
    for (host, server) in servers.iter().enumerate() {
        let (url, key, name, prefix) = (
            server.url("/v1/events/batch"),
            key.clone(),
            name.to_owned(),
            prefix.to_owned(),
        );
        let starts: Vec<usize> = people
            .clone()
            .step_by(BATCH)
            .skip(host)
            .step_by(servers.len())
            .collect();
        let end = people.end;
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for start in starts {
                let events: Vec<Value> = (start..(start + BATCH).min(end))
                    .map(|i| json!({ "name": name, "userId": format!("{prefix}-{i}") }))
                    .collect();
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({ "events": events }))
                    .send()
                    .await
                    .expect("a batch request");
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                assert_eq!(status, 202, "batch: {body}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a trigger task");
    }
}

/// Wait until `journey` has `count` runs with `status` (and none failed); how long it took
/// from `since`, in seconds.
pub async fn until_runs(
    server: &Server,
    journey: &str,
    status: &str,
    count: u64,
    since: Instant,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        let runs = server.get(&format!("/v1/journeys/{journey}")).await["runs"].clone();
        if runs[status].as_u64().unwrap_or(0) >= count {
            return since.elapsed().as_secs_f64();
        }
        assert_eq!(
            runs["failed"].as_u64().unwrap_or(0),
            0,
            "{journey}: runs failed: {runs}"
        );
        assert!(
            Instant::now() < deadline,
            "{journey}: {count} runs never became {status}: {runs}"
        );
        // Not faster: each poll counts the journey's runs by status on the server, and polling
        // every 20 ms cost the server a third of its CPU in the journey bench's activations
        // phase. 100 ms is under 3% of the shortest phase measured.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
