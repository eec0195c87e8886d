//! The wasm runtime: compiles and caches components, calls `describe`, and runs one activation
//! of a run under the limits the caller gives it (CPU budget via epoch deadline, memory cap via
//! resource limiter, wall-clock timeout, journal steps) with every import journaled ([`host`]).
//! The instance pool is sized once, from the limits the runtime is made with; a call asking for
//! more memory than a pool slot holds gets what the slot holds.
//!
//! It knows nothing of SQL or HTTP: it takes a journal and returns what the activation did
//! (fresh journal entries, queued emails, the outcome, and how long its guest ran) for the
//! executor to commit.

pub mod activation;
pub mod artifacts;
pub mod bindings;
mod bounded;
pub mod engine;
pub mod events;
pub mod host;
pub mod mail;
pub mod members;
mod send;
pub mod threads;

use crate::clock::{Clock, Timestamp};
use crate::delivery::templates::TemplateSet;
use crate::journeys::journal::{Divergence, JournalEntry, Replay, StepRefused};
use crate::journeys::{PersonSnapshot, RunInput};
use crate::store::{Effect, EventWait};
use activation::{ActivationJournal, QueuedEmail, RunScope, SharedJournal};
use artifacts::ArtifactCache;
use bindings::types::{Invocation, Manifest};
use bindings::{JourneyModule, JourneyModulePre};
use events::EventReader;
use host::{ActivationState, GuestFault, HostUnavailable, Suspend};
use mail::MailReader;
use members::BucketReader;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// Errors of the host side: the activation could not be attempted. A guest misbehaving is not
/// one of these; it is an [`ActivationOutcome::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not a valid journey module: {0}")]
    Compile(String),
    #[error("module does not fit the waymark:journey world: {0}")]
    Link(String),
    #[error("instantiating the module failed: {0}")]
    Instantiate(String),
    #[error("describe failed: {0}")]
    Describe(String),
    /// A host service an import needed failed (the database); the activation is retried.
    #[error("{0}")]
    HostUnavailable(String),
    #[error("i/o error on {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Per-activation limits: the host's defaults, or a tenant's (see
/// [`crate::tenancy::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationLimits {
    /// Time the guest may spend executing wasm (enforced by epoch interruption).
    pub cpu_budget: Duration,
    /// Largest linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Total time for the activation, host calls included.
    pub wall_clock: Duration,
    /// Most journal steps one run may record over its whole life.
    pub max_run_steps: u32,
}

impl Default for ActivationLimits {
    fn default() -> Self {
        Self {
            cpu_budget: Duration::from_secs(2),
            memory_bytes: 128 << 20,
            wall_clock: Duration::from_secs(10),
            max_run_steps: 10_000,
        }
    }
}

/// A compiled module version, ready to instantiate.
pub struct CompiledModule {
    /// sha256 of the wasm, hex.
    pub hash: String,
    pre: JourneyModulePre<ActivationState>,
}

/// How an activation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivationOutcome {
    Completed,
    Suspended {
        wake_at: Timestamp,
        /// Set in `wait-for-event`: the event that wakes the run early.
        wait: Option<EventWait>,
    },
    /// The guest failed: its own error, a trap, a limit, or a non-deterministic replay.
    Failed {
        reason: String,
    },
}

/// Everything one activation produced.
#[derive(Debug)]
pub struct ActivationReport {
    pub outcome: ActivationOutcome,
    pub journal: Vec<JournalEntry>,
    pub emails: Vec<QueuedEmail>,
    /// `trigger` / `update-contact` effects, by journal step.
    pub effects: Vec<(u32, Effect)>,
    /// How long the guest ran: its instantiation and the polls of its handler, not its waits
    /// on the host's I/O (see `timed`).
    pub guest_cpu: Duration,
}

