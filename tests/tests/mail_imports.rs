//! The `send-email` and `is-subscribed` imports at the runtime level, with a real compiled guest
//! (`newsletter`) and a stand-in for the store's email reads: the verdicts are journaled and a
//! replay reuses them after the person unsubscribed; a tenant template overrides the module's;
//! a store failure is a host error that records nothing.

mod support;

use async_trait::async_trait;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use support::runtime::RuntimeFixture;
use waymark::clock::Timestamp;
use waymark::delivery::templates::TemplateSource;
use waymark::journeys::journal::{JournalEntry, StepKind};
use waymark::modules::LoadedModule;
use waymark::runtime::mail::{MailRead, MailReader};

use waymark::runtime::{ActivationOutcome, ActivationReport, ActivationRequest, RuntimeError};
use waymark::store::{EmailStatus, SuppressedReason};

/// One tenant's email facts, changeable by the test; counts every read it answers.
#[derive(Default)]
struct Mailroom {
    unsubscribed: AtomicBool,
    sent_recently: AtomicBool,
    down: AtomicBool,
    template: Mutex<Option<TemplateSource>>,
    reads: AtomicU32,
}

impl Mailroom {
    fn read(&self) -> MailRead<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err("database is down".into());
        }
        Ok(())
    }
}

#[async_trait]
impl MailReader for Mailroom {
    async fn tenant_template(&self, _key: &str) -> MailRead<Option<TemplateSource>> {
        self.read()?;
        Ok(self.template.lock().unwrap().clone())
    }

    async fn is_unsubscribed(&self, _contact_key: &str, _email: Option<&str>) -> MailRead<bool> {
        self.read()?;
        Ok(self.unsubscribed.load(Ordering::SeqCst))
    }

    async fn journey_emailed_since(&self, _: &str, _: &str, _: Timestamp) -> MailRead<bool> {
        self.read()?;
        Ok(self.sent_recently.load(Ordering::SeqCst))
    }

    async fn unsubscribe_url(&self, key: &str, _email: &str, _at: Timestamp) -> MailRead<String> {
        self.read()?;
        Ok(format!("https://mail.example.com/u/{key}"))
    }
}

struct Fixture(RuntimeFixture);

impl std::ops::Deref for Fixture {
    type Target = RuntimeFixture;

    fn deref(&self) -> &RuntimeFixture {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        Fixture(RuntimeFixture::new(
            "newsletter.requested",
            json!({"name": "Ada"}).as_object().cloned().unwrap(),
        ))
    }

    async fn activate(
        &self,
        module: &LoadedModule,
        journal: Vec<JournalEntry>,
        mail: &Arc<Mailroom>,
    ) -> Result<ActivationReport, RuntimeError> {
        self.registry
            .runtime()
            .activate(
                &module.compiled,
                ActivationRequest {
                    mail: mail.clone(),
                    suppress_ms: module.journey("newsletter").unwrap().suppress,
                    ..self.request(module, "newsletter", journal)
                },
            )
            .await
    }
}

fn step(journal: &[JournalEntry], kind: StepKind) -> &JournalEntry {
    journal
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} step in {journal:?}"))
}

