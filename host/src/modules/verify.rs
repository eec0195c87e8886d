//! Verified upgrades: before running runs move to a new version, the journal of every live
//! run of the module is replayed against the candidate, with no effects ([`Runtime::check_replay`]
//! stops at the first step the journal does not hold), and the report says per journey which
//! runs replay cleanly, which diverge (the first divergent step: recorded vs called) and
//! which the candidate has no journey for. An upgrade deploys the candidate and moves the
//! clean runs to it, each in a transaction that checks its journal is still the one replayed;
//! every other run stays pinned to its version.

use super::deploy::{DeployError, Deployed, Deployer};
use super::{LoadedModule, ModuleError};
use crate::ids::{ApiKeyId, RunId, TenantId};
use crate::runtime::events::NoEvents;
use crate::runtime::mail::NoMail;
use crate::runtime::members::NoBuckets;
use crate::runtime::{ActivationRequest, ReplayCheck};
use crate::store::ActivationInput;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Live runs read per page.
const PAGE: u32 = 500;

/// One live run's replay against the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunVerdict {
    pub run_id: RunId,
    /// The version the run is pinned to.
    pub version: String,
    #[serde(flatten)]
    pub result: Verdict,
    /// Journal entries replayed (a move re-checks the journal still has exactly these).
    #[serde(skip)]
    pub journal_len: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Verdict {
    /// Every recorded step was called again, in order, with the same request.
    Clean,
    /// The first step the candidate called differently.
    Diverged {
        step: u32,
        recorded: String,
        called: String,
    },
    /// The candidate declares no journey of the run's id.
    JourneyMissing,
    /// The candidate failed (a trap, a limit) before the end of the journal.
    Failed { reason: String },
}

/// The runs of one journey, by verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyVerification {
    pub journey: String,
    pub clean: usize,
    pub diverged: usize,
    pub journey_missing: usize,
    pub failed: usize,
    pub runs: Vec<RunVerdict>,
}

/// What replaying every live run of a module against a candidate found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub module: String,
    pub candidate: String,
    pub runs: usize,
    pub journeys: Vec<JourneyVerification>,
}

impl Verification {
    fn clean_runs(&self) -> impl Iterator<Item = &RunVerdict> {
        self.journeys
            .iter()
            .flat_map(|j| &j.runs)
            .filter(|run| run.result == Verdict::Clean)
    }
}

/// What an upgrade did: the deploy, the verification, and the runs it moved.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub deployed: Deployed,
    pub verification: Verification,
    /// Clean runs moved to the candidate.
    pub migrated: Vec<RunId>,
    /// Clean runs that moved on (an activation held them, or their journal grew) between the
    /// replay and the move: they stay on their version; verify again to move them.
    pub moved_on: Vec<RunId>,
}

impl Deployer {
    /// Replay every live run of module `name` against the candidate `wasm` (validated as a
    /// deploy would), changing nothing.
    pub async fn verify(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: &[u8],
    ) -> Result<Verification, DeployError> {
        if self.catalog.module_versions(tenant, name).await?.is_empty() {
            return Err(DeployError::NoSuchModule(name.to_owned()));
        }
        let candidate = self.validate(tenant, name, wasm).await?;
        self.replay_live_runs(tenant, name, &candidate).await
    }

    /// Deploy `wasm` as module `name`'s active version, then move each live run that replays
    /// cleanly against it; the others stay on their versions. A new module is just deployed.
    pub async fn upgrade(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: Vec<u8>,
        deployed_by: Option<ApiKeyId>,
    ) -> Result<Upgrade, DeployError> {
        let candidate = self.validate(tenant, name, &wasm).await?;
        let verification = self.replay_live_runs(tenant, name, &candidate).await?;
        let deployed = self.deploy(tenant, name, wasm, deployed_by).await?;
        let mut migrated = Vec::new();
        let mut moved_on = Vec::new();
        for run in verification.clean_runs() {
            let moved = self
                .catalog
                .repin_run(
                    tenant,
                    &run.run_id,
                    &run.version,
                    &candidate.hash,
                    run.journal_len,
                    self.clock.now(),
                )
                .await?;
            if moved {
                migrated.push(run.run_id.clone());
            } else {
                moved_on.push(run.run_id.clone());
            }
        }
        tracing::info!(
            tenant = %tenant,
            module = name,
            migrated = migrated.len(),
            stayed = verification.runs - migrated.len(),
            "upgraded live runs"
        );
        Ok(Upgrade {
            deployed,
            verification,
            migrated,
            moved_on,
        })
    }

