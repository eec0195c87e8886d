//! Email end to end: HTML templates over a real SMTP sink, the signed unsubscribe link followed
//! over real HTTP, suppression of later sends, the journey's suppress window, the
//! `is-subscribed` import, and the tenant template API (`/v1/templates`).

mod support;

use serde_json::{Value, json};
use support::smtp::{ReceivedMail, SmtpSink};
use support::{Backend, Server, ServerOptions, started_run, tenant_key};

async fn newsletter_server(backend: Backend, sink: &SmtpSink) -> Server {
    Server::start(ServerOptions {
        backend,
        modules: vec!["newsletter"],
        smtp_port: Some(sink.port),
        ..Default::default()
    })
    .await
}

fn request(user: &str, email: &str) -> Value {
    json!({
        "name": "newsletter.requested",
        "userId": user,
        "email": email,
        "contactProperties": { "name": "Ada <3" },
    })
}

/// Send the trigger and wait for the run to complete; its detail.
async fn newsletter_run(server: &Server, user: &str, email: &str) -> Value {
    let response = server.send_event(request(user, email)).await;
    let run_id = started_run(&response);
    server.run_reaches(&run_id, "completed").await
}

/// The journal step of `kind` in a run's timeline.
fn step<'a>(run: &'a Value, kind: &str) -> &'a Value {
    run["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .find(|s| s["step"] == kind)
        .unwrap_or_else(|| panic!("no {kind} step in {run}"))
}

async fn emails_to(server: &Server, address: &str) -> Vec<Value> {
    server.get(&format!("/v1/emails?to={address}")).await["emails"]
        .as_array()
        .expect("emails")
        .clone()
}

/// The mail's headers unfolded (a long header may continue on indented lines).
fn header(mail: &ReceivedMail, name: &str) -> Option<String> {
    let head = mail.data.split("\n\n").next().unwrap_or_default();
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let prefix = format!("{}:", name.to_lowercase());
    unfolded
        .lines()
        .find(|line| line.to_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
}

e2e!(
    an_html_email_carries_a_signed_unsubscribe_link_and_after_following_it_later_sends_are_suppressed,
    |backend: Backend| async move {
        // Given the newsletter journey delivering to an SMTP sink
        let sink = SmtpSink::start().await;
        let server = newsletter_server(backend, &sink).await;

        // When Ada asks for the newsletter
        let first = newsletter_run(&server, "ada", "ada@example.com").await;

        // Then she was subscribed, and the email arrives as text and HTML alternatives with
        // one-click unsubscribe headers
        assert_eq!(step(&first, "is-subscribed")["response"]["ok"], true);
        assert_eq!(step(&first, "send-email")["response"]["status"], "queued");
        let mail = server
            .eventually("the newsletter at the sink", async || {
                sink.messages_to("ada@example.com").into_iter().next()
            })
            .await;
        assert!(
            header(&mail, "Content-Type").is_some_and(|t| t.contains("multipart/alternative")),
            "multipart: {}",
            mail.data
        );
        assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
        assert_eq!(
            header(&mail, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let list_unsubscribe = header(&mail, "List-Unsubscribe").expect("List-Unsubscribe");
        let url = list_unsubscribe
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned();
        assert!(
            url.starts_with(&format!("{}/v1/email/unsubscribe?token=", server.base)),
            "the link points at this host: {url}"
        );
        // The HTML body escapes the person's name; the stored email keeps both bodies
        let stored = server
            .eventually("the email recorded as sent", async || {
                let emails = emails_to(&server, "ada@example.com").await;
                (emails[0]["status"] == "sent").then(|| emails[0].clone())
            })
            .await;
        let html = stored["html"].as_str().expect("an HTML body");
        assert!(html.contains("Hello Ada &lt;3"), "{html}");
        let token = url.split("token=").nth(1).unwrap();
        assert!(html.contains(token), "the HTML links the same token: {html}");
        assert!(stored["body"].as_str().unwrap().contains(&url));

        // When she follows the link from the email (a plain GET, no API key)
        let page = reqwest::get(&url).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("unsubscribed"));

        // And asks again, after the suppress window: an unsubscribed person enters no journey
        server.advance_clock("2h").await;
        let again = server.send_event(request("ada", "ada@example.com")).await;
        assert_eq!(again["started"], json!([]), "{again}");
        assert_eq!(again["skipped"][0]["reason"], "user_unsubscribed", "{again}");

        // When a subscribed person's run forwards the newsletter to her address
        let mut forward = request("bob", "bob@example.com");
        forward["eventProperties"] = json!({ "to": "ada@example.com" });
        let forwarded = started_run(&server.send_event(forward).await);
        let second = server.run_reaches(&forwarded, "completed").await;

        // Then that email is recorded as suppressed
        assert_eq!(step(&second, "is-subscribed")["response"]["ok"], true);
        let verdict = &step(&second, "send-email")["response"];
        assert_eq!(verdict["status"], "suppressed");
        assert_eq!(verdict["reason"], "unsubscribed");
        let emails = emails_to(&server, "ada@example.com").await;
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0]["status"], "suppressed", "{emails:?}");
        assert_eq!(emails[0]["suppressedReason"], "unsubscribed");

        // And it never reaches SMTP: Bob's later email is delivered, Ada still has one
        newsletter_run(&server, "bob", "bob@example.com").await;
        server
            .eventually("Bob's newsletter at the sink", async || {
                sink.messages_to("bob@example.com").into_iter().next()
            })
            .await;
        assert_eq!(sink.messages_to("ada@example.com").len(), 1);

        // And following the link again is harmless
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    }
);