#[tokio::test]
async fn given_a_subscribed_person_when_replayed_after_they_unsubscribed_then_the_journaled_verdicts_stand()
 {
    // Given the newsletter journey (suppress window one hour) and a subscribed person
    let fx = Fixture::new();
    let module = fx.load("newsletter").await;
    assert_eq!(
        module.journey("newsletter").unwrap().suppress,
        3_600_000,
        "the manifest carries the window"
    );
    let mail = Arc::new(Mailroom::default());

    // When the run activates
    let first = fx.activate(&module, vec![], &mail).await.unwrap();

    // Then it asked whether the person is subscribed and queued a rendered, multipart email
    assert_eq!(first.outcome, ActivationOutcome::Completed);
    assert_eq!(
        step(&first.journal, StepKind::IsSubscribed).response,
        json!({ "ok": true })
    );
    let email = &first.emails[0];
    assert_eq!(email.status, EmailStatus::Queued);
    assert_eq!(email.subject, "News for Ada");
    assert_eq!(
        email.unsubscribe_url.as_deref(),
        Some("https://mail.example.com/u/p1")
    );
    assert!(
        email
            .body
            .contains("Unsubscribe: https://mail.example.com/u/p1")
    );
    let html = email.html.as_deref().expect("an HTML body");
    assert!(
        html.contains("https:&#x2f;&#x2f;mail.example.com&#x2f;u&#x2f;p1"),
        "{html}"
    );
    assert_eq!(
        step(&first.journal, StepKind::SendEmail).response,
        json!({ "ok": email.id.as_str(), "status": "queued", "reason": null })
    );
    let reads = mail.reads.load(Ordering::SeqCst);

    // When the person unsubscribes and the run is activated again with its journal
    mail.unsubscribed.store(true, Ordering::SeqCst);
    let replayed = fx
        .activate(&module, first.journal.clone(), &mail)
        .await
        .unwrap();

    // Then every step answers from the journal: nothing new, no email, no read
    assert_eq!(replayed.outcome, ActivationOutcome::Completed);
    assert!(replayed.journal.is_empty() && replayed.emails.is_empty());
    assert_eq!(mail.reads.load(Ordering::SeqCst), reads);

    // While a fresh run sees the opt-out, and its email is recorded as suppressed
    let fresh = fx.activate(&module, vec![], &mail).await.unwrap();
    assert_eq!(
        step(&fresh.journal, StepKind::IsSubscribed).response,
        json!({ "ok": false })
    );
    assert_eq!(fresh.emails[0].status, EmailStatus::Suppressed);
    assert_eq!(
        fresh.emails[0].suppressed_reason,
        Some(SuppressedReason::Unsubscribed)
    );
    assert_eq!(
        step(&fresh.journal, StepKind::SendEmail).response["reason"],
        "unsubscribed"
    );
}

#[tokio::test]
async fn given_a_recent_email_of_the_journey_then_the_send_is_suppressed_by_the_window() {
    let fx = Fixture::new();
    let module = fx.load("newsletter").await;
    let mail = Arc::new(Mailroom::default());
    mail.sent_recently.store(true, Ordering::SeqCst);

    let report = fx.activate(&module, vec![], &mail).await.unwrap();

    assert_eq!(report.emails[0].status, EmailStatus::Suppressed);
    assert_eq!(
        report.emails[0].suppressed_reason,
        Some(SuppressedReason::JourneySuppressWindow)
    );
}

#[tokio::test]
async fn given_a_tenant_template_of_the_same_key_then_it_is_rendered_instead_of_the_modules() {
    let fx = Fixture::new();
    let module = fx.load("newsletter").await;
    let mail = Arc::new(Mailroom::default());
    *mail.template.lock().unwrap() = Some(TemplateSource {
        subject: "Edited for {{ name }}".into(),
        text: "Edited.".into(),
        html: None,
    });

    let report = fx.activate(&module, vec![], &mail).await.unwrap();

    assert_eq!(report.emails[0].subject, "Edited for Ada");
    assert_eq!(report.emails[0].body, "Edited.");
    assert_eq!(report.emails[0].html, None, "a text-only template");
}

#[tokio::test]
async fn given_the_store_failing_when_a_guest_sends_email_then_the_activation_is_a_host_error() {
    let fx = Fixture::new();
    let module = fx.load("newsletter").await;
    let mail = Arc::new(Mailroom::default());
    mail.down.store(true, Ordering::SeqCst);

    match fx.activate(&module, vec![], &mail).await {
        Err(RuntimeError::HostUnavailable(message)) => {
            assert!(message.contains("database is down"), "{message}")
        }
        other => panic!("expected a host error, got {other:?}"),
    }
}
