//! Per-tenant limits: what each limit is ([`Limit`]), a value per limit ([`Limits`]), the
//! host's defaults (its command line), a tenant's own settings (a `NULL` column is the host's
//! default) and how the operator's `PATCH` body is read and checked ([`LimitRules`]), all of
//! it before anything is written. [`cache`] holds every tenant's settings in memory for the
//! places that apply them (activations, ingest, deploys), following the store.
//!
//! This module decides values; it does not enforce them (the runtime, the ingest gate, the
//! deployer and the scheduler's claims do) and speaks no SQL or HTTP.

pub mod cache;

pub use cache::TenantLimits;

use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::runtime::ActivationLimits;
use serde_json::{Map, Value};
use std::time::Duration;

/// One per-tenant limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Activations of the tenant's runs leased at once, over every host.
    ActivationsInFlight,
    /// CPU time one activation may use, in milliseconds.
    CpuBudgetMs,
    /// Linear memory one activation may grow to, in MiB.
    MemoryMb,
    /// Events per second the tenant may ingest (0: unlimited).
    IngestRate,
    /// Events the tenant may ingest at once above its rate (0: one second's worth).
    IngestBurst,
    /// The total size of the tenant's active module versions, in bytes.
    ModuleBytes,
    /// Journal steps one run may record.
    RunSteps,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::ActivationsInFlight,
        Limit::CpuBudgetMs,
        Limit::MemoryMb,
        Limit::IngestRate,
        Limit::IngestBurst,
        Limit::ModuleBytes,
        Limit::RunSteps,
    ];

    /// The name in the API (camelCase).
    pub fn name(self) -> &'static str {
        match self {
            Limit::ActivationsInFlight => "activationsInFlight",
            Limit::CpuBudgetMs => "cpuBudgetMs",
            Limit::MemoryMb => "memoryMb",
            Limit::IngestRate => "ingestRate",
            Limit::IngestBurst => "ingestBurst",
            Limit::ModuleBytes => "moduleBytes",
            Limit::RunSteps => "runSteps",
        }
    }

    /// The column of `tenant_limits` (migration 0022).
    pub fn column(self) -> &'static str {
        match self {
            Limit::ActivationsInFlight => "activations_in_flight",
            Limit::CpuBudgetMs => "cpu_budget_ms",
            Limit::MemoryMb => "memory_mb",
            Limit::IngestRate => "ingest_rate",
            Limit::IngestBurst => "ingest_burst",
            Limit::ModuleBytes => "module_bytes",
            Limit::RunSteps => "run_steps",
        }
    }

    pub fn parse(name: &str) -> Option<Limit> {
        Self::ALL.into_iter().find(|limit| limit.name() == name)
    }

    /// What a value counts, and what a special value means.
    fn unit(self) -> &'static str {
        match self {
            Limit::ActivationsInFlight => "activations",
            Limit::CpuBudgetMs => "milliseconds",
            Limit::MemoryMb => "MiB",
            Limit::IngestRate => "events per second; 0 is unlimited",
            Limit::IngestBurst => "events; 0 is one second's worth",
            Limit::ModuleBytes => "bytes",
            Limit::RunSteps => "steps",
        }
    }
}

/// A value per limit, by name; `get` and `get_mut` reach one by [`Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits<T> {
    pub activations_in_flight: T,
    pub cpu_budget_ms: T,
    pub memory_mb: T,
    pub ingest_rate: T,
    pub ingest_burst: T,
    pub module_bytes: T,
    pub run_steps: T,
}

impl<T> Limits<T> {
    pub fn from_fn(mut value: impl FnMut(Limit) -> T) -> Self {
        Self {
            activations_in_flight: value(Limit::ActivationsInFlight),
            cpu_budget_ms: value(Limit::CpuBudgetMs),
            memory_mb: value(Limit::MemoryMb),
            ingest_rate: value(Limit::IngestRate),
            ingest_burst: value(Limit::IngestBurst),
            module_bytes: value(Limit::ModuleBytes),
            run_steps: value(Limit::RunSteps),
        }
    }