e2e!(
    a_forged_malformed_or_missing_unsubscribe_token_is_a_400_and_unsubscribes_nobody,
    |backend: Backend| async move {
        // Given Ada received a newsletter with a genuine link
        let sink = SmtpSink::start().await;
        let server = newsletter_server(backend, &sink).await;
        newsletter_run(&server, "ada", "ada@example.com").await;
        let mail = server
            .eventually("the newsletter at the sink", async || {
                sink.messages_to("ada@example.com").into_iter().next()
            })
            .await;
        let url = header(&mail, "List-Unsubscribe").unwrap();
        let url = url.trim_start_matches('<').trim_end_matches('>');
        let token = url.split("token=").nth(1).unwrap();
        let (payload, signature) = token.split_once('.').unwrap();

        // When someone edits the payload (another address) but keeps the signature
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
        claims["e"] = json!("bob@example.com");
        let forged = format!(
            "{}.{signature}",
            engine.encode(serde_json::to_vec(&claims).unwrap())
        );
        for bad in [forged.as_str(), "garbage", "", "e30.AAAA"] {
            let response = reqwest::get(server.url(&format!("/v1/email/unsubscribe?token={bad}")))
                .await
                .unwrap();
            // Then each is refused with a clear page
            assert_eq!(response.status(), 400, "token {bad:?}");
            assert!(response.text().await.unwrap().contains("does not work"));
        }
        let response = reqwest::get(server.url("/v1/email/unsubscribe"))
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        // And one-click POST answers JSON naming the field
        let (status, body) = server
            .request(
                reqwest::Method::POST,
                &format!("/v1/email/unsubscribe?token={forged}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["field"], "token", "{body}");

        // And nobody was unsubscribed: the next email is queued and sent
        server.advance_clock("2h").await;
        let run = newsletter_run(&server, "ada", "ada@example.com").await;
        assert_eq!(step(&run, "is-subscribed")["response"]["ok"], true);

        // While the genuine link, used one-click, works
        let (status, body) = server
            .request(
                reqwest::Method::POST,
                &format!("/v1/email/unsubscribe?token={token}"),
                None,
                None,
            )
            .await;
        assert_eq!(
            (status, &body["unsubscribed"]),
            (200, &json!(true)),
            "{body}"
        );
    }
);

e2e!(
    a_second_email_of_a_journey_to_one_address_within_its_suppress_window_is_recorded_not_sent,
    |backend: Backend| async move {
        // Given the newsletter journey, whose suppress window is one hour
        let sink = SmtpSink::start().await;
        let server = newsletter_server(backend, &sink).await;
        newsletter_run(&server, "ada", "ada@example.com").await;

        // When Ada asks again within the hour
        server.advance_clock("30m").await;
        let second = newsletter_run(&server, "ada", "ada@example.com").await;

        // Then that email is suppressed by the window
        let verdict = &step(&second, "send-email")["response"];
        assert_eq!(verdict["status"], "suppressed");
        assert_eq!(verdict["reason"], "journey_suppress_window");

        // And after the window, the next one is sent again
        server.advance_clock("31m").await;
        let third = newsletter_run(&server, "ada", "ada@example.com").await;
        assert_eq!(step(&third, "send-email")["response"]["status"], "queued");
        server
            .eventually("two newsletters at the sink", async || {
                (sink.messages_to("ada@example.com").len() == 2).then_some(())
            })
            .await;
        // (newest first; the last one is recorded sent once the sink accepted it)
        server
            .eventually("the statuses sent, suppressed, sent", async || {
                let statuses: Vec<Value> = emails_to(&server, "ada@example.com")
                    .await
                    .iter()
                    .map(|e| e["status"].clone())
                    .collect();
                (statuses == [json!("sent"), json!("suppressed"), json!("sent")]).then_some(())
            })
            .await;
    }
);

e2e!(
    templates_are_validated_upserted_listed_and_override_the_modules_at_the_next_send,
    |backend: Backend| async move {
        let sink = SmtpSink::start().await;
        let server = newsletter_server(backend, &sink).await;
        let put = |key: &'static str, body: Value| {
            let server = &server;
            async move {
                server
                    .request(
                        reqwest::Method::PUT,
                        &format!("/v1/templates/{key}"),
                        Some(body),
                        Some(&server.key),
                    )
                    .await
            }
        };

        // A part that does not parse is a 400 naming it
        for (field, body) in [
            ("subject", json!({"subject": "{% if %}", "text": "ok"})),
            ("text", json!({"subject": "ok", "text": "{{ unclosed"})),
            (
                "html",
                json!({"subject": "ok", "text": "ok", "html": "{% for %}"}),
            ),
        ] {
            let (status, response) = put("news", body).await;
            assert_eq!(status, 400, "{response}");
            assert_eq!(response["details"]["field"], field, "{response}");
        }
        let (status, _) = put("news", json!({"subject": "ok"})).await;
        assert_eq!(status, 400, "the text body is required");

        // Created, then replaced
        let (status, created) = put(
            "news",
            json!({"subject": "Edited: news for {{ key }}", "text": "Edited copy."}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let (status, updated) = put(
            "news",
            json!({"subject": "Edited again for {{ key }}", "text": "Edited copy.",
                   "html": "<b>Edited</b>"}),
        )
        .await;
        assert_eq!(status, 200, "{updated}");
        assert_eq!(updated["createdAt"], created["createdAt"]);
        let listed = server.get("/v1/templates").await;
        assert_eq!(listed["templates"].as_array().unwrap().len(), 1);
        assert_eq!(listed["templates"][0]["key"], "news");
        assert_eq!(
            server.get("/v1/templates/news").await["html"],
            "<b>Edited</b>"
        );

        // The running host uses the tenant's template at the next send, without a restart
        newsletter_run(&server, "ada", "ada@example.com").await;
        let mail = server
            .eventually("the edited newsletter at the sink", async || {
                sink.messages_to("ada@example.com").into_iter().next()
            })
            .await;
        assert_eq!(mail.subject(), "Edited again for ada");

        // Another tenant sees none of it
        let other = tenant_key(&server, "acme", "read,deploy");
        let (status, listed) = server
            .request(reqwest::Method::GET, "/v1/templates", None, Some(&other))
            .await;
        assert_eq!((status, listed["templates"].clone()), (200, json!([])));
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/templates/news",
                None,
                Some(&other),
            )
            .await;
        assert_eq!(status, 404);
        let (status, _) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/templates/news",
                None,
                Some(&other),
            )
            .await;
        assert_eq!(status, 404);

        // Deleting the override falls back to the module's template
        let (status, _) = server
            .request(
                reqwest::Method::DELETE,
                "/v1/templates/news",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 204);
        let (status, _) = server
            .request(
                reqwest::Method::GET,
                "/v1/templates/news",
                None,
                Some(&server.key),
            )
            .await;
        assert_eq!(status, 404);
        server.advance_clock("2h").await;
        newsletter_run(&server, "ada", "ada@example.com").await;
        let mail = server
            .eventually("the module's newsletter at the sink", async || {
                sink.messages_to("ada@example.com").into_iter().nth(1)
            })
            .await;
        assert_eq!(mail.subject(), "News for Ada <3");
    }
);
