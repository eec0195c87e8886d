//! Authoring anywhere: a module scaffolded by `waymark new` in a directory outside the
//! repository builds against the SDK written into it, deploys with `waymark deploy`, and a
//! change to it is verified against the live runs before it is deployed.

mod support;

use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};
use support::{Server, ServerOptions, started_run};

fn waymark(dir: &Path, args: &[&str]) -> Output {
    Command::new(support::BIN)
        .current_dir(dir)
        .args(args)
        .env("WAYMARK_LOG", "warn")
        .output()
        .expect("running waymark")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn a_module_scaffolded_outside_the_repository_builds_deploys_and_verifies_its_changes() {
    let server = Server::start(ServerOptions::default()).await;
    let outside = tempfile::tempdir().unwrap();
    assert!(
        !outside.path().starts_with(support::repo_root()),
        "the scaffold must live outside the repository"
    );

    // Given a module scaffolded outside the repository
    let made = waymark(outside.path(), &["new", "hello"]);
    assert!(made.status.success(), "{}", text(&made));
    let module = outside.path().join("hello");
    assert!(module.join("waymark-sdk/wit/waymark.wit").is_file());

    // When it is deployed from there (built first)
    let api = ["--url", server.base.as_str(), "--key", server.key.as_str()];
    let deploy = |extra: &[&str]| {
        let mut args = vec!["deploy", "hello"];
        args.extend(extra);
        args.extend(api);
        waymark(outside.path(), &args)
    };
    let deployed = deploy(&[]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    assert!(
        text(&deployed).contains("journeys: +hello-welcome"),
        "{}",
        text(&deployed)
    );

    // Then a sign-up starts its journey, which sleeps a day after the welcome email
    let signup = json!({ "name": "user.signed_up", "userId": "ada", "email": "ada@example.com" });
    let run = started_run(&server.send_event(signup).await);
    server.run_reaches(&run, "waiting").await;

    // When a step is inserted before the sleep, --verify reports the run would diverge, and
    // deploys nothing
    let lib = module.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let changed = source.replace(
        "    ctx.sleep(days(1)",
        "    ctx.checkpoint(\"welcomed\");\n    ctx.sleep(days(1)",
    );
    assert_ne!(changed, source);
    std::fs::write(&lib, changed).unwrap();
    let verified = deploy(&["--verify"]);
    assert!(!verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("diverges at step 1"),
        "{}",
        text(&verified)
    );
    let before = server.get("/v1/modules/hello").await["versions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, 1);

    // When the step is appended after the sleep instead, --migrate deploys it and moves the run
    let appended = source.replace(
        "    Ok(())\n}",
        "    ctx.checkpoint(\"followed up\");\n    Ok(())\n}",
    );
    std::fs::write(&lib, appended).unwrap();
    let migrated = deploy(&["--migrate"]);
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(
        text(&migrated).contains("moved 1 of 1 live run(s)"),
        "{}",
        text(&migrated)
    );
    let active = server.get("/v1/modules/hello").await["activeVersion"].clone();
    assert_eq!(server.run(&run).await["moduleVersion"], active);

    // And `waymark build` works there too, with no source named
    let built = waymark(&module, &["build"]);
    assert!(built.status.success(), "{}", text(&built));
    assert!(module.join("target/modules/hello.wasm").is_file());
}

/// `waymark dev` serving the module source in a directory, with data and modules dirs of its
/// own; killed when dropped.
struct DevServer {
    child: std::process::Child,
    base: String,
    key: String,
    data: tempfile::TempDir,
    _modules: tempfile::TempDir,
    client: reqwest::Client,
}

impl DevServer {
    fn spawn(dir: &Path) -> DevServer {
        use std::io::{BufRead, BufReader};
        let (data, modules) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let log_path = data.path().join("dev.log");
        let mut child = Command::new(support::BIN)
            .current_dir(dir)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--modules")
            .arg(modules.path())
            .env("WAYMARK_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("spawning waymark dev");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let base = stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let rest = line.strip_prefix("waymark listening on ")?;
                Some(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .unwrap_or_else(|| {
                panic!(
                    "waymark dev did not start:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            });
        let key = std::fs::read_to_string(data.path().join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        DevServer {
            child,
            base,
            key,
            data,
            _modules: modules,
            client: support::http_client(),
        }
    }

    /// The version of `module` serving now.
    async fn active_version(&self, module: &str) -> serde_json::Value {
        let response = self
            .client
            .get(format!("{}/v1/modules/{module}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        response.json::<serde_json::Value>().await.unwrap()["activeVersion"].clone()
    }

    /// Saves `file` with `from` replaced by `to`, then waits until a new version of `module`
    /// is live: how long that took from the save.
    async fn save_and_wait_live(
        &self,
        module: &str,
        file: &Path,
        from: &str,
        to: &str,
    ) -> std::time::Duration {
        let first = self.active_version(module).await;
        assert!(first.is_string(), "{module} is served: {first}");
        let source = std::fs::read_to_string(file).unwrap();
        assert!(source.contains(from), "{} has {from:?}", file.display());
        std::fs::write(file, source.replace(from, to)).unwrap();
        let saved = std::time::Instant::now();
        let deadline = saved + std::time::Duration::from_secs(300);
        while self.active_version(module).await == first {
            assert!(
                std::time::Instant::now() < deadline,
                "no new version; log:\n{}",
                std::fs::read_to_string(self.data.path().join("dev.log")).unwrap_or_default()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        saved.elapsed()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test]
async fn waymark_dev_rebuilds_a_saved_module_and_puts_it_live() {
    // Given `waymark dev` serving a module scaffolded outside the repository
    let outside = tempfile::tempdir().unwrap();
    let made = waymark(outside.path(), &["new", "hello"]);
    assert!(made.status.success(), "{}", text(&made));
    let module = outside.path().join("hello");
    let dev = DevServer::spawn(&module);

    // When a source file is saved with a change
    // Then it is rebuilt and the new version goes live, without a restart
    let took = dev
        .save_and_wait_live(
            "hello",
            &module.join("src/lib.rs"),
            "How is it going?",
            "How is it going so far?",
        )
        .await;
    eprintln!("save → live, rebuild included: {took:?}");
}

#[tokio::test]
async fn a_typescript_module_scaffolded_outside_the_repository_tests_builds_deploys_and_hot_reloads()
 {
    let server = Server::start(ServerOptions::default()).await;
    let outside = tempfile::tempdir().unwrap();

    // Given a TypeScript module scaffolded outside the repository
    let made = waymark(outside.path(), &["new", "hello", "--lang", "ts"]);
    assert!(made.status.success(), "{}", text(&made));
    let module = outside.path().join("hello");
    assert!(
        module
            .join("waymark-sdk/guest-sdk/ts/src/index.ts")
            .is_file()
    );
    let index = module.join("src/index.ts");
    let source = std::fs::read_to_string(&index).unwrap();

    // When its handler has a type error, the build fails with tsc's error
    std::fs::write(
        &index,
        source.replace("ctx.sleep(days(1),", "ctx.sleep('one day',"),
    )
    .unwrap();
    let broken = waymark(&module, &["build"]);
    assert!(!broken.status.success(), "{}", text(&broken));
    assert!(
        text(&broken).contains("src/index.ts") && text(&broken).contains("error TS2345"),
        "{}",
        text(&broken)
    );

    // When it is fixed, its own tests pass with the test kit
    std::fs::write(&index, &source).unwrap();
    let tested = Command::new("npm")
        .current_dir(&module)
        .args(["test"])
        .output()
        .expect("running npm test");
    assert!(tested.status.success(), "{}", text(&tested));

    // And it deploys from there (built first)
    let api = ["--url", server.base.as_str(), "--key", server.key.as_str()];
    let deploy = || {
        let mut args = vec!["deploy", "hello"];
        args.extend(api);
        waymark(outside.path(), &args)
    };
    let deployed = deploy();
    assert!(deployed.status.success(), "{}", text(&deployed));
    assert!(
        text(&deployed).contains("journeys: +hello-welcome"),
        "{}",
        text(&deployed)
    );

    // Then a sign-up gets the welcome email the TypeScript journey sends
    let signup = json!({ "name": "user.signed_up", "userId": "ada", "email": "ada@example.com",
                         "contactProperties": { "name": "Ada" } });
    let run = started_run(&server.send_event(signup).await);
    server.run_reaches(&run, "waiting").await;
    let emails = server.get("/v1/emails?to=ada@example.com").await;
    assert_eq!(emails["emails"][0]["subject"], "Welcome, Ada!", "{emails}");

    // And deploying again neither rebuilds nor changes anything
    let component = module.join("dist/hello.wasm");
    let built_at = std::fs::metadata(&component).unwrap().modified().unwrap();
    let again = deploy();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already active, nothing changed"),
        "{}",
        text(&again)
    );
    assert_eq!(
        std::fs::metadata(&component).unwrap().modified().unwrap(),
        built_at,
        "the component was not rebuilt"
    );

    // When `waymark dev` serves it and the TypeScript is saved with a change
    // Then it is rebuilt (type-checked, bundled, componentized) and goes live without a restart
    let dev = DevServer::spawn(&module);
    std::fs::write(&index, &source).unwrap();
    let took = dev
        .save_and_wait_live(
            "hello",
            &index,
            "How is it going?",
            "How is it going so far?",
        )
        .await;
    eprintln!("TypeScript save → live, rebuild included: {took:?}");
}
