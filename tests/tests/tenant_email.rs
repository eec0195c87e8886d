//! A tenant's own sender (`/v1/email/settings`) end to end: its SMTP server over STARTTLS (and
//! implicit TLS) with AUTH and a self-signed certificate trusted through `--mail-ca-file`, a
//! refused login recorded and retried until the password is fixed; an HTTP provider (a local
//! fake Postmark) with its key sealed and never answered; settings that cannot work refused
//! naming the field with nothing changed; a secret that no longer opens under the host's key
//! failing its send with the reason instead of the host; and a host without the options
//! verifying certificates and refusing to store secrets.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::fake_postmark::{FakePostmark, WRONG_TOKEN};
use support::smtp::SmtpSink;
use support::tls_smtp::{REFUSED_LOGIN, TlsSmtpServer};
use support::{Backend, Server, ServerOptions, module_bytes, tenant_key};

const SECRETS_KEY: &str = "8f3c1b0e5d2a49c7b6e1f0a3d4c5b6a7988776655443322110ffeeddccbbaa99";

fn signup(user: &str) -> Value {
    json!({ "name": "user.signed_up", "userId": user, "email": format!("{user}@example.com") })
}

/// `method path` with `body` as `key`: the status and the answer.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
    key: &str,
) -> (u16, Value) {
    server.request(method, path, body, Some(key)).await
}

/// The one email to `address` once `done` holds for it.
async fn email_when(
    server: &Server,
    key: &str,
    address: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    server
        .eventually_within(what, Duration::from_secs(90), async || {
            let (_, listed) = call(
                server,
                Method::GET,
                &format!("/v1/emails?to={address}"),
                None,
                key,
            )
            .await;
            let email = listed["emails"].as_array()?.first()?.clone();
            done(&email).then_some(email)
        })
        .await
}

fn smtp_settings(port: u16, password: &str) -> Value {
    json!({
        "from": { "name": "Acme", "address": "hello@acme.test" },
        "replyTo": "support@acme.test",
        "transport": {
            "kind": "smtp", "host": "localhost", "port": port, "security": "starttls",
            "username": "acme-mailer", "password": password,
        },
    })
}

