//! The `waymark` command line: `serve`, `dev` and `build`. Flags have matching environment
//! variables (`WAYMARK_*`).

use crate::delivery::TransportConfig;
use crate::modules::build::{BuildOptions, build_modules, repo_root_from};
use crate::runtime::ActivationLimits;
use crate::server::{ServeConfig, serve};
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
    /// Build the example modules and serve them in dev mode on the embedded database.
    Dev(ServeArgs),
    /// Build modules (Rust workspaces and JS packages) into .wasm components.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the database, module store, compiled artifacts and admin key live.
    #[arg(long, env = "WAYMARK_DATA_DIR", default_value = "./waymark-data")]
    data_dir: PathBuf,
    /// A directory of module components (`*.wasm`) to load at start.
    #[arg(long, env = "WAYMARK_MODULES")]
    modules: Option<PathBuf>,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "WAYMARK_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Dev mode: adds `POST /v1/admin/clock/advance`.
    #[arg(long, env = "WAYMARK_DEV")]
    dev: bool,
    /// SMTP server for delivery; without it emails are only logged.
    #[arg(long, env = "WAYMARK_SMTP_HOST")]
    smtp_host: Option<String>,
    #[arg(long, env = "WAYMARK_SMTP_PORT", default_value_t = 25)]
    smtp_port: u16,
    /// Sender address of every email.
    #[arg(
        long,
        env = "WAYMARK_MAIL_FROM",
        default_value = "Waymark <waymark@localhost>"
    )]
    mail_from: String,
    /// CPU time one activation may use (`500ms`, `2s`).
    #[arg(long, env = "WAYMARK_CPU_BUDGET", default_value = "2s", value_parser = parse_duration)]
    cpu_budget: Duration,
    /// Memory one activation may use, in MiB.
    #[arg(long, env = "WAYMARK_MEMORY_LIMIT_MB", default_value_t = 128)]
    memory_limit_mb: usize,
    /// Wall-clock time one activation may take.
    #[arg(long, env = "WAYMARK_ACTIVATION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    activation_timeout: Duration,
    /// Activations run at once.
    #[arg(long, env = "WAYMARK_WORKERS", default_value_t = 16)]
    workers: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WAYMARK_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Module sources: cargo workspaces/packages or JS packages. Default: `examples`.
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
            data_dir: self.data_dir,
            modules_dir: self.modules,
            listen: self.listen,
            dev: dev || self.dev,
            transport: match self.smtp_host {
                Some(host) => TransportConfig::Smtp {
                    host,
                    port: self.smtp_port,
                },
                None => TransportConfig::Log,
            },
            mail_from: self.mail_from,
            limits: ActivationLimits {
                cpu_budget: self.cpu_budget,
                memory_bytes: self.memory_limit_mb << 20,
                wall_clock: self.activation_timeout,
            },
            workers: self.workers,
            max_body_bytes: self.max_body_bytes,
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
        Command::Dev(mut args) => {
            let root = repo_root()?;
            let out = root.join("target/modules");
            build(&root, vec![root.join("examples")], out.clone())?;
            args.modules.get_or_insert(out);
            block_on(serve(args.into_config(true)))
        }
        Command::Build(args) => {
            let root = repo_root()?;
            let sources = if args.sources.is_empty() {
                vec![root.join("examples")]
            } else {
                args.sources
            };
            build(&root, sources, args.out)
        }
    }
}

fn repo_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    repo_root_from(&cwd).ok_or_else(|| {
        anyhow::anyhow!(
            "run this from the Waymark repository (no wit/waymark.wit above {})",
            cwd.display()
        )
    })
}

fn build(root: &std::path::Path, sources: Vec<PathBuf>, out_dir: PathBuf) -> anyhow::Result<()> {
    let built = build_modules(&BuildOptions {
        sources,
        out_dir,
        target_dir: root.join("target/wasm"),
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