    pub fn get(&self, limit: Limit) -> &T {
        match limit {
            Limit::ActivationsInFlight => &self.activations_in_flight,
            Limit::CpuBudgetMs => &self.cpu_budget_ms,
            Limit::MemoryMb => &self.memory_mb,
            Limit::IngestRate => &self.ingest_rate,
            Limit::IngestBurst => &self.ingest_burst,
            Limit::ModuleBytes => &self.module_bytes,
            Limit::RunSteps => &self.run_steps,
        }
    }

    pub fn get_mut(&mut self, limit: Limit) -> &mut T {
        match limit {
            Limit::ActivationsInFlight => &mut self.activations_in_flight,
            Limit::CpuBudgetMs => &mut self.cpu_budget_ms,
            Limit::MemoryMb => &mut self.memory_mb,
            Limit::IngestRate => &mut self.ingest_rate,
            Limit::IngestBurst => &mut self.ingest_burst,
            Limit::ModuleBytes => &mut self.module_bytes,
            Limit::RunSteps => &mut self.run_steps,
        }
    }

    /// As a JSON object by API name.
    pub fn to_json(&self, mut value: impl FnMut(&T) -> Value) -> Value {
        Value::Object(
            Limit::ALL
                .into_iter()
                .map(|limit| (limit.name().to_owned(), value(self.get(limit))))
                .collect(),
        )
    }
}

/// A value of every limit: the host's defaults, or what applies to a tenant.
pub type LimitValues = Limits<u64>;

/// A tenant's own settings: `None` takes the host's default.
pub type LimitOverrides = Limits<Option<u64>>;

/// The defaults the command line gives when a flag is left out.
pub const DEFAULT_ACTIVATIONS_IN_FLIGHT: u64 = 32;
pub const DEFAULT_INGEST_RATE: u64 = 10_000;
pub const DEFAULT_INGEST_BURST: u64 = 20_000;
pub const DEFAULT_MODULE_BYTES: u64 = 256 << 20;

impl LimitValues {
    /// `own` over these defaults.
    pub fn with(&self, own: &LimitOverrides) -> LimitValues {
        Limits::from_fn(|limit| own.get(limit).unwrap_or(*self.get(limit)))
    }

    /// The runtime's limits for one activation under these values; the wall-clock timeout is
    /// the host's alone (the scheduler's leases are sized from it).
    pub fn activation(&self, wall_clock: Duration) -> ActivationLimits {
        ActivationLimits {
            cpu_budget: Duration::from_millis(self.cpu_budget_ms),
            memory_bytes: usize::try_from(self.memory_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            wall_clock,
            max_run_steps: u32::try_from(self.run_steps).unwrap_or(u32::MAX),
        }
    }
}

/// A tenant's own settings as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLimitsRecord {
    pub tenant_id: TenantId,
    pub own: LimitOverrides,
    pub updated_at: Timestamp,
}

/// What a `PATCH` does to one of the tenant's own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Setting {
    /// Absent from the body: as it was.
    #[default]
    Unchanged,
    /// A value: the tenant's own from now on.
    Own(u64),
    /// `null`: back to the host's default.
    HostDefault,
}

/// A checked `PATCH`: a [`Setting`] per limit.
pub type LimitPatch = Limits<Setting>;

impl LimitPatch {
    /// `own` with this patch applied.
    pub fn applied_to(&self, own: &LimitOverrides) -> LimitOverrides {
        Limits::from_fn(|limit| match self.get(limit) {
            Setting::Unchanged => *own.get(limit),
            Setting::Own(value) => Some(*value),
            Setting::HostDefault => None,
        })
    }
}

/// Why a `PATCH` body was refused; each names the field (the details of a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the body must be a JSON object of limits, e.g. {{\"cpuBudgetMs\": 500}}")]
    NotAnObject,
    #[error("unknown limit {0:?}: the limits are {names}", names = limit_names())]
    Unknown(String),
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl LimitError {
    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            LimitError::NotAnObject => None,
            LimitError::Unknown(field) => Some(field),
            LimitError::Invalid { field, .. } => Some(field),
        }
    }
}