e2e!(
    a_tenant_sends_through_its_own_smtp_server_and_a_refused_login_is_retried_until_fixed,
    |backend: Backend| async move {
        // Given a host whose own transport is a plain sink, trusting the tenant's SMTP server's
        // self-signed certificate through --mail-ca-file
        let tenant_smtp = TlsSmtpServer::start("acme-mailer", "correct horse").await;
        let ca = tempfile::tempdir().unwrap();
        let ca_file = ca.path().join("private-ca.pem");
        std::fs::write(&ca_file, &tenant_smtp.certificate_pem).unwrap();
        let host_sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            smtp_port: Some(host_sink.port),
            extra_args: vec![
                "--mail-ca-file".into(),
                ca_file.display().to_string(),
                "--secrets-key".into(),
                SECRETS_KEY.into(),
            ],
            ..Default::default()
        })
        .await;
        // And tenant acme with the welcome series, whose sender is its server with a wrong
        // password
        let acme = tenant_key(&server, "acme", "admin,deploy,ingest,read");
        let (status, body) = server
            .upload_module("welcome-series", module_bytes("welcome-series"), &acme)
            .await;
        assert_eq!(status, 201, "{body}");
        let settings = smtp_settings(tenant_smtp.port, "wrong horse");
        let (status, body) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(settings),
            &acme,
        )
        .await;
        assert_eq!(status, 201, "{body}");

        // When Ada signs up with acme
        let (status, _) = call(
            &server,
            Method::POST,
            "/v1/events",
            Some(signup("ada")),
            &acme,
        )
        .await;
        assert_eq!(status, 202);

        // Then the send fails with the server's answer, and the email waits for its retry
        let failed = email_when(
            &server,
            &acme,
            "ada@example.com",
            "the refused login",
            |e| e["attempts"] == 1,
        )
        .await;
        assert_eq!(failed["status"], "queued", "{failed}");
        let error = failed["lastError"].as_str().unwrap_or_default();
        assert!(
            error.contains(REFUSED_LOGIN.trim_start_matches("535 ")),
            "{error}"
        );
        assert_eq!(tenant_smtp.refused_logins(), 1);
        assert!(tenant_smtp.messages_to("ada@example.com").is_empty());

        // When the tenant fixes its password
        let fixed = smtp_settings(tenant_smtp.port, "correct horse");
        let (status, body) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(fixed),
            &acme,
        )
        .await;
        assert_eq!(status, 200, "{body}");

        // Then the retry (after its backoff) goes out through the tenant's server, from its
        // sender
        let sent = email_when(&server, &acme, "ada@example.com", "the retried send", |e| {
            e["status"] == "sent"
        })
        .await;
        assert_eq!(sent["attempts"], 2, "{sent}");
        let mail = tenant_smtp
            .messages_to("ada@example.com")
            .pop()
            .expect("the email at the tenant's server");
        let from = mail.header("From").unwrap_or_default();
        assert!(
            from.contains("Acme") && from.contains("<hello@acme.test>"),
            "{from}"
        );
        assert_eq!(
            mail.header("Reply-To").as_deref(),
            Some("support@acme.test")
        );
        assert!(
            mail.subject().starts_with("Welcome to Waymark"),
            "{}",
            mail.data
        );

        // And the settings read back without the password
        let (status, shown) = call(&server, Method::GET, "/v1/email/settings", None, &acme).await;
        assert_eq!(status, 200);
        assert_eq!(shown["transport"]["passwordSet"], true, "{shown}");
        assert_eq!(shown["transport"]["username"], "acme-mailer");
        assert!(!shown.to_string().contains("horse"), "{shown}");

        // And the default tenant, which set nothing, still sends through the host's transport
        server.send_event(signup("bob")).await;
        let to_host = server
            .eventually("bob's email at the host's sink", async || {
                host_sink.messages_to("bob@example.com").pop()
            })
            .await;
        assert_eq!(
            to_host.header("From").as_deref(),
            Some("Waymark <waymark@localhost>")
        );
        assert!(tenant_smtp.messages_to("bob@example.com").is_empty());

        // When acme moves to the server's implicit-TLS port, leaving out the stored password
        let implicit = json!({
            "from": { "name": "Acme", "address": "hello@acme.test" },
            "transport": { "kind": "smtp", "host": "localhost", "port": tenant_smtp.tls_port,
                           "security": "tls", "username": "acme-mailer" },
        });
        let (status, body) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(implicit),
            &acme,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["transport"]["passwordSet"], true, "{body}");

        // Then the next email goes out over TLS from the first byte, with the kept password
        let (status, _) = call(
            &server,
            Method::POST,
            "/v1/events",
            Some(signup("carol")),
            &acme,
        )
        .await;
        assert_eq!(status, 202);
        email_when(
            &server,
            &acme,
            "carol@example.com",
            "carol's email sent",
            |e| e["status"] == "sent",
        )
        .await;
        assert_eq!(tenant_smtp.messages_to("carol@example.com").len(), 1);
        assert_eq!(tenant_smtp.refused_logins(), 1);

        // When acme deletes its settings, they are gone
        let (status, _) = call(&server, Method::DELETE, "/v1/email/settings", None, &acme).await;
        assert_eq!(status, 204);
        let (status, _) = call(&server, Method::GET, "/v1/email/settings", None, &acme).await;
        assert_eq!(status, 404);
    }
);

