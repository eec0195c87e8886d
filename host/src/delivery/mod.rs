//! Delivery: sends the emails that activations queued in the outbox. The outbox row is
//! committed with the activation that queued it, so nothing leaves the process before the
//! journey's step is durable; this worker then claims rows, sends them with their tenant's
//! sender ([`senders`]: its own SMTP server or HTTP provider, else the host's command-line
//! SMTP, or only a log line in development) and records the outcome, retrying failures —
//! a refused login or a provider's error included — with backoff.
//!
//! What "once" means. An email is queued exactly once (with the step that sent it). Workers of
//! several processes claim disjoint emails under a lease, and just before each send a worker
//! makes sure it still holds that email's lease for the whole send (renewing it if the batch's
//! lease is running short — refused if another worker took the email after the lease lapsed),
//! and a send is abandoned after [`SEND_TIMEOUT`]; so two live workers never send one email.
//! The hand-off itself is at-least-once: a process that dies after the server accepted an
//! email but before its status update leaves it queued, and it is sent again once the lease
//! lapses — at most the one email each worker was sending, since a worker sends one at a time.
//! Every message carries a stable `Message-ID` (`<email-id@waymark>`) so receivers can drop
//! that duplicate. This module must not render templates or touch journeys.
//!
//! A message is text-only, or multipart/alternative (text and HTML) when its template has an
//! HTML body, and carries `List-Unsubscribe` (the signed link) with `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click` (RFC 8058). An email whose recipient unsubscribed after it was
//! queued is suppressed by the claim (see the store's outbox), never sent.

pub mod http_provider;
mod mailer;
pub mod senders;
pub mod templates;
pub mod unsubscribe;

pub use mailer::{MailTls, Mailer, SmtpSecurity, TransportConfig};
pub use senders::Senders;

use crate::clock::Clock;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{DeliveryResult, Lease, Outbox, OutboxEmail};
use std::collections::HashMap;
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

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    #[error("building the message failed: {0}")]
    Message(String),
    #[error("SMTP send failed: {0}")]
    Smtp(String),
    /// An HTTP provider refused the email, or could not be reached.
    #[error("{provider} send failed: {message}")]
    Provider {
        provider: &'static str,
        message: String,
    },
    /// The tenant's sender settings cannot be used (e.g. a secret that does not open).
    #[error("the tenant's sender settings cannot be used: {0}")]
    Sender(String),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// Backoff before attempt `attempts + 1`: 10 s, 20 s, 40 s, …
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(10u64.saturating_mul(1 << attempts.min(10)))
}

pub struct DeliveryWorker {
    pub store: Arc<dyn Outbox>,
    /// Which mailer each tenant's email goes out with.
    pub senders: Arc<Senders>,
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
            // Each tenant's sender is looked up once a batch: a change of its settings on any
            // host applies from the next batch on.
            let mut mailers: HashMap<TenantId, Result<Arc<Mailer>, String>> = HashMap::new();
            for email in batch {
                if !self.holds_for_one_send(&email, lease.until_real).await {
                    continue;
                }
                if !mailers.contains_key(&email.tenant_id) {
                    let mailer = self.senders.mailer(&email.tenant_id).await;
                    mailers.insert(email.tenant_id.clone(), mailer.map_err(|e| e.to_string()));
                }
                let sent = match &mailers[&email.tenant_id] {
                    Ok(mailer) => tokio::time::timeout(SEND_TIMEOUT, mailer.send(&email))
                        .await
                        .unwrap_or_else(|_| {
                            Err(DeliveryError::Smtp(format!(
                                "no answer within {}s",
                                SEND_TIMEOUT.as_secs()
                            )))
                        })
                        .map_err(|e| e.to_string()),
                    Err(reason) => Err(reason.clone()),
                };
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
                            error: err,
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
}
