//! Test support shared by the end-to-end tests: the real `waymark` binary as a child process,
//! real compiled modules, a real SMTP sink, and an HTTP client.
#![allow(dead_code)]

pub mod catalog;
pub mod fake_postmark;
pub mod runtime;
pub mod smtp;
pub mod tls_smtp;
pub mod welcome;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_waymark-under-test");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Build every example and test module once per test process (and once at a time across
/// processes), through the binary's own `waymark build`. Returns the directory of `.wasm` files.
pub fn built_modules() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo_root();
        let out = root.join("target/test-modules");
        std::fs::create_dir_all(&out).unwrap();
        let lock = std::fs::File::create(root.join("target/test-modules.lock")).unwrap();
        lock.lock().expect("locking the module build");
        let status = Command::new(BIN)
            .current_dir(&root)
            .args(["build", "--out"])
            .arg(&out)
            .args([
                "examples",
                "examples/ts-onboarding",
                "tests/guests",
                "tests/guests/js-hello",
                "tests/guests/ts-edge",
            ])
            .env("WAYMARK_LOG", "warn")
            .status()
            .expect("running waymark build");
        assert!(status.success(), "waymark build failed");
        lock.unlock().ok();
        out
    })
}

/// A fresh directory holding only the named modules (by build name, e.g. `welcome-series`).
pub fn modules_dir(names: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let from = built_modules().join(format!("{name}.wasm"));
        std::fs::copy(&from, dir.path().join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
    dir
}

/// The component `waymark build` made of `name` (e.g. `welcome-series`).
pub fn module_bytes(name: &str) -> Vec<u8> {
    let path = built_modules().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A client that drops a pooled connection after a few idle seconds: the server closes one
/// idle for `--idle-timeout` (30 s by default), and a test that blocks its runtime for longer
/// (a CLI build) would otherwise reuse a connection whose close it has not seen yet.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// Which database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests may use, when configured.
pub fn postgres_url() -> Option<String> {
    std::env::var("WAYMARK_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A fresh, empty PostgreSQL database for one test (dropped when this is dropped).
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        use sqlx::Connection;
        let admin_url = postgres_url().expect("WAYMARK_TEST_DATABASE_URL");
        let name = format!("waymark_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connecting to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url.as_str(), String::new()),
        };
        let server = base
            .rsplit_once('/')
            .map(|(server, _)| server)
            .unwrap_or(base);
        TestDatabase {
            url: format!("{server}/{name}{query}"),
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Best effort, on a thread of its own: Drop cannot await.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await
                        .ok();
                }
            });
        })
        .join()
        .ok();
    }
}

/// Run an end-to-end test body on SQLite and, when `WAYMARK_TEST_DATABASE_URL` is set, on
/// PostgreSQL: `e2e!(name, |backend| async move { … })` makes `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! e2e {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::support::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                if $crate::support::postgres_url().is_none() {
                    eprintln!(
                        "skipped: set WAYMARK_TEST_DATABASE_URL to run this test on PostgreSQL"
                    );
                    return;
                }
                ($body)($crate::support::Backend::Postgres).await
            }
        }
    };
}

pub struct ServerOptions {
    pub backend: Backend,
    pub modules: Vec<&'static str>,
    pub smtp_port: Option<u16>,
    pub dev: bool,
    pub extra_args: Vec<String>,
    /// More files for the `--modules` directory: (file name, contents).
    pub module_files: Vec<(&'static str, Vec<u8>)>,
    /// `WAYMARK_LOG` for the process (default `info,waymark=debug`).
    pub log_filter: Option<&'static str>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            modules: vec![],
            smtp_port: None,
            dev: true,
            extra_args: vec![],
            module_files: vec![],
            log_filter: None,
        }
    }
}

/// A running `waymark serve` on its own data dir and a free port — or, made by
/// [`Server::start_peer`], a second process sharing another's data dir and database.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub key: String,
    pub data_dir: Arc<TempDir>,
    /// The file in the data dir this process logs to (peers share the dir, not the log).
    log_file: String,
    modules: Arc<TempDir>,
    options_args: Vec<String>,
    log_filter: &'static str,
    pub database: Option<Arc<TestDatabase>>,
    client: reqwest::Client,
}

