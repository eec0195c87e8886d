//! The `waymark` command line: `serve`, `dev`, `new`, `build`, `deploy`, `tenant`, `key` and
//! `buckets`. Flags have matching environment variables (`WAYMARK_*`).

use crate::clock::Clock;
use crate::delivery::TransportConfig;
use crate::group_commit::GroupCommit;
use crate::ids::ApiKeyId;
use crate::modules::build::{BuildOptions, build_modules, repo_root_from};
use crate::server::{ServeConfig, open_store, serve};
use crate::tenancy;
use crate::tenancy::limits::{
    DEFAULT_ACTIVATIONS_IN_FLIGHT, DEFAULT_INGEST_BURST, DEFAULT_INGEST_RATE, DEFAULT_MODULE_BYTES,
    LimitValues,
};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "waymark",
    version,
    about = "Lifecycle automation with durable journeys written as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and run journeys.
    Serve(ServeArgs),
    /// Build the example modules (or the current directory's, or the sources given) and serve
    /// them in dev mode on the embedded database, rebuilding and deploying each module on save.
    Dev(DevArgs),
    /// Build modules (Rust workspaces and JS packages) into .wasm components.
    Build(BuildArgs),
    /// Deploy a module to a running server: a built `.wasm`, or a source it builds first.
    Deploy(DeployArgs),
    /// Scaffold a module in a new directory, with the guest SDK it builds against.
    New {
        /// The module's name (and its directory's).
        name: String,
        /// The language: `rust` or `ts` (TypeScript).
        #[arg(long, default_value = "rust")]
        lang: crate::modules::scaffold::Lang,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Manage tenants (works while a server runs on the same database).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys, tenants' and operator keys (works while a server runs on the same
    /// database).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Work with a running server's buckets (over its HTTP API).
    #[command(subcommand)]
    Buckets(BucketsCommand),
}

