//! Assembles a running Waymark: store, clock, tenant bootstrap, runtime and modules, the
//! scheduler and delivery workers, and the HTTP API. The only place that wires layers together.

use crate::api::limits::{IngestLimits, RateLimits};
use crate::api::{self, ApiOptions, AppState};
use crate::backfill_job::BackfillWorker;
use crate::clock::Clock;
use crate::delivery::{DeliveryWorker, MailTls, Mailer, Senders, TransportConfig};
use crate::group_commit::GroupCommit;
use crate::ingest::Ingestor;
use crate::ingest::writer;
use crate::journeys::effects::EffectWorker;
use crate::journeys::executor::Executor;
use crate::modules::deploy::Deployer;
use crate::modules::follow::Follower;
use crate::modules::{ModuleFiles, ModuleRegistry};
use crate::reconcile_job::{DEFAULT_BATCH, ReconcileJob, ReconcileSchedule};
use crate::runtime::Runtime;
use crate::runtime::threads::GuestThreads;
use crate::scheduler::{Scheduler, spawn_clock_refresh, spawn_statistics_upkeep};
use crate::secrets::{self, SecretBox, SecretsKey};
use crate::store::{self, Store};
use crate::tenancy;
use crate::tenancy::limits::{HostBounds, LimitValues, TenantLimits};
use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// PostgreSQL URL; the embedded SQLite database under `data_dir` when absent.
    pub database_url: Option<String>,
    pub modules_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Where recipients reach this host (unsubscribe links hang under it); `http://` and the
    /// bound listen address when absent.
    pub public_url: Option<String>,
    pub dev: bool,
    pub transport: TransportConfig,
    pub mail_from: String,
    /// Seals tenants' transport secrets. Without one, dev mode makes one in the data dir and
    /// any other host refuses to store secrets.
    pub secrets_key: Option<SecretsKey>,
    /// Extra root certificates (PEM) trusted for tenants' SMTP servers and HTTP providers.
    pub mail_ca_file: Option<PathBuf>,
    /// Wall-clock time one activation may take, whoever's it is.
    pub activation_timeout: Duration,
    /// The host's default of every per-tenant limit (its command line); the operator sets a
    /// tenant's own through the API. The scheduler's claims read `activations_in_flight`.
    pub tenant_limits: LimitValues,
    /// Activations run at once.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Largest module component a deploy accepts.
    pub max_module_bytes: usize,
    /// Connections open at once, and how long one may sit without a request.
    pub connections: api::serve::ConnectionLimits,
    /// Sustained requests per second per API key (0: unlimited) and the burst above it.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub group_commit: GroupCommit,
    /// When the reconcile job runs (buckets over time).
    pub reconcile_cron: ReconcileSchedule,
}

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let store = open_store(&config.data_dir, config.database_url.as_deref()).await?;
    // The clock offset belongs to the data: once moved forward it never goes back, and every
    // process on the database follows it (see `spawn_clock_refresh`).
    let clock = Clock::with_offset(store.clock_offset().await?);

    let bootstrap =
        tenancy::bootstrap_default_tenant(store.as_ref(), &config.data_dir, &clock).await?;
    match &bootstrap.admin_key_written {
        Some(path) => println!(
            "created the default tenant; its admin API key is in {}",
            path.display()
        ),
        None => println!(
            "admin API key: {} (written on first boot)",
            config.data_dir.join(tenancy::ADMIN_KEY_FILE).display()
        ),
    }
    if let Some(path) =
        tenancy::bootstrap_operator_key(store.as_ref(), &config.data_dir, &clock).await?
    {
        println!(
            "created an operator key (it manages tenants: /v1/tenants); it is in {}",
            path.display()
        );
    }

    let runtime = Arc::new(Runtime::new(
        config.data_dir.join("artifacts"),
        config.tenant_limits.activation(config.activation_timeout),
        clock.clone(),
    )?);
    // The tenants' own limits before anything applies them (modules are described under them
    // below); then every second, for the changes made through other hosts.
    let tenant_limits = Arc::new(TenantLimits::new(
        config.tenant_limits,
        HostBounds {
            activation_timeout: config.activation_timeout,
            pool_memory_mb: (runtime.max_memory_bytes() >> 20) as u64,
        },
    ));
    tenant_limits
        .refresh(store.as_ref())
        .await
        .context("reading the tenants' limits")?;
    tenant_limits.spawn_refresh(store.clone());
    let registry = Arc::new(
        ModuleRegistry::new(runtime, ModuleFiles::new(config.data_dir.join("modules")))
            .with_catalog(store.clone())
            .with_limits(tenant_limits.clone()),
    );
    let backfill_wake = Arc::new(Notify::new());
    let deployer = Arc::new(Deployer {
        catalog: store.clone(),
        runs: store.clone(),
        backfills: store.clone(),
        registry: registry.clone(),
        clock: clock.clone(),
        backfill_wake: backfill_wake.clone(),
        max_module_bytes: config.max_module_bytes,
        limits: tenant_limits.clone(),
    });
    let follower = Follower {
        catalog: store.clone(),
        backfills: store.clone(),
        registry: registry.clone(),
        clock: clock.clone(),
        backfill_wake: backfill_wake.clone(),
    };
    // Every tenant's modules as the database has them, before any worker or request needs
    // them; a module that fails to load is skipped with an error, the rest served.
    follower
        .catch_up()
        .await
        .context("loading the tenants' modules")?;
    if let Some(dir) = &config.modules_dir {
        let synced = deployer
            .sync_directory(&bootstrap.tenant_id, dir)
            .await
            .with_context(|| format!("deploying the modules in {}", dir.display()))?;
        for (path, error) in &synced.skipped {
            tracing::error!("module {} skipped: {error}", path.display());
        }
        println!(
            "modules in {}: {} deployed, {} unchanged, {} removed, {} skipped",
            dir.display(),
            synced.deployed.len(),
            synced.unchanged.len(),
            synced.removed.len(),
            synced.skipped.len()
        );
        // Hot reload: a changed file is deployed to the default tenant, without a restart.
        crate::modules::watch::watch_directory(
            deployer.clone(),
            bootstrap.tenant_id.clone(),
            dir.clone(),
        );
    }
    follower.spawn().await.context("following module changes")?;

    // Bound before the workers start: the public URL defaults to the bound address.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let owner = format!("{}-{}", std::process::id(), crate::ids::RunId::generate());
    let scheduler_wake = Arc::new(Notify::new());
    let delivery_wake = Arc::new(Notify::new());
    let effects_wake = Arc::new(Notify::new());
    let executor = Arc::new(Executor::new(
        store.clone(),
        registry.clone(),
        tenant_limits.clone(),
        clock.clone(),
        effects_wake.clone(),
        public_url,
    ));
    // Guests run apart from the API, at a lower priority: see `runtime::threads`.
    let guest_threads = GuestThreads::start().context("starting the guest threads")?;
    Scheduler {
        store: store.clone(),
        executor,
        clock: clock.clone(),
        wake: scheduler_wake.clone(),
        delivery_wake: delivery_wake.clone(),
        concurrency: config.workers,
        // A tenant's own limit is read by each claim, in the claim's transaction.
        tenant_in_flight: u32::try_from(config.tenant_limits.activations_in_flight)
            .unwrap_or(u32::MAX),
        owner: format!("scheduler-{owner}"),
        lease: (config.activation_timeout * 2).max(Duration::from_secs(15)),
    }
    .spawn_on(&guest_threads.handle());
    spawn_clock_refresh(store.clone(), clock.clone(), scheduler_wake.clone());
    spawn_statistics_upkeep(store.clone());
    let secrets = secrets_box(&config)?;
    let mail_tls = MailTls::new(config.mail_ca_file.as_deref())
        .context("--mail-ca-file: the certificates tenants' transports trust")?;
    let host_mailer = Arc::new(Mailer::new(&config.transport, &config.mail_from)?);
    DeliveryWorker {
        store: store.clone(),
        senders: Arc::new(Senders::new(
            store.clone(),
            host_mailer,
            secrets.clone(),
            mail_tls,
        )),
        clock: clock.clone(),
        wake: delivery_wake,
        owner: format!("delivery-{owner}"),
    }
    .spawn();

    ReconcileJob {
        store: store.clone(),
        modules: registry.clone(),
        clock: clock.clone(),
        schedule: config.reconcile_cron.clone(),
        batch: DEFAULT_BATCH,
        owner: format!("reconcile-{owner}"),
        scheduler_wake: scheduler_wake.clone(),
    }
    .spawn();

    let group_commit = GroupCommit {
        serial_store: store.commits_serially(),
        ..config.group_commit
    };
    let writer = writer::spawn(store.clone(), registry.clone(), group_commit);
    let ingestor = Arc::new(Ingestor::new(
        writer,
        store.clone(),
        registry.clone(),
        clock.clone(),
        scheduler_wake.clone(),
    ));
    EffectWorker {
        store: store.clone(),
        ingestor: ingestor.clone(),
        clock: clock.clone(),
        wake: effects_wake,
        owner: format!("effects-{owner}"),
    }
    .spawn();
    BackfillWorker {
        store: store.clone(),
        modules: registry.clone(),
        clock: clock.clone(),
        wake: backfill_wake.clone(),
        owner: format!("backfill-{owner}"),
    }
    .spawn();
    let rate_limits = Arc::new(RateLimits::new(
        config.rate_limit_per_second,
        config.rate_limit_burst,
    ));
    let state = AppState {
        ingest_limits: Arc::new(IngestLimits::new(tenant_limits.clone())),
        tenant_limits,
        store,
        modules: registry,
        ingestor,
        clock,
        scheduler_wake,
        rate_limits,
        backfill_wake,
        deployer,
        secrets,
    };
    let app = api::router(
        state,
        &ApiOptions {
            dev: config.dev,
            max_body_bytes: config.max_body_bytes,
        },
    )
    .layer(tower_http::trace::TraceLayer::new_for_http());

    println!(
        "waymark listening on http://{addr}{}",
        if config.dev { " (dev mode)" } else { "" }
    );
    std::io::stdout().flush().ok();
    api::serve::serve(
        listener,
        app,
        config.connections.fitted(),
        shutdown_signal(),
    )
    .await?;
    drop(guest_threads);
    Ok(())
}

/// What seals tenants' secrets: the configured key; in dev mode without one, the key in the
/// data dir (made on first boot, like the admin key); otherwise none, and storing a secret is
/// refused rather than done with a key the operator never chose.
fn secrets_box(config: &ServeConfig) -> anyhow::Result<Option<Arc<SecretBox>>> {
    let key = match &config.secrets_key {
        Some(key) => key.clone(),
        None if config.dev => {
            let path = config.data_dir.join(secrets::DEV_KEY_FILE);
            let key = secrets::load_or_create_key_file(&path)
                .with_context(|| format!("the dev secrets key {}", path.display()))?;
            println!("secrets key: {} (dev mode)", path.display());
            key
        }
        None => return Ok(None),
    };
    Ok(Some(Arc::new(SecretBox::new(&key))))
}

/// The store the configuration names: PostgreSQL when a URL is given, else the embedded SQLite
/// database in the data dir (created if needed).
pub async fn open_store(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    store::open(database_url, &data_dir.join("waymark.db"))
        .await
        .context("opening the database")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