/// What to run.
pub struct ActivationRequest<'a> {
    pub run_id: &'a str,
    pub journey_id: &'a str,
    /// What the module dispatches on (`invocation.handler`): the journey's declared handler,
    /// which for a bucket reaction names the reaction rather than its journey id.
    pub handler: &'a str,
    pub input: &'a RunInput,
    pub journal: Vec<JournalEntry>,
    pub templates: Arc<TemplateSet>,
    /// Bucket membership of the run's tenant, for the `bucket-*` imports.
    pub buckets: Arc<dyn BucketReader>,
    /// The run's person's events, for `wait-for-event`.
    pub events: Arc<dyn EventReader>,
    /// When the run started (its trigger's receive time).
    pub started_at: Timestamp,
    /// The run's tenant's templates, preferences and unsubscribe links.
    pub mail: Arc<dyn MailReader>,
    /// The journey's suppress window in ms (zero: none).
    pub suppress_ms: u64,
    /// What this activation may use: the run's tenant's limits.
    pub limits: ActivationLimits,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<ActivationState>,
    artifacts: ArtifactCache,
    /// The host's defaults, which sized the pool.
    limits: ActivationLimits,
    /// The most linear memory a pool slot holds.
    pool_memory_bytes: usize,
    clock: Clock,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// `limits` are the host's defaults; the pool's slots are sized for their memory cap.
    pub fn new(
        artifact_dir: PathBuf,
        limits: ActivationLimits,
        clock: Clock,
    ) -> Result<Self, RuntimeError> {
        let pool = engine::PoolSizing {
            max_memory_bytes: limits.memory_bytes.next_power_of_two().max(64 << 20),
            ..Default::default()
        };
        let pool_memory_bytes = pool.max_memory_bytes;
        let engine =
            engine::build_engine(pool).map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        // WASI p2 is linked because Rust's std imports it; its clocks and random are journaled
        // and the context has no filesystem, network, environment or arguments.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        JourneyModule::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        bounded::add_to_linker(&mut linker).map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let artifacts = ArtifactCache::new(artifact_dir, engine::fingerprint(&engine));
        Ok(Self {
            engine,
            linker,
            artifacts,
            limits,
            pool_memory_bytes,
            clock,
        })
    }

    /// The host's default limits.
    pub fn limits(&self) -> ActivationLimits {
        self.limits
    }

    /// The most memory an activation can be given: what a slot of the instance pool holds.
    pub fn max_memory_bytes(&self) -> usize {
        self.pool_memory_bytes
    }

    /// `limits` with the memory cap no larger than a pool slot.
    fn fitted(&self, limits: ActivationLimits) -> ActivationLimits {
        ActivationLimits {
            memory_bytes: limits.memory_bytes.min(self.pool_memory_bytes),
            ..limits
        }
    }

    /// Compile (or load from the artifact cache) and link a component.
    pub fn compile(&self, wasm: &[u8]) -> Result<CompiledModule, RuntimeError> {
        if !wasm.starts_with(b"\0asm") {
            return Err(RuntimeError::Compile("the file is not WebAssembly".into()));
        }
        if wasm.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00]) {
            return Err(RuntimeError::Compile(
                "the file is a core wasm module, not a component: build for wasm32-wasip2 (or componentize a JS guest)".into(),
            ));
        }
        let hash = sha256_hex(wasm);
        let component: Component = self.artifacts.component(&self.engine, &hash, wasm)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let pre = JourneyModulePre::new(pre).map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        Ok(CompiledModule { hash, pre })
    }

    fn new_store(&self, state: ActivationState, cpu_budget: Duration) -> Store<ActivationState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        // Every epoch tick the guest yields to tokio (so a busy guest cannot hog a worker
        // thread) and is charged one tick; past its budget it is interrupted. Ticks only count
        // while wasm runs, so this approximates CPU time, not wall time.
        let budget = u64::try_from(cpu_budget.as_millis() / engine::EPOCH_TICK.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut used = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            used += 1;
            Ok(if used >= budget {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// Call `describe` on a fresh instance, under `limits` (the deploying tenant's).
    pub async fn describe(
        &self,
        module: &CompiledModule,
        limits: ActivationLimits,
    ) -> Result<Manifest, RuntimeError> {
        let limits = self.fitted(limits);
        let journal =
            ActivationJournal::new(Replay::default(), self.clock.clone(), limits.max_run_steps);
        let mut store = self.new_store(
            ActivationState::new(journal, None, limits.memory_bytes, 0),
            limits.cpu_budget,
        );
        let cpu_budget = limits.cpu_budget;
        let call = async {
            let instance = module
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
            instance
                .call_describe(&mut store)
                .await
                .map_err(|e| RuntimeError::Describe(describe_failure(&e, cpu_budget)))
        };
        let result = match tokio::time::timeout(limits.wall_clock, call).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::Describe(format!(
                "did not return within {}",
                humantime::format_duration(limits.wall_clock)
            ))),
        };
        // What the guest printed (a panic's message) is the useful part of a failure; on one
        // line, as an error message travels (a log line, a JSON answer).
        result.map_err(|error| {
            let stderr = String::from_utf8_lossy(&store.data().stderr.contents())
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" | ");
            match error {
                RuntimeError::Describe(message) if !stderr.is_empty() => RuntimeError::Describe(
                    format!("{message}; guest stderr: {}", tail(&stderr, 2000)),
                ),
                other => other,
            }
        })
    }

    /// Run one activation: replay the journal to its frontier and on until the handler
    /// completes, fails or suspends.
    pub async fn activate(
        &self,
        module: &CompiledModule,
        mut request: ActivationRequest<'_>,
    ) -> Result<ActivationReport, RuntimeError> {
        let journal = ActivationJournal::new(
            Replay::new(std::mem::take(&mut request.journal)),
            self.clock.clone(),
            request.limits.max_run_steps,
        );
        let run_id = request.run_id;
        let Executed {
            outcome,
            journal,
            stderr,
            guest_cpu,
        } = self.execute(module, request, journal).await?;
        if !stderr.is_empty() && !matches!(outcome, ActivationOutcome::Failed { .. }) {
            tracing::debug!(target: "waymark::guest", run = run_id, "stderr: {}", String::from_utf8_lossy(&stderr));
        }
        Ok(ActivationReport {
            outcome,
            journal: journal.replay.into_fresh(),
            emails: journal.emails,
            effects: journal.effects,
            guest_cpu,
        })
    }

    /// Whether `module` (a candidate version) replays the run's journal: the handler runs
    /// from the top with every recorded step answered from the journal, and stops, performing
    /// nothing, at the first step the journal does not hold.
    pub async fn check_replay(
        &self,
        module: &CompiledModule,
        mut request: ActivationRequest<'_>,
    ) -> Result<ReplayCheck, RuntimeError> {
        let recorded = Replay::new(std::mem::take(&mut request.journal));
        let journal = ActivationJournal::replay_only(recorded, self.clock.clone());
        let Executed {
            outcome, journal, ..
        } = self.execute(module, request, journal).await?;
        Ok(match (journal.stopped, outcome) {
            (Some(StepRefused::ReplayEnded), _) => ReplayCheck::Clean,
            (Some(StepRefused::Diverged(divergence)), _) => ReplayCheck::Diverged(divergence),
            (_, ActivationOutcome::Completed) => match journal.replay.check_fully_replayed() {
                Ok(()) => ReplayCheck::Clean,
                Err(divergence) => ReplayCheck::Diverged(divergence),
            },
            // A recorded sleep or wait not due yet: the journal's last step.
            (_, ActivationOutcome::Suspended { .. }) if !journal.replay.is_replaying() => {
                ReplayCheck::Clean
            }
            (_, ActivationOutcome::Suspended { .. }) => {
                ReplayCheck::Failed("the candidate suspended before the end of the journal".into())
            }
            (_, ActivationOutcome::Failed { reason }) => ReplayCheck::Failed(reason),
        })
    }

    /// Instantiate `module` with `journal` and run the request's handler to its outcome.
    async fn execute(
        &self,
        module: &CompiledModule,
        request: ActivationRequest<'_>,
        journal: SharedJournal,
    ) -> Result<Executed, RuntimeError> {
        let limits = self.fitted(request.limits);
        let scope = RunScope {
            run_id: request.run_id.to_owned(),
            journey_id: request.journey_id.to_owned(),
            person: request.input.person.clone(),
            templates: request.templates,
            buckets: request.buckets,
            events: request.events,
            started_at: request.started_at,
            mail: request.mail,
            suppress_ms: request.suppress_ms,
        };
        let seed = u128::from_le_bytes(
            Sha256::digest(request.run_id.as_bytes())[..16]
                .try_into()
                .expect("16 bytes"),
        );
        let state = ActivationState::new(journal.clone(), Some(scope), limits.memory_bytes, seed);
        let mut store = self.new_store(state, limits.cpu_budget);
        let invocation = invocation(request.run_id, request.handler, request.input);

        let mut guest_cpu = Duration::ZERO;
        let instance = timed(module.pre.instantiate_async(&mut store), &mut guest_cpu)
            .await
            .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        let call = timed(instance.call_run(&mut store, &invocation), &mut guest_cpu);
        // A call cut short by the timeout has run for the time its polls took all the same.
        let result = tokio::time::timeout(limits.wall_clock, call).await;

        // An import that could not reach the store: the activation never happened.
        if let Ok(Err(error)) = &result
            && let Some(HostUnavailable(message)) = error.downcast_ref::<HostUnavailable>()
        {
            return Err(RuntimeError::HostUnavailable(message.clone()));
        }
        let state = store.data();
        let outcome = match result {
            Err(_) => ActivationOutcome::Failed {
                reason: format!(
                    "the activation exceeded its wall-clock timeout of {}",
                    humantime::format_duration(limits.wall_clock)
                ),
            },
            Ok(call_result) => classify(call_result, state, &limits),
        };
        let stderr = state.stderr.contents();
        drop(store);
        let journal = Arc::try_unwrap(journal)
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .map_err(|_| {
                RuntimeError::Instantiate(
                    "activation journal still shared after the store was dropped".into(),
                )
            })?;
        Ok(Executed {
            outcome,
            journal,
            stderr: stderr.to_vec(),
            guest_cpu,
        })
    }
}