#[derive(Debug, Subcommand)]
enum BucketsCommand {
    /// (Re)start a computed bucket's backfill — its members recomputed from history — and show
    /// its progress until it completes (exit 0) or fails (exit 1).
    Backfill {
        /// The bucket's id.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// How to reach a running server's API.
#[derive(Debug, Args)]
struct ApiArgs {
    /// The server's base URL.
    #[arg(long, env = "WAYMARK_URL", default_value = "http://127.0.0.1:7700")]
    url: String,
    /// An API key of the tenant (admin scope; deploy scope for `deploy`).
    #[arg(long, env = "WAYMARK_API_KEY", hide_env_values = true)]
    key: String,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Module sources to build, watch and serve (cargo packages/workspaces, JS packages).
    /// Default: the repository's examples (`examples` and `examples/ts-onboarding`).
    #[arg(long = "source")]
    sources: Vec<PathBuf>,
    #[command(flatten)]
    serve_args: ServeArgs,
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// A `.wasm` component, or a module source (cargo package/workspace, JS package) to build.
    source: PathBuf,
    /// The module's name (default: the file's or package's name).
    #[arg(long)]
    name: Option<String>,
    /// Replay the module's live runs against this version and report; deploy nothing. Exits
    /// 1 when a run would not replay.
    #[arg(long, conflicts_with = "migrate")]
    verify: bool,
    /// Deploy, then move every live run that replays cleanly to this version (the others
    /// stay on theirs).
    #[arg(long)]
    migrate: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant (no-op if it exists). Over HTTP, an operator key does this and more:
    /// `/v1/tenants`.
    Create {
        /// 1 to 64 letters, digits, `-`, `_` or `.`.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key; its secret is printed once, alone on the last line.
    Create {
        /// The tenant's name.
        #[arg(long, required_unless_present = "operator")]
        tenant: Option<String>,
        /// Comma-separated: ingest, read, admin, deploy.
        #[arg(long, required_unless_present = "operator")]
        scopes: Option<String>,
        /// An operator key instead: it manages tenants over HTTP (`/v1/tenants`: create,
        /// list, suspend, resume, delete) and reaches no tenant's data. First boot writes one
        /// to `<data-dir>/operator.key`.
        #[arg(long, conflicts_with_all = ["tenant", "scopes"])]
        operator: bool,
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key by id (a tenant's or an operator's).
    Revoke {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Where the data lives; shared by `serve`, `dev`, `tenant` and `key`.
#[derive(Debug, Args)]
struct DatabaseArgs {
    /// Where the embedded database, module store, compiled artifacts and admin key live.
    #[arg(long, env = "WAYMARK_DATA_DIR", default_value = "./waymark-data")]
    data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://user@host/db`) instead of the embedded SQLite database.
    #[arg(long, env = "WAYMARK_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// A directory of module components (`*.wasm`) to load at start.
    #[arg(long, env = "WAYMARK_MODULES")]
    modules: Option<PathBuf>,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "WAYMARK_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Dev mode: adds `POST /v1/admin/clock/advance`.
    #[arg(long, env = "WAYMARK_DEV")]
    dev: bool,
    /// The host's SMTP server (plain SMTP), for every tenant without a sender of its own
    /// (`/v1/email/settings`); without it their emails are only logged.
    #[arg(long, env = "WAYMARK_SMTP_HOST")]
    smtp_host: Option<String>,
    #[arg(long, env = "WAYMARK_SMTP_PORT", default_value_t = 25)]
    smtp_port: u16,
    /// Base URL where recipients reach this host, e.g. `https://mail.example.com`: unsubscribe
    /// links point under it. Default: `http://` and the bound listen address.
    #[arg(long, env = "WAYMARK_PUBLIC_URL")]
    public_url: Option<String>,
    /// Sender address of every email of a tenant without sender settings of its own.
    #[arg(
        long,
        env = "WAYMARK_MAIL_FROM",
        default_value = "Waymark <waymark@localhost>"
    )]
    mail_from: String,
    /// Key sealing tenants' SMTP passwords and API keys in the database: 32 bytes as 64 hex
    /// digits or base64 (`openssl rand -hex 32`). Every host on one database needs the same
    /// key. Without it, dev mode keeps one in `<data-dir>/secrets.key`; otherwise storing a
    /// secret is refused.
    #[arg(long, env = "WAYMARK_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<crate::secrets::SecretsKey>,
    /// PEM file of extra root certificates (e.g. a private CA) trusted, besides the built-in
    /// web roots, for tenants' SMTP servers and HTTP email providers.
    #[arg(long, env = "WAYMARK_MAIL_CA_FILE")]
    mail_ca_file: Option<PathBuf>,
    /// CPU time one activation may use (`500ms`, `2s`): each tenant's default (the operator
    /// sets a tenant's own with `PATCH /v1/tenants/{id}/limits`, as for every `--tenant-*`).
    #[arg(long, env = "WAYMARK_CPU_BUDGET", default_value = "2s", value_parser = parse_duration)]
    cpu_budget: Duration,
    /// Memory one activation may use, in MiB: each tenant's default. The instance pool is
    /// sized for it at start (rounded up to a power of two, at least 64), which is also the
    /// most a tenant can be given.
    #[arg(long, env = "WAYMARK_MEMORY_LIMIT_MB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    memory_limit_mb: u64,
    /// Wall-clock time one activation may take (for every tenant).
    #[arg(long, env = "WAYMARK_ACTIVATION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    activation_timeout: Duration,
    /// Most journal steps one run may record; a run that would take more fails, naming the
    /// cap. Each tenant's default.
    #[arg(long, env = "WAYMARK_MAX_RUN_STEPS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_run_steps: u32,
    /// Activations of one tenant's runs in flight at once, over every host: each tenant's
    /// default (half the default workers, so one tenant's flood leaves room to the others).
    #[arg(long, env = "WAYMARK_TENANT_ACTIVATIONS_IN_FLIGHT", default_value_t = DEFAULT_ACTIVATIONS_IN_FLIGHT, value_parser = clap::value_parser!(u64).range(1..))]
    tenant_activations_in_flight: u64,
    /// Events per second one tenant may ingest, counted by each host on its own (0:
    /// unlimited): each tenant's default.
    #[arg(long, env = "WAYMARK_TENANT_INGEST_RATE", default_value_t = DEFAULT_INGEST_RATE)]
    tenant_ingest_rate: u64,
    /// Events one tenant may ingest at once above its rate (0: one second's worth): each
    /// tenant's default.
    #[arg(long, env = "WAYMARK_TENANT_INGEST_BURST", default_value_t = DEFAULT_INGEST_BURST)]
    tenant_ingest_burst: u64,
    /// Total size in bytes of one tenant's deployed modules (each module's active version):
    /// each tenant's default.
    #[arg(long, env = "WAYMARK_TENANT_MODULE_BYTES", default_value_t = DEFAULT_MODULE_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    tenant_module_bytes: u64,
    /// Activations run at once. Activations mostly wait (on their commit, on host calls), so
    /// many in flight keep the cores busy and let more commits share a transaction.
    #[arg(long, env = "WAYMARK_WORKERS", default_value_t = 64)]
    workers: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WAYMARK_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Client connections open at once; past it new ones wait to be accepted.
    #[arg(long, env = "WAYMARK_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// How long a connection may go without a complete request head (an idle keep-alive
    /// connection, a client trickling its headers) before it is closed.
    #[arg(long, env = "WAYMARK_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Largest module component a deploy accepts, in bytes (for every tenant; their total
    /// is `--tenant-module-bytes`).
    #[arg(long, env = "WAYMARK_MAX_MODULE_BYTES", default_value_t = crate::modules::deploy::DEFAULT_MAX_MODULE_BYTES)]
    max_module_bytes: usize,
    /// Sustained requests per second per API key (0: unlimited).
    #[arg(long, env = "WAYMARK_RATE_LIMIT", default_value_t = 2_000)]
    rate_limit: u32,
    /// Requests a key may burst above its sustained rate.
    #[arg(long, env = "WAYMARK_RATE_LIMIT_BURST", default_value_t = 4_000)]
    rate_limit_burst: u32,
    /// Most events committed in one ingest transaction.
    #[arg(long, env = "WAYMARK_INGEST_BATCH", default_value_t = 4096)]
    ingest_batch: usize,
    /// How long a forming ingest batch waits for more events.
    #[arg(long, env = "WAYMARK_INGEST_LINGER", default_value = "1ms", value_parser = parse_duration)]
    ingest_linger: Duration,
    /// When the reconcile job moves buckets by the clock (windows emptying, max dwell, dwell
    /// reactions): a cron expression on the host clock, five fields or six with seconds first.
    #[arg(long, env = "WAYMARK_RECONCILE_CRON", default_value = crate::reconcile_job::DEFAULT_CRON)]
    reconcile_cron: crate::reconcile_job::ReconcileSchedule,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Module sources: cargo workspaces/packages or JS packages. Default: the repository's
    /// examples (`examples`, `examples/ts-onboarding`) inside the Waymark repository, else the
    /// current directory.
    sources: Vec<PathBuf>,
    /// Where the built `.wasm` files go.
    #[arg(long, default_value = "target/modules")]
    out: PathBuf,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::clock::parse_duration(text)
}

impl ServeArgs {
    fn into_config(self, dev: bool) -> ServeConfig {
        ServeConfig {
            data_dir: self.database.data_dir,
            database_url: self.database.database_url,
            modules_dir: self.modules,
            listen: self.listen,
            public_url: self.public_url,
            dev: dev || self.dev,
            transport: match self.smtp_host {
                Some(host) => TransportConfig::Smtp {
                    host,
                    port: self.smtp_port,
                },
                None => TransportConfig::Log,
            },
            mail_from: self.mail_from,
            secrets_key: self.secrets_key,
            mail_ca_file: self.mail_ca_file,
            activation_timeout: self.activation_timeout,
            tenant_limits: LimitValues {
                activations_in_flight: self.tenant_activations_in_flight,
                cpu_budget_ms: u64::try_from(self.cpu_budget.as_millis()).unwrap_or(u64::MAX),
                memory_mb: self.memory_limit_mb,
                ingest_rate: self.tenant_ingest_rate,
                ingest_burst: self.tenant_ingest_burst,
                module_bytes: self.tenant_module_bytes,
                run_steps: u64::from(self.max_run_steps),
            },
            workers: self.workers,
            max_body_bytes: self.max_body_bytes,
            max_module_bytes: self.max_module_bytes,
            connections: crate::api::serve::ConnectionLimits {
                max_connections: self.max_connections as usize,
                idle_timeout: self.idle_timeout,
            },
            rate_limit_per_second: self.rate_limit,
            rate_limit_burst: self.rate_limit_burst,
            group_commit: GroupCommit {
                max_batch: self.ingest_batch.max(1),
                linger: self.ingest_linger,
                ..GroupCommit::default()
            },
            reconcile_cron: self.reconcile_cron,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WAYMARK_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,cranelift=warn,wasmtime=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => block_on(serve(args.into_config(false))),
        Command::Dev(DevArgs {
            mut serve_args,
            sources,
        }) => {
            let (default_sources, work) = work_dirs()?;
            let sources = if sources.is_empty() {
                default_sources
            } else {
                sources
            };
            let out = serve_args
                .modules
                .get_or_insert_with(|| work.join("modules"))
                .clone();
            let options = BuildOptions {
                sources,
                out_dir: out,
                target_dir: work.join("wasm"),
            };
            for module in build_modules(&options)? {
                println!("built {} -> {}", module.name, module.path.display());
            }
            // Save → rebuild → the server's directory watch deploys it.
            crate::modules::watch::watch_sources(options);
            block_on(serve(serve_args.into_config(true)))
        }
        Command::Tenant(TenantCommand::Create { name, database }) => block_on(async move {
            let name = tenancy::check_tenant_name(&name)
                .map_err(|e| anyhow::anyhow!("tenant name {name:?}: {e}"))?;
            let store = open_store(&database.data_dir, database.database_url.as_deref()).await?;
            let (tenant, created) = store.create_tenant(name, Clock::default().now()).await?;
            let verb = if created {
                "created"
            } else {
                "already exists:"
            };
            println!("tenant {verb} {} ({})", tenant.name, tenant.id);
            Ok(())
        }),
        Command::Key(KeyCommand::Create {
            tenant,
            scopes,
            name,
            operator,
            database,
        }) => block_on(async move {
            let name =
                tenancy::check_key_name(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            if operator {
                let store =
                    open_store(&database.data_dir, database.database_url.as_deref()).await?;
                let (record, secret) =
                    tenancy::create_operator_key(store.as_ref(), name, Clock::default().now())
                        .await?;
                println!(
                    "created operator key {}; the secret is shown only now:",
                    record.id
                );
                println!("{secret}");
                return Ok(());
            }
            // clap requires both without --operator.
            let (Some(tenant), Some(scopes)) = (tenant, scopes) else {
                anyhow::bail!("--tenant and --scopes are required (or --operator)");
            };
            let scopes =
                tenancy::parse_scopes(&scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            let store = open_store(&database.data_dir, database.database_url.as_deref()).await?;
            let tenant = store.tenant_by_name(tenant.trim()).await?.ok_or_else(|| {
                anyhow::anyhow!(
                    "no tenant named {tenant:?} (create it with `waymark tenant create`)"
                )
            })?;
            let (record, secret) = tenancy::create_key(
                store.as_ref(),
                &tenant.id,
                name,
                scopes,
                Clock::default().now(),
            )
            .await?;
            let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
            println!(
                "created key {} for tenant {} with scopes {}; the secret is shown only now:",
                record.id,
                tenant.name,
                scopes.join(",")
            );
            println!("{secret}");
            Ok(())
        }),
        Command::Key(KeyCommand::Revoke { id, database }) => block_on(async move {
            let store = open_store(&database.data_dir, database.database_url.as_deref()).await?;
            let (key, now) = (ApiKeyId(id.clone()), Clock::default().now());
            if store.revoke_api_key(None, &key, now).await? {
                println!("revoked key {id}");
                Ok(())
            } else if store.revoke_operator_key(&key, now).await? {
                println!("revoked operator key {id}");
                Ok(())
            } else {
                anyhow::bail!("no live key with id {id}")
            }
        }),
        Command::Buckets(BucketsCommand::Backfill { id, api }) => {
            block_on(crate::backfill_job::cli::backfill(&api.url, &api.key, &id))
        }
        Command::Deploy(args) => {
            use crate::modules::cli::DeployMode;
            let mode = match (args.verify, args.migrate) {
                (true, _) => DeployMode::Verify,
                (_, true) => DeployMode::Migrate,
                _ => DeployMode::Deploy,
            };
            block_on(crate::modules::cli::deploy(
                &args.source,
                args.name.as_deref(),
                mode,
                &args.api.url,
                &args.api.key,
            ))
        }
        Command::New { name, lang, dir } => {
            let made = crate::modules::scaffold::new_module(&dir, &name, lang)?;
            let test = match lang {
                crate::modules::scaffold::Lang::Rust => "cargo test",
                crate::modules::scaffold::Lang::TypeScript => "npm install && npm test",
            };
            println!(
                "created module {name} in {}\ntest it with `{test}` there, build it with \
                 `waymark build`, deploy it with `waymark deploy {} --key $KEY`",
                made.display(),
                made.display()
            );
            Ok(())
        }
        Command::Build(args) => {
            let (default_sources, work) = work_dirs()?;
            let sources = if args.sources.is_empty() {
                default_sources
            } else {
                args.sources
            };
            build(sources, args.out, work.join("wasm"))
        }
    }
}

/// The module sources `build` and `dev` take when given none, and the directory their build
/// output goes under: in the Waymark repository its examples (Rust and TypeScript) and
/// `target/`; anywhere else the current directory and its `target/`.
fn work_dirs() -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    let cwd = std::env::current_dir()?;
    Ok(match repo_root_from(&cwd) {
        Some(root) => (
            // The Rust examples' workspace and the TypeScript example beside it.
            vec![root.join("examples"), root.join("examples/ts-onboarding")],
            root.join("target"),
        ),
        None => (vec![cwd.clone()], cwd.join("target")),
    })
}

fn build(sources: Vec<PathBuf>, out_dir: PathBuf, target_dir: PathBuf) -> anyhow::Result<()> {
    let built = build_modules(&BuildOptions {
        sources,
        out_dir,
        target_dir,
    })?;
    for module in &built {
        println!("built {} -> {}", module.name, module.path.display());
    }
    Ok(())
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
