//! The executor: one activation of one run. Given the run and its journal (read with the
//! claim), instantiate the pinned module version, replay to the frontier and on to the next suspension, then commit
//! everything the activation produced in ONE store transaction — shared with the activations
//! that finish at the same time ([`crate::group_commit`]), so a busy host pays one transaction
//! for many activations.
//!
//! Each activation runs under its tenant's limits (CPU budget, memory cap, steps), as the
//! host's [`TenantLimits`] have them when it starts.
//!
//! A guest failure fails the run; a host failure (database, instantiation) releases the run
//! so it is retried later, because it is not the journey's fault.

use crate::clock::{Clock, Timestamp};
use crate::group_commit::{Batch, GroupCommit, GroupCommitter};
use crate::modules::{ModuleError, ModuleRegistry};
use crate::runtime::events::StoreEvents;
use crate::runtime::mail::{StoreMail, UnsubscribeLinks};
use crate::runtime::members::StoreBuckets;
use crate::runtime::{ActivationOutcome, ActivationRequest, RuntimeError};
use crate::store::{
    ActivationCommit, ActivationInput, NewEmail, RunQueue, RunTransition, Store, StoreError,
    StoreResult,
};
use crate::tenancy::limits::TenantLimits;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Delay before a run whose activation failed on the host side is tried again.
const HOST_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How activation commits group: at most the scheduler's workers are in flight, so a batch is
/// small; a short linger (only when others are already queued) lets the workers finishing at
/// about the same time share the transaction.
const ACTIVATION_GROUP_COMMIT: GroupCommit = GroupCommit {
    max_batch: 256,
    linger: Duration::from_micros(500),
    in_flight: 1,
    serial_store: false,
};

/// Activation commits of one group-commit batch, in one [`crate::store::RunQueue::commit_activations`].
pub struct ActivationBatch {
    store: Arc<dyn RunQueue>,
}

#[async_trait]
impl Batch for ActivationBatch {
    type Item = ActivationCommit;
    type Outcome = bool;

    async fn commit(&self, commits: Arc<[ActivationCommit]>) -> StoreResult<Vec<bool>> {
        self.store.commit_activations(commits).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Stopped(#[from] crate::group_commit::WriterStopped),
}

/// What an activation did, for the scheduler's bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub enum Activated {
    /// Committed; `emails` were queued.
    Committed {
        transition: RunTransition,
        emails: usize,
    },
    /// Nothing to do: the run is gone, terminal, or another worker owns it now.
    Skipped,
}

pub struct Executor {
    /// Whole: activations read through every concern the guest's imports reach.
    store: Arc<dyn Store>,
    commits: GroupCommitter<ActivationBatch>,
    registry: Arc<ModuleRegistry>,
    /// What each tenant's activations may use.
    limits: Arc<TenantLimits>,
    clock: Clock,
    /// Nudges the effect worker when a commit stored effects.
    effects_wake: Arc<Notify>,
    links: Arc<UnsubscribeLinks>,
}

impl Executor {
    /// `public_url` is where recipients reach this host: unsubscribe links hang under it.
    /// Starts the commit task, so it must be called on a tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<ModuleRegistry>,
        limits: Arc<TenantLimits>,
        clock: Clock,
        effects_wake: Arc<Notify>,
        public_url: String,
    ) -> Self {
        Self {
            links: Arc::new(UnsubscribeLinks::new(store.clone(), public_url)),
            commits: GroupCommitter::spawn(
                ActivationBatch {
                    store: store.clone(),
                },
                ACTIVATION_GROUP_COMMIT,
            ),
            store,
            registry,
            limits,
            clock,
            effects_wake,
        }
    }

    /// Activate a claimed run. On a host-side error the run is released for a later retry.
    pub async fn activate(
        &self,
        claimed: ActivationInput,
        lease_owner: &str,
    ) -> Result<Activated, ExecutorError> {
        let run_id = claimed.run.id.clone();
        match self.try_activate(claimed, lease_owner).await {
            Ok(done) => Ok(done),
            Err(err) => {
                // Timers are due on the host clock.
                let retry_at = self.clock.now().saturating_add(HOST_RETRY_DELAY);
                tracing::warn!(run = %run_id, "activation failed on the host side, retrying later: {err}");
                self.store
                    .release_run(&run_id, lease_owner, retry_at)
                    .await?;
                Err(err)
            }
        }
    }