/// What [`Runtime::execute`] ran to.
struct Executed {
    outcome: ActivationOutcome,
    journal: ActivationJournal,
    stderr: Vec<u8>,
    guest_cpu: Duration,
}

/// Run `future`, adding the time spent in its polls to `spent`. Around a guest's call that is
/// the time the guest ran — with the host functions it calls synchronously, whose work it
/// asked for — and not the time it waited for the host's I/O (a store read behind an import),
/// nor the time it yielded to other tasks at an epoch tick. Wall time within each poll: a
/// thread the OS preempts mid-poll is charged too, as the CPU budget's ticks are.
async fn timed<F: Future>(future: F, spent: &mut Duration) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let started = std::time::Instant::now();
        let polled = future.as_mut().poll(cx);
        *spent += started.elapsed();
        polled
    })
    .await
}

/// What replaying a run's journal against a candidate version found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayCheck {
    /// The candidate called every recorded step again, in order, with the same requests.
    Clean,
    /// The first step where the candidate called something else than the journal recorded.
    Diverged(Divergence),
    /// The candidate failed (trapped, hit a limit) before the end of the journal.
    Failed(String),
}

/// Map what `run` returned to an outcome, naming the reason for every failure.
fn classify(
    result: wasmtime::Result<Result<(), String>>,
    state: &ActivationState,
    limits: &ActivationLimits,
) -> ActivationOutcome {
    let journal = state.journal.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(stopped) = &journal.stopped {
        return ActivationOutcome::Failed {
            reason: stopped.to_string(),
        };
    }
    match result {
        Ok(Ok(())) => match journal.replay.check_fully_replayed() {
            Ok(()) => ActivationOutcome::Completed,
            Err(divergence) => ActivationOutcome::Failed {
                reason: divergence.to_string(),
            },
        },
        Ok(Err(message)) => ActivationOutcome::Failed {
            reason: format!("the journey returned an error: {message}"),
        },
        Err(error) => {
            if let Some(suspend) = error.downcast_ref::<Suspend>() {
                return ActivationOutcome::Suspended {
                    wake_at: suspend.wake_at,
                    wait: suspend.wait.clone(),
                };
            }
            if let Some(stopped) = error.downcast_ref::<StepRefused>() {
                return ActivationOutcome::Failed {
                    reason: stopped.to_string(),
                };
            }
            if let Some(GuestFault(message)) = error.downcast_ref::<GuestFault>() {
                return ActivationOutcome::Failed {
                    reason: message.clone(),
                };
            }
            if state.memory.exceeded {
                return ActivationOutcome::Failed {
                    reason: format!(
                        "the journey exceeded its memory limit of {} MiB",
                        limits.memory_bytes >> 20
                    ),
                };
            }
            let stderr = String::from_utf8_lossy(&state.stderr.contents())
                .trim()
                .to_owned();
            let reason = match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => format!(
                    "the journey exceeded its CPU budget of {}",
                    humantime::format_duration(limits.cpu_budget)
                ),
                Some(Trap::StackOverflow) => {
                    "the journey overflowed its stack (unbounded recursion?)".to_owned()
                }
                Some(Trap::MemoryOutOfBounds) => {
                    format!("the journey trapped: {STACK_OVERFLOW_HINT}")
                }
                Some(trap) => format!("the journey trapped: {trap}"),
                None => format!("the journey failed: {error:#}"),
            };
            let reason = if stderr.is_empty() {
                reason
            } else {
                format!("{reason}; guest stderr: {}", tail(&stderr, 2000))
            };
            ActivationOutcome::Failed { reason }
        }
    }
}