fn limit_names() -> String {
    Limit::ALL.map(Limit::name).join(", ")
}

/// The most any tenant may be given, where the host does not bound it.
const MAX_ACTIVATIONS_IN_FLIGHT: u64 = 100_000;
const MAX_INGEST: u64 = 1_000_000;
const MAX_MODULE_BYTES: u64 = 1 << 40;
/// One epoch tick: the CPU budget is counted in ticks.
const MIN_CPU_BUDGET_MS: u64 = crate::runtime::engine::EPOCH_TICK.as_millis() as u64;

/// What this host allows a tenant's limits to be, from how it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBounds {
    /// `--activation-timeout`: a CPU budget above it could never be spent.
    pub activation_timeout: Duration,
    /// The linear memory each slot of the instance pool was sized for at start.
    pub pool_memory_mb: u64,
}

/// The defaults and the allowed range of each limit: how a `PATCH` body is read.
#[derive(Debug, Clone)]
pub struct LimitRules {
    pub defaults: LimitValues,
    pub bounds: HostBounds,
}

impl LimitRules {
    /// The smallest and largest value a tenant may be given.
    pub fn range(&self, limit: Limit) -> (u64, u64) {
        match limit {
            Limit::ActivationsInFlight => (1, MAX_ACTIVATIONS_IN_FLIGHT),
            Limit::CpuBudgetMs => (
                MIN_CPU_BUDGET_MS,
                (self.bounds.activation_timeout.as_millis() as u64).max(MIN_CPU_BUDGET_MS),
            ),
            Limit::MemoryMb => (1, self.bounds.pool_memory_mb.max(1)),
            Limit::IngestRate | Limit::IngestBurst => (0, MAX_INGEST),
            Limit::ModuleBytes => (1, MAX_MODULE_BYTES),
            Limit::RunSteps => (1, u64::from(u32::MAX)),
        }
    }

    /// Why the range ends where it does, when the host decides it.
    fn bound_note(&self, limit: Limit) -> Option<String> {
        match limit {
            Limit::CpuBudgetMs => Some(format!(
                "at most the host's activation timeout (--activation-timeout {})",
                humantime::format_duration(self.bounds.activation_timeout)
            )),
            Limit::MemoryMb => Some(format!(
                "at most {} MiB: this host's instance pool was sized for that much memory per \
                 guest when it started (from --memory-limit-mb)",
                self.bounds.pool_memory_mb
            )),
            _ => None,
        }
    }

    /// Read a `PATCH` body: a JSON object whose fields are limits by API name, each an
    /// integer in its range or `null`. The whole body is checked; the first field in error
    /// refuses all of it.
    pub fn parse_patch(&self, body: &Value) -> Result<LimitPatch, LimitError> {
        let fields: &Map<String, Value> = body.as_object().ok_or(LimitError::NotAnObject)?;
        let mut patch = LimitPatch::default();
        for (name, value) in fields {
            let limit = Limit::parse(name).ok_or_else(|| LimitError::Unknown(name.clone()))?;
            *patch.get_mut(limit) = self.setting(limit, value)?;
        }
        Ok(patch)
    }

