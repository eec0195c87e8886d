//! Every tenant's limits in memory, for the hot paths that apply them: an activation's CPU
//! budget, memory cap and steps, ingest's rate, a deploy's total size. Reading one is a map
//! lookup without a lock.
//!
//! The store is the truth. The host that writes a change installs it here at once; every host
//! reads all of the tenants' settings again every [`REFRESH_EVERY`], so a change made through
//! another host applies here within about a second, without a restart. It must not write the
//! store.

use super::{HostBounds, LimitOverrides, LimitRules, LimitValues, TenantLimitsRecord};
use crate::ids::TenantId;
use crate::runtime::ActivationLimits;
use crate::store::{StoreResult, TenantLimitStore};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often every host reads the tenants' settings again: the longest a change made through
/// another host takes to apply here (plus the read itself).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

pub struct TenantLimits {
    rules: LimitRules,
    /// The tenants that set limits of their own; the others have the defaults.
    own: ArcSwap<HashMap<TenantId, LimitOverrides>>,
    /// Counts the changes installed by this host: a refresh that read the store before one
    /// was installed must not put the older settings back.
    installs: AtomicU64,
}

impl TenantLimits {
    /// `defaults` from the command line; no tenant has settings of its own until
    /// [`TenantLimits::refresh`] reads them.
    pub fn new(defaults: LimitValues, bounds: HostBounds) -> Self {
        Self {
            rules: LimitRules { defaults, bounds },
            own: ArcSwap::from_pointee(HashMap::new()),
            installs: AtomicU64::new(0),
        }
    }

    /// The host's defaults and the ranges a `PATCH` is checked against.
    pub fn rules(&self) -> &LimitRules {
        &self.rules
    }

    pub fn defaults(&self) -> &LimitValues {
        &self.rules.defaults
    }

    /// The tenant's own settings (`None` where it has the host's default).
    pub fn own(&self, tenant: &TenantId) -> LimitOverrides {
        self.own.load().get(tenant).copied().unwrap_or_default()
    }

    /// What applies to the tenant: its own settings over the host's defaults.
    pub fn effective(&self, tenant: &TenantId) -> LimitValues {
        self.rules.defaults.with(&self.own(tenant))
    }

    /// The limits one activation of the tenant's runs gets.
    pub fn activation(&self, tenant: &TenantId) -> ActivationLimits {
        self.effective(tenant)
            .activation(self.rules.bounds.activation_timeout)
    }