e2e!(
    a_tenant_sends_through_an_http_provider_and_settings_that_cannot_work_change_nothing,
    |backend: Backend| async move {
        // Given a dev host (which keeps a secrets key in its data dir) and a provider
        let provider = FakePostmark::start("server-token-1").await;
        let mut server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            ..Default::default()
        })
        .await;
        let key = server.key.clone();

        // When the tenant's sender is set to the provider
        let postmark = |api_key: &str| {
            json!({
                "from": { "address": "news@acme.test" },
                "transport": { "kind": "http", "provider": "postmark",
                               "endpoint": provider.url, "apiKey": api_key },
            })
        };
        let (status, stored) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(postmark("server-token-1")),
            &key,
        )
        .await;
        assert_eq!(status, 201, "{stored}");

        // Then the key is stored sealed, and never shown
        assert_eq!(stored["transport"]["apiKeySet"], true, "{stored}");
        assert!(!stored.to_string().contains("server-token-1"), "{stored}");
        assert!(server.data_dir.path().join("secrets.key").exists());

        // When settings that cannot work are put
        let smtp = |transport: Value| json!({ "from": { "address": "news@acme.test" }, "transport": transport });
        let refused = [
            (
                smtp(json!({ "kind": "smtp", "host": "smtp.invalid" })),
                "transport.host",
            ),
            (
                smtp(json!({ "kind": "smtp", "host": "localhost", "port": 70000 })),
                "transport.port",
            ),
            (
                smtp(json!({ "kind": "smtp", "host": "localhost", "security": "ssl" })),
                "transport.security",
            ),
            (smtp(json!({ "kind": "pigeon" })), "transport.kind"),
            (
                smtp(
                    json!({ "kind": "http", "provider": "postmark", "apiKey": "k", "endpoint": "http://api.invalid" }),
                ),
                "transport.endpoint",
            ),
            (
                json!({ "from": { "address": "not an address" }, "transport": { "kind": "smtp" } }),
                "from.address",
            ),
        ];
        for (body, field) in refused {
            let (status, answer) =
                call(&server, Method::PUT, "/v1/email/settings", Some(body), &key).await;
            // Then each is a 400 naming the field
            assert_eq!(
                (status, answer["details"]["field"].as_str()),
                (400, Some(field)),
                "{answer}"
            );
        }
        // And nothing of them was applied
        let (_, shown) = call(&server, Method::GET, "/v1/email/settings", None, &key).await;
        assert_eq!(shown, stored);

        // When Ada signs up
        server.send_event(signup("ada")).await;

        // Then the provider receives the email as JSON with the tenant's key
        let sent = email_when(&server, &key, "ada@example.com", "the email sent", |e| {
            e["status"] == "sent"
        })
        .await;
        let received = provider
            .calls_to("ada@example.com")
            .pop()
            .expect("a call to the provider");
        assert_eq!(received.token.as_deref(), Some("server-token-1"));
        assert_eq!(received.body["From"], "news@acme.test");
        assert_eq!(received.body["Subject"], sent["subject"]);
        assert_eq!(received.body["TextBody"], sent["body"]);
        assert_eq!(
            received.body["Headers"][0]["Value"],
            format!("<{}@waymark>", sent["id"].as_str().unwrap())
        );

        // When the key is wrong, the provider's refusal is the failed attempt's error
        let (status, _) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(postmark("expired-token")),
            &key,
        )
        .await;
        assert_eq!(status, 200);
        server.send_event(signup("linus")).await;
        let refused = email_when(
            &server,
            &key,
            "linus@example.com",
            "the provider's refusal",
            |e| e["attempts"] == 1,
        )
        .await;
        assert_eq!(refused["status"], "queued");
        let error = refused["lastError"].as_str().unwrap_or_default();
        assert!(
            error.contains(WRONG_TOKEN) && error.contains("401"),
            "{error}"
        );

        // When the host restarts with another secrets key
        std::fs::remove_file(server.data_dir.path().join("secrets.key")).unwrap();
        server.restart().await;
        server.send_event(signup("grace")).await;

        // Then the secret does not open: a failed send saying why, and the host carries on
        let failed = email_when(
            &server,
            &key,
            "grace@example.com",
            "the unopened secret",
            |e| e["attempts"] == 1,
        )
        .await;
        let error = failed["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("sealed under secrets key"), "{error}");
        assert!(provider.calls_to("grace@example.com").is_empty());
        let (status, _) = call(&server, Method::GET, "/v1/health", None, &key).await;
        assert_eq!(status, 200);
    }
);

e2e!(
    a_host_without_a_ca_file_or_secrets_key_verifies_certificates_and_stores_no_secret,
    |backend: Backend| async move {
        // Given a host outside dev mode with neither --mail-ca-file nor --secrets-key
        let tenant_smtp = TlsSmtpServer::start("acme-mailer", "correct horse").await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            dev: false,
            ..Default::default()
        })
        .await;
        let key = server.key.clone();

        // When the tenant sets a password
        let (status, answer) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(smtp_settings(tenant_smtp.port, "correct horse")),
            &key,
        )
        .await;

        // Then it is refused naming the flag, and nothing is stored
        assert_eq!(status, 409, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("--secrets-key"),
            "{answer}"
        );
        assert!(!server.data_dir.path().join("secrets.key").exists());
        let (status, _) = call(&server, Method::GET, "/v1/email/settings", None, &key).await;
        assert_eq!(status, 404);

        // When it sets the same server without AUTH, which needs no secret
        let no_auth = json!({
            "from": { "address": "hello@acme.test" },
            "transport": { "kind": "smtp", "host": "localhost", "port": tenant_smtp.port },
        });
        let (status, answer) = call(
            &server,
            Method::PUT,
            "/v1/email/settings",
            Some(no_auth),
            &key,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        server.send_event(signup("ada")).await;

        // Then the self-signed certificate, which nothing told the host to trust, fails the send
        let failed = email_when(
            &server,
            &key,
            "ada@example.com",
            "the untrusted certificate",
            |e| e["attempts"] == 1,
        )
        .await;
        let error = failed["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("invalid peer certificate"), "{error}");
        assert!(tenant_smtp.messages_to("ada@example.com").is_empty());
    }
);
