//! A module runtime without a server, for tests that drive single activations against host
//! services of their own (a bucket reader, a mail reader, none at all).

use super::built_modules;
use serde_json::{Map, Value};
use std::sync::Arc;
use waymark::clock::{Clock, Timestamp};
use waymark::ids::TenantId;
use waymark::journeys::journal::JournalEntry;
use waymark::journeys::{PersonSnapshot, RunInput, TriggerEvent};
use waymark::modules::{LoadedModule, ModuleFiles, ModuleRegistry};
use waymark::runtime::events::NoEvents;
use waymark::runtime::mail::NoMail;
use waymark::runtime::members::NoBuckets;
use waymark::runtime::{ActivationLimits, ActivationRequest, Runtime};

/// A runtime and module registry on a temporary dir, and one run's input: person `p1`
/// (`p1@example.com`) triggered by `trigger`.
pub struct RuntimeFixture {
    _dir: tempfile::TempDir,
    pub clock: Clock,
    pub registry: ModuleRegistry,
    pub input: RunInput,
}

impl RuntimeFixture {
    pub fn new(trigger: &str, person_properties: Map<String, Value>) -> Self {
        Self::with_limits(trigger, person_properties, ActivationLimits::default())
    }

    /// Like [`RuntimeFixture::new`], with activations bounded by `limits`.
    pub fn with_limits(
        trigger: &str,
        person_properties: Map<String, Value>,
        limits: ActivationLimits,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::default();
        let runtime = Runtime::new(dir.path().join("artifacts"), limits, clock.clone()).unwrap();
        let registry = ModuleRegistry::new(
            Arc::new(runtime),
            ModuleFiles::new(dir.path().join("modules")),
        );
        let input = RunInput {
            person: PersonSnapshot {
                key: "p1".into(),
                email: Some("p1@example.com".into()),
                properties: person_properties,
            },
            trigger: TriggerEvent {
                name: trigger.into(),
                occurred_at: clock.now(),
                properties: Default::default(),
            },
        };
        RuntimeFixture {
            _dir: dir,
            clock,
            registry,
            input,
        }
    }

    /// Load the built test module `name` (`waymark build` output).
    pub async fn load(&self, name: &str) -> Arc<LoadedModule> {
        let wasm = std::fs::read(built_modules().join(format!("{name}.wasm"))).unwrap();
        self.registry
            .load(&TenantId("test".into()), name, &wasm, name)
            .await
            .unwrap()
    }

    /// A request to activate run `run-1` of `journey` with `journal`, and no host services:
    /// a test replaces the one it exercises (`ActivationRequest { buckets, ..request }`).
    pub fn request<'a>(
        &'a self,
        module: &LoadedModule,
        journey: &'a str,
        journal: Vec<JournalEntry>,
    ) -> ActivationRequest<'a> {
        ActivationRequest {
            run_id: "run-1",
            journey_id: journey,
            handler: journey,
            input: &self.input,
            journal,
            templates: module.templates.clone(),
            buckets: Arc::new(NoBuckets),
            events: Arc::new(NoEvents),
            started_at: Timestamp(0),
            mail: Arc::new(NoMail),
            suppress_ms: 0,
            limits: self.registry.runtime().limits(),
        }
    }
}