    /// A change this host just stored: it applies here at once.
    pub fn install(&self, record: &TenantLimitsRecord) {
        self.installs.fetch_add(1, Ordering::SeqCst);
        self.own.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(record.tenant_id.clone(), record.own);
            next
        });
    }

    /// Read every tenant's settings from the store and make them the ones that apply; whether
    /// they were installed (not when this host installed a change of its own meanwhile: the
    /// next refresh reads it back).
    pub async fn refresh(&self, store: &dyn TenantLimitStore) -> StoreResult<bool> {
        let installs = self.installs.load(Ordering::SeqCst);
        let records = store.all_tenant_limits().await?;
        let next: HashMap<TenantId, LimitOverrides> = records
            .into_iter()
            .map(|record| (record.tenant_id, record.own))
            .collect();
        let mut installed = false;
        self.own.rcu(|current| {
            installed = self.installs.load(Ordering::SeqCst) == installs;
            if installed {
                Arc::new(next.clone())
            } else {
                current.clone()
            }
        });
        Ok(installed)
    }

    /// Refresh from the store every [`REFRESH_EVERY`] for as long as the process runs.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        store: Arc<dyn TenantLimitStore>,
    ) -> tokio::task::JoinHandle<()> {
        let limits = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REFRESH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(err) = limits.refresh(store.as_ref()).await {
                    tracing::warn!("reading the tenants' limits failed: {err}");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A store of limit rows that a test changes behind the cache's back (as another host
    /// would), and that can hold a read until the test lets it go.
    #[derive(Default)]
    struct Rows {
        rows: Mutex<Vec<TenantLimitsRecord>>,
        /// Notified once a read has taken the rows.
        read: tokio::sync::Notify,
        hold: tokio::sync::Mutex<()>,
    }

    #[async_trait]
    impl TenantLimitStore for Rows {
        async fn tenant_limits(&self, _: &TenantId) -> StoreResult<Option<TenantLimitsRecord>> {
            unreachable!("the cache reads all rows")
        }

        async fn change_tenant_limits(
            &self,
            _: &TenantId,
            _: &super::super::LimitPatch,
            _: Timestamp,
        ) -> StoreResult<Option<TenantLimitsRecord>> {
            unreachable!("the cache never writes")
        }

        async fn all_tenant_limits(&self) -> StoreResult<Vec<TenantLimitsRecord>> {
            let rows = self.rows.lock().unwrap().clone();
            self.read.notify_one();
            let _held = self.hold.lock().await;
            Ok(rows)
        }
    }

    fn defaults() -> LimitValues {
        LimitValues {
            activations_in_flight: 32,
            cpu_budget_ms: 2_000,
            memory_mb: 128,
            ingest_rate: 100,
            ingest_burst: 200,
            module_bytes: 1 << 20,
            run_steps: 10_000,
        }
    }

    fn cache() -> TenantLimits {
        TenantLimits::new(
            defaults(),
            HostBounds {
                activation_timeout: Duration::from_secs(10),
                pool_memory_mb: 128,
            },
        )
    }

    fn record(tenant: &TenantId, own: LimitOverrides) -> TenantLimitsRecord {
        TenantLimitsRecord {
            tenant_id: tenant.clone(),
            own,
            updated_at: Timestamp(0),
        }
    }

    #[tokio::test]
    async fn a_tenant_without_settings_has_the_defaults_and_one_with_them_its_own() {
        // Given acme set a CPU budget of its own, in the store
        let (acme, globex) = (TenantId("acme".into()), TenantId("globex".into()));
        let store = Rows::default();
        let own = LimitOverrides {
            cpu_budget_ms: Some(300),
            ..Default::default()
        };
        store.rows.lock().unwrap().push(record(&acme, own));
        let limits = cache();

        // When the cache refreshes
        assert!(limits.refresh(&store).await.unwrap());

        // Then acme runs under its budget and the defaults for the rest; globex under defaults
        let acme_limits = limits.activation(&acme);
        assert_eq!(acme_limits.cpu_budget, Duration::from_millis(300));
        assert_eq!(acme_limits.memory_bytes, 128 << 20);
        assert_eq!(acme_limits.wall_clock, Duration::from_secs(10));
        assert_eq!(limits.effective(&globex), defaults());
        assert_eq!(limits.own(&acme), own);

        // And when another host returns acme to the defaults, the next refresh follows
        store.rows.lock().unwrap().clear();
        assert!(limits.refresh(&store).await.unwrap());
        assert_eq!(limits.effective(&acme), defaults());
    }

    #[tokio::test]
    async fn a_change_installed_here_applies_at_once_and_an_older_refresh_does_not_undo_it() {
        // Given a refresh that has read the store, before acme's change, and is held
        let acme = TenantId("acme".into());
        let store = Arc::new(Rows::default());
        let limits = Arc::new(cache());
        let held = store.hold.lock().await;
        let refresh = tokio::spawn({
            let (limits, store) = (limits.clone(), store.clone());
            async move { limits.refresh(store.as_ref()).await.unwrap() }
        });
        store.read.notified().await;

        // When this host stores and installs a change meanwhile
        let changed = record(
            &acme,
            LimitOverrides {
                ingest_rate: Some(1),
                ..Default::default()
            },
        );
        limits.install(&changed);
        assert_eq!(limits.effective(&acme).ingest_rate, 1);
        store.rows.lock().unwrap().push(changed);
        drop(held);

        // Then the older read is not installed, and the change stands
        assert!(!refresh.await.unwrap());
        assert_eq!(limits.effective(&acme).ingest_rate, 1);
        // And the next refresh reads it back from the store
        assert!(limits.refresh(store.as_ref()).await.unwrap());
        assert_eq!(limits.effective(&acme).ingest_rate, 1);
    }
}