    fn setting(&self, limit: Limit, value: &Value) -> Result<Setting, LimitError> {
        if value.is_null() {
            return Ok(Setting::HostDefault);
        }
        let (min, max) = self.range(limit);
        match value.as_u64() {
            Some(value) if (min..=max).contains(&value) => Ok(Setting::Own(value)),
            _ => Err(LimitError::Invalid {
                field: limit.name(),
                message: format!(
                    "must be an integer from {min} to {max} ({unit}{note}), or null for the \
                     host's default ({default}); got {value}",
                    unit = limit.unit(),
                    note = self
                        .bound_note(limit)
                        .map(|note| format!("; {note}"))
                        .unwrap_or_default(),
                    default = self.defaults.get(limit),
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> LimitRules {
        LimitRules {
            defaults: LimitValues {
                activations_in_flight: 32,
                cpu_budget_ms: 2_000,
                memory_mb: 128,
                ingest_rate: 10,
                ingest_burst: 20,
                module_bytes: 1 << 20,
                run_steps: 10_000,
            },
            bounds: HostBounds {
                activation_timeout: Duration::from_secs(10),
                pool_memory_mb: 128,
            },
        }
    }

    #[test]
    fn every_limit_has_one_name_and_column() {
        for limit in Limit::ALL {
            assert_eq!(Limit::parse(limit.name()), Some(limit));
        }
        let columns: std::collections::HashSet<_> = Limit::ALL.map(Limit::column).into();
        assert_eq!(columns.len(), Limit::ALL.len());
    }

    #[test]
    fn a_patch_sets_present_fields_clears_nulls_and_leaves_the_rest() {
        // Given a tenant with its own CPU budget and memory cap
        let own = LimitOverrides {
            cpu_budget_ms: Some(500),
            memory_mb: Some(64),
            ..Default::default()
        };

        // When a patch sets the steps and returns the memory cap to the host's default
        let patch = rules()
            .parse_patch(&json!({"runSteps": 50, "memoryMb": null}))
            .unwrap();

        // Then the CPU budget is still its own, the steps too, and the memory the host's
        let after = patch.applied_to(&own);
        assert_eq!(
            after,
            LimitOverrides {
                cpu_budget_ms: Some(500),
                run_steps: Some(50),
                ..Default::default()
            }
        );
        let effective = rules().defaults.with(&after);
        assert_eq!(
            (
                effective.cpu_budget_ms,
                effective.memory_mb,
                effective.run_steps
            ),
            (500, 128, 50)
        );
        // And an empty patch changes nothing
        assert_eq!(
            rules().parse_patch(&json!({})).unwrap().applied_to(&own),
            own
        );
    }

    #[test]
    fn bad_fields_are_named_with_their_range() {
        let rules = rules();
        let refused = |body: Value| rules.parse_patch(&body).unwrap_err();

        assert_eq!(refused(json!([1])), LimitError::NotAnObject);
        let unknown = refused(json!({"cpuBudget": 5}));
        assert_eq!(unknown.field(), Some("cpuBudget"));
        assert!(unknown.to_string().contains("cpuBudgetMs"), "{unknown}");

        for (body, field, says) in [
            (
                json!({"cpuBudgetMs": "fast"}),
                "cpuBudgetMs",
                "from 10 to 10000",
            ),
            (
                json!({"cpuBudgetMs": 20_000}),
                "cpuBudgetMs",
                "--activation-timeout 10s",
            ),
            (json!({"cpuBudgetMs": 1.5}), "cpuBudgetMs", "got 1.5"),
            (
                json!({"memoryMb": 256}),
                "memoryMb",
                "instance pool was sized for",
            ),
            (json!({"memoryMb": 0}), "memoryMb", "from 1 to 128"),
            (json!({"ingestRate": -1}), "ingestRate", "0 is unlimited"),
            (
                json!({"runSteps": 5_000_000_000u64}),
                "runSteps",
                "to 4294967295",
            ),
            (
                json!({"activationsInFlight": true}),
                "activationsInFlight",
                "default (32)",
            ),
        ] {
            let error = refused(body.clone());
            assert_eq!(error.field(), Some(field), "{body}: {error}");
            assert!(error.to_string().contains(says), "{body}: {error}");
        }
    }

    #[test]
    fn one_bad_field_refuses_the_whole_body() {
        let refused = rules().parse_patch(&json!({"runSteps": 5, "memoryMb": 4096}));
        assert_eq!(refused.unwrap_err().field(), Some("memoryMb"));
    }

    #[test]
    fn effective_values_make_an_activations_limits() {
        let values = rules().defaults.with(&LimitOverrides {
            cpu_budget_ms: Some(250),
            memory_mb: Some(16),
            run_steps: Some(7),
            ..Default::default()
        });
        let limits = values.activation(Duration::from_secs(3));
        assert_eq!(limits.cpu_budget, Duration::from_millis(250));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.max_run_steps, 7);
        assert_eq!(limits.wall_clock, Duration::from_secs(3));
    }
}
