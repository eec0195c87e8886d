//! Usage per tenant, end to end: a tenant's events, activations, time in guests and emails
//! sent are counted per UTC day of the host clock, apart from every other tenant's; the
//! operator's views say the same; the dev clock moved past midnight counts on a new day; and
//! a bad range is a 400 naming its parameter.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::smtp::SmtpSink;
use support::{Backend, Server, ServerOptions, started_run, tenant_key};
use waymark::clock::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// The host clock's day, `YYYY-MM-DD`, `days` after the one at `now_ms`.
fn day(now_ms: i64, days: i64) -> String {
    Timestamp(now_ms + days * DAY_MS).to_rfc3339()[..10].to_owned()
}

/// The host clock's now, in ms.
async fn host_now(server: &Server) -> i64 {
    server.get("/v1/admin/clock").await["nowMs"]
        .as_i64()
        .unwrap()
}

/// Move the dev clock to 01:00 UTC of the next day, so the test has a day's hours before
/// the next midnight, whatever the real time.
async fn start_of_a_day(server: &Server) -> i64 {
    let now = host_now(server).await;
    let target = (now.div_euclid(DAY_MS) + 1) * DAY_MS + 3_600_000;
    server.advance_clock(&format!("{}ms", target - now)).await;
    host_now(server).await
}

fn signup(user: &str, key: &str) -> Value {
    json!({
        "name": "user.signed_up",
        "userId": user,
        "email": format!("{user}@example.com"),
        "contactProperties": {"name": user},
        "idempotencyKey": key,
    })
}

/// A day's (or the total's) counts without the time in guests, which is asserted apart.
fn counts(view: &Value) -> (u64, u64, u64) {
    (
        view["events"].as_u64().unwrap(),
        view["activations"].as_u64().unwrap(),
        view["emailsSent"].as_u64().unwrap(),
    )
}

fn cpu_ms(view: &Value) -> f64 {
    view["cpuMs"].as_f64().unwrap()
}

/// Wait until the tenant's emails are all recorded as sent, `count` of them.
async fn emails_sent(server: &Server, count: usize) {
    server
        .eventually("the emails recorded as sent", async || {
            let emails = server.get("/v1/emails").await;
            let emails = emails["emails"].as_array().unwrap().clone();
            (emails.len() == count && emails.iter().all(|e| e["status"] == "sent")).then_some(())
        })
        .await;
}

