//! The TypeScript example (`examples/ts-onboarding`), end to end: built by `waymark build`
//! from its TypeScript sources, served by the host, driven with the dev clock through its
//! sleep, its wait (answered, filtered out, timed out) and its bucket reaction, with the exact
//! emails it sends (minijinja drops a template's final newline, as for every template).

mod support;

use serde_json::{Value, json};
use support::{Backend, Server, ServerOptions, started_run};

/// The emails to `to`, as (subject, body), oldest first.
async fn emails_to(server: &Server, to: &str) -> Vec<(String, String)> {
    let listed = server.get(&format!("/v1/emails?to={to}")).await;
    let mut emails: Vec<&Value> = listed["emails"].as_array().unwrap().iter().collect();
    emails.sort_by_key(|e| e["createdAt"].as_str().unwrap_or_default().to_owned());
    emails
        .into_iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap_or_default().to_owned(),
                e["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until run `id` is waiting at its `n`th wait-or-sleep step.
async fn waiting_at(server: &Server, id: &str, step: &str) -> Value {
    server
        .eventually(&format!("run {id} waiting at {step}"), async || {
            let run = server.run(id).await;
            (run["status"] == "waiting"
                && support::steps(&run).last().map(String::as_str) == Some(step))
            .then_some(run)
        })
        .await
}

fn signup(user: &str, name: &str) -> Value {
    json!({
        "name": "user.signed_up",
        "userId": user,
        "email": format!("{user}@example.com"),
        "contactProperties": { "name": name },
    })
}

fn project(user: &str, properties: Value) -> Value {
    json!({ "name": "project.created", "userId": user, "eventProperties": properties })
}

e2e!(
    the_typescript_onboarding_example_congratulates_nudges_and_reacts_to_active_creators,
    |backend: Backend| async move {
        // Given a dev server running the TypeScript example
        let server = Server::start(ServerOptions {
            backend,
            modules: vec!["ts-onboarding"],
            dev: true,
            ..Default::default()
        })
        .await;

        // When Ada and Bo sign up
        let ada = started_run(&server.send_event(signup("ada", "Ada")).await);
        let bo = started_run(&server.send_event(signup("bo", "Bo")).await);

        // Then each gets the welcome email and sleeps a day
        waiting_at(&server, &ada, "sleep").await;
        waiting_at(&server, &bo, "sleep").await;
        let welcome = |name: &str| {
            (
                format!("Welcome aboard, {name}!"),
                format!(
                    "Hi {name},\n\nYour account is ready. Create your first project to get going."
                ),
            )
        };
        assert_eq!(
            emails_to(&server, "ada@example.com").await,
            [welcome("Ada")]
        );
        assert_eq!(emails_to(&server, "bo@example.com").await, [welcome("Bo")]);

        // When the day passes, both wait for their first project
        server.advance_clock("1d").await;
        waiting_at(&server, &ada, "wait-for-event").await;
        waiting_at(&server, &bo, "wait-for-event").await;

        // When Ada creates "Apollo", and Bo creates a project with no name (the wait's filter
        // does not hold for it)
        server
            .send_event(project("ada", json!({ "name": "Apollo" })))
            .await;
        server
            .send_event(project("bo", json!({ "draft": true })))
            .await;

        // Then Ada's run completes with the congratulation naming her project
        server.run_reaches(&ada, "completed").await;
        assert_eq!(
            emails_to(&server, "ada@example.com").await,
            [
                welcome("Ada"),
                (
                    "Apollo is live".to_owned(),
                    "Nice work, Ada: Apollo is your first project.".to_owned()
                ),
            ]
        );
        // And Bo is still waiting
        assert_eq!(server.run(&bo).await["status"], "waiting");

        // When three days pass with no named project, Bo's wait times out into the nudge
        server.advance_clock("3d").await;
        server.run_reaches(&bo, "completed").await;
        assert_eq!(
            emails_to(&server, "bo@example.com").await,
            [
                welcome("Bo"),
                (
                    "Need a hand getting started?".to_owned(),
                    "Hi Bo,\n\nYou have not created a project yet. Reply to this email and we will help."
                        .to_owned()
                ),
            ]
        );

        // And the handlers' log lines (ctx.info, console.warn) reached the host's log
        let log = server.log();
        assert_eq!(support::log_lines_with(&log, "ada created Apollo").len(), 1);
        assert_eq!(
            support::log_lines_with(&log, "bo has no project yet").len(),
            1
        );

        // When Cy creates three projects, Cy joins the active creators and the reaction runs
        server
            .send_event(
                json!({"name": "contact.created", "userId": "cy", "email": "cy@example.com"}),
            )
            .await;
        let mut entered = Value::Null;
        for n in 1..=3 {
            entered = server
                .send_event(project("cy", json!({ "name": format!("p{n}") })))
                .await;
        }
        let reaction = started_run(&entered);
        server.run_reaches(&reaction, "completed").await;
        assert_eq!(
            emails_to(&server, "cy@example.com").await,
            [(
                "You are on a roll".to_owned(),
                "3 projects in a month. Thank you for building with us.".to_owned()
            )]
        );
        // And the reaction marked the contact
        let contact = server.get("/v1/contacts/cy").await;
        assert_eq!(contact["properties"]["active_creator"], true, "{contact}");
    }
);
