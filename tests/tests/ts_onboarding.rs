//! The TypeScript example (`examples/ts-onboarding`), end to end: built by `waymark build`
//! from its TypeScript sources, served by the host, driven with the dev clock through its
//! wait (answered on the first day, filtered out, timed out), its sleep until a week after the
//! sign-up, its count of the week's projects and its bucket reaction, with the exact emails it
//! sends (minijinja drops a template's final newline, as for every template).

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

/// Waits until run `id` is waiting with `step` as the last step of its journal.
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
    the_typescript_onboarding_example_congratulates_nudges_sums_up_the_week_and_reacts_to_active_creators,
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

        // Then each gets the welcome email and, at once, waits for their first project
        waiting_at(&server, &ada, "wait-for-event").await;
        waiting_at(&server, &bo, "wait-for-event").await;
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

        // When, on their first day, Ada creates "Apollo", and Bo creates a project with no
        // name (the wait's filter does not hold for it)
        server
            .send_event(project("ada", json!({ "name": "Apollo" })))
            .await;
        server
            .send_event(project("bo", json!({ "draft": true })))
            .await;

        // Then Ada is congratulated at once, naming her project, and sleeps until her first week
        waiting_at(&server, &ada, "sleep-until").await;
        let congratulation = (
            "Apollo is live".to_owned(),
            "Nice work, Ada: Apollo is your first project.".to_owned(),
        );
        assert_eq!(
            emails_to(&server, "ada@example.com").await,
            [welcome("Ada"), congratulation.clone()]
        );
        // And Bo is still waiting for a named project
        let run = server.run(&bo).await;
        assert_eq!(run["status"], "waiting", "{run}");
        assert_eq!(
            support::steps(&run).last().map(String::as_str),
            Some("wait-for-event")
        );

        // When a day passes and Ada creates a second project
        server.advance_clock("1d").await;
        server
            .send_event(project("ada", json!({ "name": "Gemini" })))
            .await;

        // And two more days pass with no named project from Bo, his wait times out into the
        // nudge, and he sleeps until his first week too
        server.advance_clock("2d").await;
        waiting_at(&server, &bo, "sleep-until").await;
        let nudge = (
            "Need a hand getting started?".to_owned(),
            "Hi Bo,\n\nYou have not created a project yet. Reply to this email and we will help."
                .to_owned(),
        );
        assert_eq!(
            emails_to(&server, "bo@example.com").await,
            [welcome("Bo"), nudge.clone()]
        );

        // When the rest of the week passes, both get the first-week email with the number of
        // projects they created since signing up (Bo's unnamed one counts)
        server.advance_clock("4d").await;
        server.run_reaches(&ada, "completed").await;
        server.run_reaches(&bo, "completed").await;
        let first_week = |name: &str, projects: u32| {
            (
                format!("Your first week, {name}"),
                format!(
                    "Hi {name},\n\nYou have been with us for a week. Projects created so far: {projects}."
                ),
            )
        };
        assert_eq!(
            emails_to(&server, "ada@example.com").await,
            [welcome("Ada"), congratulation, first_week("Ada", 2)]
        );
        assert_eq!(
            emails_to(&server, "bo@example.com").await,
            [welcome("Bo"), nudge, first_week("Bo", 1)]
        );

        // And the handlers' log lines (ctx.info, console.warn) reached the host's log, once
        // each: the activations that replayed past them after the sleep wrote nothing
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
