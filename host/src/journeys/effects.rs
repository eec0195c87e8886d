//! The effect worker: applies what journeys asked for besides email — `trigger` (an event) and
//! `update-contact` (a contact patch) — after the activation that recorded them committed.
//!
//! The commit stores each effect in the same transaction as the journal step that recorded it,
//! so an effect exists exactly when its step does. This worker claims stored effects (leased,
//! so several hosts share them), applies each through the one way such a thing enters — ingest
//! for an event, the contact upsert for a patch — and deletes it. An event is ingested with the
//! idempotency key `run:<run>:<seq>`: applying it again after a crash between applying and
//! deleting stores nothing twice. A contact patch re-applied then writes the same values again.
//!
//! It must not run guest code or touch runs: an effect is the run's past, already journaled.

use crate::clock::{Clock, Timestamp};
use crate::contacts::Identity;
use crate::ingest::{IngestError, IngestRequest, Ingestor};
use crate::store::{
    ContactLookup, Contacts, Effect, EffectFailure, Lease, RunEffect, RunEffects, Store,
    StoreError, StoreResult,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Effects claimed per round.
const CLAIM: u32 = 64;
/// How long a claim is held (real clock); an effect left by a crashed host is retried after.
const LEASE: Duration = Duration::from_secs(60);
/// How often to look for effects without being nudged (another host's, or ones to retry).
const POLL: Duration = Duration::from_secs(1);
/// Delay before an effect that failed on the host side (the database) is tried again.
const RETRY: Duration = Duration::from_secs(5);

pub struct EffectWorker<S: ?Sized = dyn Store> {
    pub store: Arc<S>,
    pub ingestor: Arc<Ingestor>,
    pub clock: Clock,
    pub wake: Arc<Notify>,
    pub owner: String,
}

/// Why an effect could not be applied this time.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl<S: RunEffects + Contacts + ?Sized + 'static> EffectWorker<S> {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let applied = match self.round().await {
                    Ok(count) => count,
                    Err(err) => {
                        tracing::warn!("journey effects: {err}");
                        0
                    }
                };
                if applied < CLAIM as usize {
                    let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
                }
            }
        })
    }

    /// Claim and apply one round of due effects; returns how many were claimed.
    async fn round(&self) -> StoreResult<usize> {
        let lease = Lease::starting_now(&self.owner, LEASE);
        let claimed = self.store.claim_run_effects(&lease, CLAIM).await?;
        for effect in &claimed {
            let outcome = match self.apply(effect).await {
                Ok(()) => Ok(()),
                // Refused by ingest validation: trying again cannot help. The step stays in the
                // run's timeline; the effect is dropped, loudly.
                Err(ApplyError::Ingest(IngestError::Invalid { field, message })) => {
                    tracing::error!(run = %effect.run_id, seq = effect.seq, "journey effect refused by ingest ({field}: {message}); dropped");
                    Ok(())
                }
                Err(err) => {
                    tracing::warn!(run = %effect.run_id, seq = effect.seq, "journey effect failed, retrying later: {err}");
                    Err(EffectFailure {
                        error: err.to_string(),
                        retry_at: Clock::real_now().saturating_add(RETRY),
                    })
                }
            };
            self.store
                .finish_run_effect(&effect.run_id, effect.seq, &self.owner, outcome)
                .await?;
        }
        Ok(claimed.len())
    }

    async fn apply(&self, run_effect: &RunEffect) -> Result<(), ApplyError> {
        let tenant = &run_effect.tenant_id;
        match &run_effect.effect {
            Effect::Trigger {
                name,
                person_key,
                properties,
            } => {
                // A known person by their identity; an unknown key is a user id (a new person).
                let identity = self
                    .identity(run_effect, person_key)
                    .await?
                    .unwrap_or(Identity {
                        user_id: Some(person_key.clone()),
                        ..Default::default()
                    });
                let request = IngestRequest {
                    name: name.clone(),
                    user_id: identity.user_id,
                    email: identity.email,
                    anonymous_id: identity.anonymous_id,
                    event_properties: properties.clone(),
                    idempotency_key: Some(format!("run:{}:{}", run_effect.run_id, run_effect.seq)),
                    ..Default::default()
                };
                self.ingestor.ingest(tenant, request).await?;
            }
            Effect::UpdateContact {
                person_key,
                properties,
            } => {
                // The run's own person; one deleted meanwhile is not brought back.
                let Some(identity) = self.identity(run_effect, person_key).await? else {
                    tracing::info!(run = %run_effect.run_id, "update-contact skipped: the person no longer exists");
                    return Ok(());
                };
                let now: Timestamp = self.clock.now();
                self.ingestor
                    .upsert_contact(tenant, &identity, properties, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// The identity of the live contact `key` designates, if any.
    async fn identity(
        &self,
        run_effect: &RunEffect,
        key: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let found = self
            .store
            .find_contacts(&run_effect.tenant_id, &ContactLookup::Key(key.to_owned()))
            .await?;
        Ok(found.into_iter().next().map(|contact| Identity {
            user_id: contact.external_id,
            email: contact.email,
            anonymous_id: contact.anonymous_id,
        }))
    }
}