    async fn try_activate(
        &self,
        claimed: ActivationInput,
        lease_owner: &str,
    ) -> Result<Activated, ExecutorError> {
        let ActivationInput {
            run,
            input,
            journal,
        } = claimed;
        let run = &run;
        let activated = match self
            .registry
            .version(&run.tenant_id, &run.module_hash)
            .await
        {
            // No guest ran: an activation that spent no CPU.
            Err(ModuleError::MissingVersion(hash)) => (
                RunTransition::Failed {
                    error: format!("module version {hash} is not available in the module store"),
                },
                vec![],
                vec![],
                vec![],
                Duration::ZERO,
            ),
            Err(other) => {
                return Err(ExecutorError::Runtime(RuntimeError::Instantiate(
                    other.to_string(),
                )));
            }
            Ok(module) => {
                let report = self
                    .registry
                    .runtime()
                    .activate(
                        &module.compiled,
                        ActivationRequest {
                            run_id: run.id.as_str(),
                            journey_id: &run.journey_id,
                            handler: module
                                .journey(&run.journey_id)
                                .map_or(run.journey_id.as_str(), |journey| &journey.handler),
                            input: &input,
                            journal,
                            templates: module.templates.clone(),
                            buckets: Arc::new(StoreBuckets::new(
                                self.store.clone(),
                                run.tenant_id.clone(),
                                self.registry.bucket_registry(&run.tenant_id),
                            )),
                            events: Arc::new(StoreEvents::new(
                                self.store.clone(),
                                run.tenant_id.clone(),
                                run.contact_key.clone(),
                            )),
                            started_at: run.created_at,
                            mail: Arc::new(StoreMail::new(
                                self.store.clone(),
                                run.tenant_id.clone(),
                                self.links.clone(),
                            )),
                            suppress_ms: module
                                .journey(&run.journey_id)
                                .map_or(0, |journey| journey.suppress),
                            limits: self.limits.activation(&run.tenant_id),
                        },
                    )
                    .await?;
                let transition = match report.outcome {
                    ActivationOutcome::Completed => RunTransition::Completed,
                    ActivationOutcome::Suspended { wake_at, wait } => {
                        RunTransition::Waiting { wake_at, wait }
                    }
                    ActivationOutcome::Failed { reason } => RunTransition::Failed { error: reason },
                };
                // A failed activation commits only the failure: the steps it took after the
                // last commit never happened, so neither their journal rows nor their emails
                // are kept. Its guest ran all the same: its time counts.
                if matches!(transition, RunTransition::Failed { .. }) {
                    (transition, vec![], vec![], vec![], report.guest_cpu)
                } else {
                    (
                        transition,
                        report.journal,
                        report.emails,
                        report.effects,
                        report.guest_cpu,
                    )
                }
            }
        };
        let (transition, journal, emails, effects, guest_cpu) = activated;
        let now: Timestamp = self.clock.now();
        let emails: Vec<NewEmail> = emails
            .into_iter()
            .map(|e| NewEmail {
                id: e.id,
                tenant_id: run.tenant_id.clone(),
                run_id: run.id.clone(),
                step_seq: e.step_seq,
                contact_key: run.contact_key.clone(),
                journey_id: run.journey_id.clone(),
                to: e.to,
                template: e.template,
                subject: e.subject,
                body: e.body,
                html: e.html,
                unsubscribe_url: e.unsubscribe_url,
                status: e.status,
                suppressed_reason: e.suppressed_reason,
                created_at: now,
            })
            .collect();
        let queued = emails.len();
        let has_effects = !effects.is_empty();
        if let RunTransition::Failed { error } = &transition {
            tracing::warn!(run = %run.id, journey = %run.journey_id, "run failed: {error}");
        }
        let committed = self
            .commits
            .submit_one(ActivationCommit {
                run_id: run.id.clone(),
                tenant_id: run.tenant_id.clone(),
                lease_owner: lease_owner.to_owned(),
                journal,
                emails,
                effects,
                transition: transition.clone(),
                now,
                guest_cpu,
            })
            .await??;
        if committed && has_effects {
            self.effects_wake.notify_one();
        }
        Ok(if committed {
            Activated::Committed {
                transition,
                emails: queued,
            }
        } else {
            Activated::Skipped
        })
    }
}