impl Server {
    pub async fn start(options: ServerOptions) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let modules = modules_dir(&options.modules);
        for (file, contents) in &options.module_files {
            std::fs::write(modules.path().join(file), contents).unwrap();
        }
        let mut args: Vec<String> = vec!["--modules".into(), modules.path().display().to_string()];
        let database = match options.backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Arc::new(TestDatabase::create().await)),
        };
        if let Some(database) = &database {
            args.extend(["--database-url".into(), database.url.clone()]);
        }
        if options.dev {
            args.push("--dev".into());
        }
        if let Some(port) = options.smtp_port {
            args.extend([
                "--smtp-host".into(),
                "127.0.0.1".into(),
                "--smtp-port".into(),
                port.to_string(),
            ]);
        }
        args.extend(options.extra_args);
        let mut server = Server {
            child: None,
            base: String::new(),
            key: String::new(),
            data_dir: Arc::new(data_dir),
            log_file: "server.log".into(),
            modules: Arc::new(modules),
            options_args: args,
            log_filter: options.log_filter.unwrap_or("info,waymark=debug"),
            database,
            client: http_client(),
        };
        server.spawn().await;
        server.boot_backfills_settled().await;
        server
    }

    /// Wait until every evaluated bucket's boot backfill completed. A first-time backfill
    /// joins its matchers silently (domain-spec §2.11.3), so a test that ingests or moves the
    /// clock while one still runs races it: a person it finds matching joins with no enter
    /// reaction, and the clock's own join then has nothing left to do.
    async fn boot_backfills_settled(&self) {
        // A plain loop rather than `eventually`: its async closure is not `Send` with a
        // borrowed server, and benches start servers on spawned tasks.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = self.get("/v1/buckets").await;
            let buckets = listed["buckets"].as_array().cloned().unwrap_or_default();
            let mut settled = true;
            for bucket in buckets.iter().filter(|b| {
                b["enabled"] == true && b["kind"] == "computed" && !b["criteria"].is_null()
            }) {
                let state = &bucket["backfillState"];
                assert_ne!(state, "failed", "boot backfill failed: {bucket}");
                settled &= state == "completed";
            }
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the boot backfills: {listed}; server log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A second `waymark serve` process on the same PostgreSQL database, data dir (module
    /// store, compiled artifacts and admin key: files written atomically, so sharing is safe),
    /// modules, SMTP sink and options as this one, on a port of its own and logging to
    /// `<name>.log`. Both schedule and deliver from the one database.
    pub async fn start_peer(&self, name: &str) -> Server {
        assert!(
            self.database.is_some(),
            "peers share a PostgreSQL database; the embedded SQLite one is single-process"
        );
        let mut peer = Server {
            child: None,
            base: String::new(),
            key: String::new(),
            data_dir: self.data_dir.clone(),
            log_file: format!("{name}.log"),
            modules: self.modules.clone(),
            options_args: self.options_args.clone(),
            log_filter: self.log_filter,
            database: self.database.clone(),
            client: http_client(),
        };
        peer.spawn().await;
        assert_eq!(peer.key, self.key, "peers share the admin key");
        peer
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.options_args)
            .env("WAYMARK_LOG", self.log_filter)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning waymark");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("waymark listening on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    tx.send(url).ok();
                }
            }
        });
        self.child = Some(child);
        let base = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(300)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("waymark did not start; log:\n{}", self.log()));
        self.base = base;
        self.key = std::fs::read_to_string(self.data_dir.path().join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
    }

    /// The `--modules` directory this server watches.
    pub fn modules_path(&self) -> &Path {
        self.modules.path()
    }

    /// Put `contents` in the modules directory as `file`, by rename (as `waymark build`
    /// does), so the watching server never reads half a file.
    pub fn drop_module_file(&self, file: &str, contents: &[u8]) {
        let tmp = self.modules.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, self.modules.path().join(file)).unwrap();
    }

    /// The server process's id (for benchmarks that read its memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join(&self.log_file)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flushing, nothing graceful.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Start again on the same data dir and modules.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Make the named modules (by build name) the ones this server loads at its next start,
    /// replacing the others: a deploy takes effect with [`Server::restart`].
    pub fn replace_modules(&self, names: &[&str]) {
        for entry in std::fs::read_dir(self.modules.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for name in names {
            let from = built_modules().join(format!("{name}.wasm"));
            std::fs::copy(&from, self.modules.path().join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
    }

    /// Run the binary's CLI against this server's data dir and database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .env("WAYMARK_LOG", "warn");
        if let Some(database) = &self.database {
            command.args(["--database-url", &database.url]);
        }
        command.output().expect("running the waymark CLI")
    }

    /// The operator key first boot wrote to the data dir (`operator.key`).
    pub fn operator_key(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("operator.key"))
            .expect("the operator key file")
            .trim()
            .to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request failed");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .request(reqwest::Method::GET, path, None, Some(&self.key))
            .await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body), Some(&self.key))
            .await
    }

    /// `POST /v1/modules/{name}` with `wasm` as the body, as `key`.
    pub async fn upload_module(&self, name: &str, wasm: Vec<u8>, key: &str) -> (u16, Value) {
        self.post_component(&format!("/v1/modules/{name}"), wasm, key)
            .await
    }

    /// `POST path` with a component as the body, as `key`.
    pub async fn post_component(&self, path: &str, wasm: Vec<u8>, key: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .expect("uploading a module");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Deploy the built module `build_name` as module `name` with the admin key; it must be
    /// accepted. The deploy's answer.
    pub async fn deploy(&self, name: &str, build_name: &str) -> Value {
        let (status, body) = self
            .upload_module(name, module_bytes(build_name), &self.key)
            .await;
        assert!(
            status == 200 || status == 201,
            "deploying {name}: {status} {body}"
        );
        body
    }

    pub async fn send_event(&self, body: Value) -> Value {
        let (status, response) = self.post("/v1/events", body).await;
        assert_eq!(status, 202, "POST /v1/events: {response}");
        response
    }

    pub async fn advance_clock(&self, by: &str) {
        let (status, body) = self
            .post("/v1/admin/clock/advance", json!({ "by": by }))
            .await;
        assert_eq!(status, 200, "advancing the clock: {body}");
    }

    pub async fn run(&self, id: &str) -> Value {
        self.get(&format!("/v1/runs/{id}")).await
    }

    /// `GET /v1/runs/{id}` with another tenant's `key`; it must answer 200.
    pub async fn run_as(&self, id: &str, key: &str) -> Value {
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/runs/{id}"),
                None,
                Some(key),
            )
            .await;
        assert_eq!(status, 200, "GET /v1/runs/{id}: {body}");
        body
    }

    /// Poll until `check` returns Some (work happens in background workers), or panic.
    pub async fn eventually<T>(&self, what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
        self.eventually_within(what, Duration::from_secs(60), check)
            .await
    }

    /// [`eventually`](Self::eventually) with a deadline of `limit` (for work at scale, or
    /// waiting out a dead process's leases).
    pub async fn eventually_within<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; server log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The ids of this process's committed activations, one per activation, from its debug
    /// log (the scheduler logs `activation committed` with the run).
    pub fn committed_activations(&self) -> Vec<String> {
        log_lines_with(&self.log(), "activation committed")
            .iter()
            .filter_map(|line| field(line, "run"))
            .collect()
    }

    /// Log lines saying an activation was claimed but did not commit (its run ended, it lost
    /// its lease, or it failed on the host side).
    pub fn uncommitted_activations(&self) -> Vec<String> {
        let log = self.log();
        let mut lines = log_lines_with(&log, "activation skipped");
        lines.extend(log_lines_with(&log, "activation not completed"));
        lines
    }

    /// Wait until the run reaches `status`, returning its detail.
    pub async fn run_reaches(&self, id: &str, status: &str) -> Value {
        self.eventually(&format!("run {id} to be {status}"), async || {
            let run = self.run(id).await;
            (run["status"] == status).then_some(run)
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The lines of a log that contain `needle`, with terminal colour codes removed.
pub fn log_lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .map(strip_ansi)
        .filter(|line| line.contains(needle))
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters… final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The value of a `name=value` field in a tracing log line.
fn field(line: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .map(|value| value.trim_matches('"').to_owned())
}

/// The id of the single run an event started.
pub fn started_run(response: &Value) -> String {
    let started = response["started"].as_array().expect("started runs");
    assert_eq!(started.len(), 1, "expected one started run: {response}");
    started[0]["runId"].as_str().unwrap().to_owned()
}

/// The kinds of a run's timeline steps, in order.
pub fn steps(run: &Value) -> Vec<String> {
    run["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| e["step"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Create a tenant and a key for it through the CLI, as an operator would, while the server
/// runs; returns the key's secret (the last line the command prints).
pub fn tenant_key(server: &Server, tenant: &str, scopes: &str) -> String {
    let created = server.cli(&["tenant", "create", tenant]);
    assert!(
        created.status.success(),
        "tenant create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = server.cli(&["key", "create", "--tenant", tenant, "--scopes", scopes]);
    assert!(
        key.status.success(),
        "key create: {}",
        String::from_utf8_lossy(&key.stderr)
    );
    let stdout = String::from_utf8(key.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("the key on the last line")
        .trim()
        .to_owned()
}