    async fn replay_live_runs(
        &self,
        tenant: &TenantId,
        name: &str,
        candidate: &LoadedModule,
    ) -> Result<Verification, DeployError> {
        let versions = self.catalog.module_versions(tenant, name).await?;
        let mut journeys: BTreeMap<String, JourneyVerification> = BTreeMap::new();
        let mut runs = 0;
        for version in versions
            .iter()
            .filter(|v| v.live_runs > 0 && v.hash != candidate.hash)
        {
            let mut after: Option<RunId> = None;
            loop {
                let page = self
                    .catalog
                    .live_runs_on(tenant, &version.hash, after.as_ref(), PAGE)
                    .await?;
                for run_id in &page {
                    // A run that ended since it was listed is no longer one to move.
                    let Some(run) = self.runs.run_detail(tenant, run_id).await? else {
                        continue;
                    };
                    let journey = run.run.journey_id.clone();
                    let verdict = self.replay(candidate, run).await?;
                    let entry =
                        journeys
                            .entry(journey.clone())
                            .or_insert_with(|| JourneyVerification {
                                journey,
                                ..JourneyVerification::default()
                            });
                    match verdict.result {
                        Verdict::Clean => entry.clean += 1,
                        Verdict::Diverged { .. } => entry.diverged += 1,
                        Verdict::JourneyMissing => entry.journey_missing += 1,
                        Verdict::Failed { .. } => entry.failed += 1,
                    }
                    entry.runs.push(verdict);
                    runs += 1;
                }
                if page.len() < PAGE as usize {
                    break;
                }
                after = page.last().cloned();
            }
        }
        Ok(Verification {
            module: name.to_owned(),
            candidate: candidate.hash.clone(),
            runs,
            journeys: journeys.into_values().collect(),
        })
    }

    /// One run's journal replayed against the candidate.
    async fn replay(
        &self,
        candidate: &LoadedModule,
        run: ActivationInput,
    ) -> Result<RunVerdict, DeployError> {
        let ActivationInput {
            run,
            input,
            journal,
        } = run;
        let journal_len = u32::try_from(journal.len()).unwrap_or(u32::MAX);
        let verdict = |result| RunVerdict {
            run_id: run.id.clone(),
            version: run.module_hash.clone(),
            result,
            journal_len,
        };
        let Some(journey) = candidate.journey(&run.journey_id) else {
            return Ok(verdict(Verdict::JourneyMissing));
        };
        // Replay answers every step from the journal and stops at its end, so the host
        // services are never asked anything.
        let checked = self
            .registry
            .runtime()
            .check_replay(
                &candidate.compiled,
                ActivationRequest {
                    run_id: run.id.as_str(),
                    journey_id: &run.journey_id,
                    handler: &journey.handler,
                    input: &input,
                    journal,
                    templates: candidate.templates.clone(),
                    buckets: Arc::new(NoBuckets),
                    events: Arc::new(NoEvents),
                    started_at: run.created_at,
                    mail: Arc::new(NoMail),
                    suppress_ms: journey.suppress,
                    limits: self.limits.activation(&run.tenant_id),
                },
            )
            .await
            .map_err(|source| {
                DeployError::Invalid(ModuleError::Runtime {
                    path: format!("replaying run {} against {}", run.id, candidate.name),
                    source,
                })
            })?;
        Ok(verdict(match checked {
            ReplayCheck::Clean => Verdict::Clean,
            ReplayCheck::Diverged(divergence) => Verdict::Diverged {
                step: divergence.seq,
                recorded: format!(
                    "{} {}",
                    divergence.expected_kind, divergence.expected_request
                ),
                called: format!("{} {}", divergence.actual_kind, divergence.actual_request),
            },
            ReplayCheck::Failed(reason) => Verdict::Failed { reason },
        }))
    }
}