/// An out-of-bounds access, as a guest author should read it: a Rust guest's stack lives at
/// the bottom of its linear memory (wasm has no guard page), so a stack that overflows runs
/// off the start of memory rather than into a guard.
const STACK_OVERFLOW_HINT: &str = "out of bounds memory access — almost always the guest's \
     stack overflowing (unbounded or too deep recursion), which in wasm runs off the start of \
     its memory";

/// Why `describe` failed, in words.
fn describe_failure(error: &wasmtime::Error, cpu_budget: Duration) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "did not return within its CPU budget of {}",
            humantime::format_duration(cpu_budget)
        ),
        Some(Trap::StackOverflow) => "overflowed its stack (unbounded recursion?)".to_owned(),
        Some(Trap::MemoryOutOfBounds) => format!("trapped: {STACK_OVERFLOW_HINT}"),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{error:#}"),
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn invocation(run_id: &str, handler: &str, input: &RunInput) -> Invocation {
    let PersonSnapshot {
        key,
        email,
        properties,
    } = &input.person;
    Invocation {
        handler: handler.to_owned(),
        run_id: run_id.to_owned(),
        person: bindings::types::Person {
            key: key.clone(),
            email: email.clone(),
            properties_json: serde_json::Value::Object(properties.clone()).to_string(),
        },
        trigger: bindings::types::Event {
            name: input.trigger.name.clone(),
            occurred_at: input.trigger.occurred_at.0,
            properties_json: serde_json::Value::Object(input.trigger.properties.clone())
                .to_string(),
        },
    }
}
