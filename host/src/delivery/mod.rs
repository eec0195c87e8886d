//! Delivery: sends the emails that activations queued in the outbox. The outbox row is
//! committed with the activation that queued it, so nothing leaves the process before the
//! journey's step is durable; this worker then claims rows, sends them over SMTP (or only logs
//! them in development) and records the outcome, retrying failures with backoff.
//!
//! What "once" means. An email is queued exactly once (with the step that sent it). Workers of
//! several processes claim disjoint emails under a lease, and just before each send a worker
//! makes sure it still holds that email's lease for the whole send (renewing it if the batch's
//! lease is running short — refused if another worker took the email after the lease lapsed),
//! and a send is abandoned after [`SEND_TIMEOUT`]; so two live workers never send one email.
//! The SMTP leg itself is at-least-once: a process that dies after the server accepted an
//! email but before its status update leaves it queued, and it is sent again once the lease
//! lapses — at most the one email each worker was sending, since a worker sends one at a time.
//! Every message carries a stable `Message-ID` (`<email-id@waymark>`) so receivers can drop
//! that duplicate. This module must not render templates or touch journeys.
//!
//! A message is text-only, or multipart/alternative (text and HTML) when its template has an
//! HTML body, and carries `List-Unsubscribe` (the signed link) with `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click` (RFC 8058). An email whose recipient unsubscribed after it was
//! queued is suppressed by the claim (see the store's outbox), never sent.

pub mod templates;
pub mod unsubscribe;

use crate::clock::Clock;
use crate::clock::Timestamp;
use crate::store::{DeliveryResult, Lease, Outbox, OutboxEmail};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Attempts before an email is marked failed.
const MAX_ATTEMPTS: u32 = 5;
/// How long a claim holds, for a batch and when renewed for one send.
const LEASE: Duration = Duration::from_secs(60);
/// The longest one send may take; a slower one is abandoned and retried.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack for clocks of different hosts disagreeing about when a lease lapses.
const CLOCK_SKEW: Duration = Duration::from_secs(10);
const IDLE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
pub enum TransportConfig {
    /// Development default: log the email and mark it sent.
    Log,
    /// Plain SMTP (no TLS) to `host:port`, e.g. a local relay or a test sink.
    Smtp { host: String, port: u16 },
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    #[error("building the message failed: {0}")]
    Message(String),
    #[error("SMTP send failed: {0}")]
    Smtp(String),
}

pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    Log,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn new(config: &TransportConfig, from: &str) -> Result<Self, DeliveryError> {
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| DeliveryError::Address(from.to_owned(), e.to_string()))?;
        let transport = match config {
            TransportConfig::Log => Transport::Log,
            TransportConfig::Smtp { host, port } => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
                    .port(*port)
                    .timeout(Some(Duration::from_secs(30)))
                    .build(),
            ),
        };
        Ok(Self { from, transport })
    }

    pub async fn send(&self, email: &OutboxEmail) -> Result<(), DeliveryError> {
        let to = email
            .to
            .parse::<Mailbox>()
            .map_err(|e| DeliveryError::Address(email.to.clone(), e.to_string()))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}@waymark>", email.id)));
        if let Some(url) = &email.unsubscribe_url {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let message = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.body.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(email.body.clone()),
        }
        .map_err(|e| DeliveryError::Message(e.to_string()))?;
        match &self.transport {
            Transport::Log => {
                tracing::info!(target: "waymark::delivery", email = %email.id, to = %email.to, subject = %email.subject, "email (log transport, not sent)");
                Ok(())
            }
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(|e| DeliveryError::Smtp(e.to_string())),
        }
    }
}

/// Backoff before attempt `attempts + 1`: 10 s, 20 s, 40 s, …
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(10u64.saturating_mul(1 << attempts.min(10)))
}

pub struct DeliveryWorker {
    pub store: Arc<dyn Outbox>,
    pub mailer: Arc<Mailer>,
    pub clock: Clock,
    pub wake: Arc<Notify>,
    pub owner: String,
}

impl DeliveryWorker {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        loop {
            let lease = Lease::starting_now(&self.owner, LEASE);
            let batch = match self.store.claim_outbox(&lease, 32).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!("claiming the outbox failed: {err}");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            for email in batch {
                if !self.holds_for_one_send(&email, lease.until_real).await {
                    continue;
                }
                let sent = tokio::time::timeout(SEND_TIMEOUT, self.mailer.send(&email))
                    .await
                    .unwrap_or_else(|_| {
                        Err(DeliveryError::Smtp(format!(
                            "no answer within {}s",
                            SEND_TIMEOUT.as_secs()
                        )))
                    });
                let result = match sent {
                    Ok(()) => DeliveryResult::Sent {
                        at: self.clock.now(),
                    },
                    Err(err) => {
                        let attempts = email.attempts + 1;
                        let retry_at = (attempts < MAX_ATTEMPTS)
                            .then(|| Clock::real_now().saturating_add(retry_delay(email.attempts)));
                        tracing::warn!(email = %email.id, attempts, "delivery failed: {err}");
                        DeliveryResult::Failed {
                            error: err.to_string(),
                            retry_at,
                        }
                    }
                };
                if let Err(err) = self.store.record_delivery(&email.id, result).await {
                    tracing::error!(email = %email.id, "recording the delivery failed: {err}");
                }
            }
        }
    }

    /// Whether this worker may send `email` now: its claim (until `claimed_until`) outlasts a
    /// whole send, or renewing it for one send succeeded. False when another worker took the
    /// email after this worker's lease lapsed (a slow batch), or it is no longer queued.
    async fn holds_for_one_send(&self, email: &OutboxEmail, claimed_until: Timestamp) -> bool {
        if !lease_runs_short(Clock::real_now(), claimed_until) {
            return true;
        }
        let renewal = Lease::starting_now(&self.owner, LEASE);
        match self.store.renew_outbox_lease(&email.id, &renewal).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(email = %email.id, "not sending: another worker holds it now");
                false
            }
            Err(err) => {
                tracing::error!(email = %email.id, "renewing the claim failed: {err}");
                false
            }
        }
    }
}

/// Whether a claim until `until` may lapse (on some host's clock) before a send started `now`
/// is over.
fn lease_runs_short(now: Timestamp, until: Timestamp) -> bool {
    now.saturating_add(SEND_TIMEOUT + CLOCK_SKEW) >= until
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially() {
        assert_eq!(retry_delay(0), Duration::from_secs(10));
        assert_eq!(retry_delay(3), Duration::from_secs(80));
    }

    #[test]
    fn a_claim_is_renewed_only_when_it_could_lapse_during_a_send() {
        let now = Timestamp(1_000_000);
        assert!(!lease_runs_short(now, now.saturating_add(LEASE)));
        assert!(lease_runs_short(
            now,
            now.saturating_add(SEND_TIMEOUT + CLOCK_SKEW)
        ));
        assert!(lease_runs_short(now, Timestamp(now.0 - 1)));
    }

    #[test]
    fn a_bad_sender_address_is_refused_up_front() {
        assert!(matches!(
            Mailer::new(&TransportConfig::Log, "not an address"),
            Err(DeliveryError::Address(..))
        ));
    }
}