e2e!(
    a_tenants_usage_counts_its_events_activations_cpu_and_emails_per_day_apart_from_others,
    |backend: Backend| async move {
        // Given the welcome series on the default tenant, mail to a local SMTP sink, tenant
        // acme made by the operator, and the host clock at 01:00 UTC of some day
        let sink = SmtpSink::start().await;
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["welcome-series"],
            smtp_port: Some(sink.port),
            ..Default::default()
        })
        .await;
        let operator = server.operator_key();
        let (status, acme) = server
            .request(
                Method::POST,
                "/v1/tenants",
                Some(json!({"name": "acme"})),
                Some(&operator),
            )
            .await;
        assert_eq!(status, 201, "{acme}");
        let acme_key = acme["adminKey"]["key"].as_str().unwrap().to_owned();
        let now = start_of_a_day(&server).await;
        let today = day(now, 0);

        // When two people sign up, one sign-up comes twice (its idempotency key already
        // used), ada visits, and an invalid event is refused
        let ada = started_run(&server.send_event(signup("ada", "signup-ada")).await);
        let bob = started_run(&server.send_event(signup("bob", "signup-bob")).await);
        let again = server.send_event(signup("ada", "signup-ada")).await;
        assert_eq!(again["stored"], false);
        server
            .send_event(json!({"name": "page.visited", "userId": "ada"}))
            .await;
        let (status, _) = server.post("/v1/events", json!({"name": ""})).await;
        assert_eq!(status, 400);
        // And acme ingests one event of its own
        let (status, _) = server
            .request(
                Method::POST,
                "/v1/events",
                Some(json!({"name": "page.visited", "userId": "zed"})),
                Some(&acme_key),
            )
            .await;
        assert_eq!(status, 202);
        // And both welcome emails go out, and both runs sleep their two days
        emails_sent(&server, 2).await;
        server.run_reaches(&ada, "waiting").await;
        server.run_reaches(&bob, "waiting").await;

        // Then the default tenant's usage is today's: three events, two activations (as
        // many as the host committed), two emails, and time in its guests
        let usage = server.get("/v1/usage").await;
        assert_eq!(usage["from"], day(now, -29), "the last 30 days: {usage}");
        assert_eq!(usage["to"], today);
        let days = usage["days"].as_array().unwrap();
        assert_eq!(days.len(), 1, "{usage}");
        assert_eq!(days[0]["day"], today);
        assert_eq!(counts(&days[0]), (3, 2, 2), "{usage}");
        assert_eq!(server.committed_activations().len(), 2);
        assert!(cpu_ms(&days[0]) > 0.0, "{usage}");
        assert_eq!(usage["total"], {
            let mut total = days[0].clone();
            total.as_object_mut().unwrap().remove("day");
            total
        });
        // And acme's is its own: one event, nothing else
        let (status, acme_usage) = server
            .request(Method::GET, "/v1/usage", None, Some(&acme_key))
            .await;
        assert_eq!(status, 200, "{acme_usage}");
        assert_eq!(counts(&acme_usage["total"]), (1, 0, 0));
        assert_eq!(cpu_ms(&acme_usage["total"]), 0.0);

        // And the operator sees the same of each, by name or id, and every tenant's totals
        let as_operator = async |path: &str| {
            let (status, body) = server
                .request(Method::GET, path, None, Some(&operator))
                .await;
            assert_eq!(status, 200, "GET {path}: {body}");
            body
        };
        assert_eq!(as_operator("/v1/tenants/default/usage").await, usage);
        let acme_id = acme["id"].as_str().unwrap();
        assert_eq!(
            as_operator(&format!("/v1/tenants/{acme_id}/usage")).await,
            acme_usage
        );
        let every = as_operator("/v1/usage/tenants").await;
        assert_eq!(
            (&every["from"], &every["to"]),
            (&usage["from"], &usage["to"])
        );
        let tenants = every["tenants"].as_array().unwrap();
        let names: Vec<&str> = tenants
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["default", "acme"]);
        assert_eq!(tenants[0]["total"], usage["total"]);
        assert_eq!(tenants[1]["total"], acme_usage["total"]);
        assert_eq!(tenants[1]["id"], acme["id"]);

        // When the clock moves three days on (past midnight), the runs wake and send their
        // follow-ups, and ada comes back
        server.advance_clock("3d").await;
        let later = day(now, 3);
        server.run_reaches(&ada, "completed").await;
        server.run_reaches(&bob, "completed").await;
        emails_sent(&server, 4).await;
        server
            .send_event(json!({"name": "page.visited", "userId": "ada"}))
            .await;

        // Then that day counts on its own, and the first day is as it was
        let usage = server.get("/v1/usage").await;
        assert_eq!(usage["to"], later);
        let days = usage["days"].as_array().unwrap();
        let listed: Vec<&str> = days.iter().map(|d| d["day"].as_str().unwrap()).collect();
        assert_eq!(listed, [today.as_str(), later.as_str()], "{usage}");
        assert_eq!(counts(&days[0]), (3, 2, 2));
        assert_eq!(counts(&days[1]), (1, 2, 2));
        assert!(cpu_ms(&days[1]) > 0.0, "{usage}");
        assert_eq!(counts(&usage["total"]), (4, 4, 4));
        assert_eq!(server.committed_activations().len(), 4);
        // And a range of that day alone holds it alone
        let only = server
            .get(&format!("/v1/usage?from={later}&to={later}"))
            .await;
        assert_eq!(only["days"].as_array().unwrap().len(), 1);
        assert_eq!(counts(&only["total"]), (1, 2, 2));
    }
);

e2e!(
    a_bad_usage_range_is_a_400_naming_its_parameter_after_the_key_is_checked,
    |backend: Backend| async move {
        let server = Server::start(ServerOptions {
            backend,
            ..Default::default()
        })
        .await;
        let operator = server.operator_key();
        let get =
            async |path: &str, key: &str| server.request(Method::GET, path, None, Some(key)).await;

        // Then each bad range is a 400 naming its parameter, on the tenant's route and the
        // operator's alike
        for (query, param) in [
            ("from=2026-13-01", "from"),
            ("from=2026-02-30", "from"),
            ("to=tomorrow", "to"),
            ("to=2026-1-5", "to"),
            ("from=2026-12-08&to=2026-12-07", "from"),
            ("from=2025-01-01&to=2026-12-31", "from"),
        ] {
            for (path, key) in [
                ("/v1/usage", server.key.as_str()),
                ("/v1/tenants/default/usage", operator.as_str()),
                ("/v1/usage/tenants", operator.as_str()),
            ] {
                let (status, body) = get(&format!("{path}?{query}"), key).await;
                assert_eq!(status, 400, "{path}?{query}: {body}");
                assert_eq!(body["details"]["field"], param, "{path}?{query}: {body}");
                assert!(
                    body["error"].as_str().unwrap().contains(param),
                    "{path}?{query}: {body}"
                );
            }
        }
        // And a whole year is one range; an unknown parameter is refused
        let (status, body) = get("/v1/usage?from=2025-12-07&to=2026-12-07", &server.key).await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = get("/v1/usage?since=2026-12-01", &server.key).await;
        assert_eq!(status, 400);
        // And a key without read scope is refused before its range is looked at, and an
        // unknown tenant is a 404 to the operator
        let ingest_only = tenant_key(&server, "acme", "ingest");
        let (status, body) = get("/v1/usage?from=nonsense", &ingest_only).await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = get("/v1/tenants/nobody/usage", &operator).await;
        assert_eq!(status, 404);
    }
);
