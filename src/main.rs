//! The `vigil` binary: parses the command line, sets up logging, loads settings and
//! hands over to the library. No logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vigil::config::{
    self, AgentSettings, FileSettings, Flags, MonitorServerSettings, ServeSettings,
};
use vigil::error::StartupError;
use vigil::{agent, db, probe, startup, telemetry};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Distributed device-monitoring runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://vigil.db]
    #[arg(long, env = "VIGIL_DB")]
    db: Option<String>,
    /// Address to listen on, HOST:PORT (port 0 picks a free one)
    #[arg(long, env = "VIGIL_LISTEN")]
    listen: Option<String>,
    /// Most database connections this process opens [default: 8]
    #[arg(long, env = "VIGIL_DB_POOL_SIZE")]
    db_pool_size: Option<u32>,
    /// Settings file (TOML); ./vigil.toml is read when present and this is not given
    #[arg(long, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on this machine: coordinator, monitor servers, this host monitored
    Serve {
        #[command(flatten)]
        common: Common,
        /// Monitor servers to run in this process [default: 2]
        #[arg(long, env = "VIGIL_MONITOR_SERVERS")]
        monitor_servers: Option<u16>,
    },
    /// The REST API and the scheduler
    Coordinator {
        #[command(flatten)]
        common: Common,
    },
    /// One monitor-server replica
    MonitorServer {
        #[command(flatten)]
        common: Common,
        /// HOST[:PORT] coordinators use to reach this server [default: the bound address]
        #[arg(long, env = "VIGIL_ADVERTISE")]
        advertise: Option<String>,
    },
    /// This host's metrics (CPU, memory, network, disks, sensors) as JSON at
    /// /metrics.json and Prometheus text at /metrics; needs no database
    Agent {
        /// Address to listen on, HOST:PORT (port 0 picks a free one) [default: 0.0.0.0:9109]
        #[arg(long, env = "VIGIL_LISTEN")]
        listen: Option<String>,
        /// Milliseconds between two samples, at least 200 [default: 1000]
        #[arg(long, env = "VIGIL_AGENT_INTERVAL_MS")]
        interval_ms: Option<u64>,
        /// Settings file (TOML); ./vigil.toml is read when present and this is not given
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Exit code for settings, database and bind errors.
const EXIT_STARTUP: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, flags) = match cli.command {
        Command::Serve {
            ref common,
            monitor_servers,
        } => (
            common.config.as_deref(),
            Flags {
                monitor_servers,
                ..flags(common)
            },
        ),
        Command::Coordinator { ref common } => (common.config.as_deref(), flags(common)),
        Command::MonitorServer {
            ref common,
            ref advertise,
        } => (
            common.config.as_deref(),
            Flags {
                advertise: advertise.clone(),
                ..flags(common)
            },
        ),
        Command::Agent {
            ref listen,
            interval_ms,
            ref config,
        } => (
            config.as_deref(),
            Flags {
                listen: listen.clone(),
                interval_ms,
                ..Flags::default()
            },
        ),
    };
    let file = match settings_file(config) {
        Ok(file) => file,
        Err(error) => return fail(&error),
    };
    telemetry::init(file.log.as_deref());

    let runtime = actix_rt::System::new();
    let outcome = match cli.command {
        Command::Serve { .. } => match ServeSettings::resolve(&flags, &file) {
            Ok(settings) => runtime.block_on(startup::serve(settings)),
            Err(error) => Err(error),
        },
        Command::Coordinator { .. } => match config::coordinator_settings(&flags, &file) {
            Ok(settings) => runtime.block_on(run_coordinator(settings)),
            Err(error) => Err(error),
        },
        Command::MonitorServer { .. } => match MonitorServerSettings::resolve(&flags, &file) {
            Ok(settings) => runtime.block_on(run_monitor_server(settings)),
            Err(error) => Err(error),
        },
        Command::Agent { .. } => match AgentSettings::resolve(&flags, &file) {
            Ok(settings) => runtime.block_on(run_agent(settings)),
            Err(error) => Err(error),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn flags(common: &Common) -> Flags {
    Flags {
        db: common.db.clone(),
        listen: common.listen.clone(),
        db_pool_size: common.db_pool_size,
        ..Flags::default()
    }
}

fn settings_file(path: Option<&Path>) -> Result<FileSettings, StartupError> {
    match path {
        Some(path) => FileSettings::load(path),
        None if Path::new("vigil.toml").is_file() => FileSettings::load(Path::new("vigil.toml")),
        None => Ok(FileSettings::default()),
    }
}

/// Prints the error as one line (libpq's messages span several) and exits with 2.
fn fail(error: &StartupError) -> ExitCode {
    let message = error.to_string();
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("vigil: {line}");
    ExitCode::from(EXIT_STARTUP)
}

async fn run_coordinator(settings: config::NodeSettings) -> Result<(), StartupError> {
    let db = db::Db::open(settings.db, settings.db_pool_size).await?;
    let coordinator = startup::Coordinator::build(db, settings.listen)?;
    let handle = coordinator.handle();
    until_stopped(handle, coordinator.run_until_stopped()).await
}

async fn run_monitor_server(settings: MonitorServerSettings) -> Result<(), StartupError> {
    let db = db::Db::open(settings.node.db, settings.node.db_pool_size).await?;
    let node = startup::MonitorServerNode::build(
        db,
        settings.node.listen,
        settings.advertise.as_deref(),
        probe::standard(),
    )
    .await?;
    let handle = node.handle();
    until_stopped(handle, node.run_until_stopped()).await
}

/// Runs a node until it stops on its own or a signal comes, then stops it and waits for
/// the rest of its run (a monitor server writes its metrics, every node leaves the
/// cluster). The run is its own task, so the server keeps being driven as it stops.
async fn until_stopped(
    handle: actix_web::dev::ServerHandle,
    run: impl std::future::Future<Output = std::io::Result<()>> + 'static,
) -> Result<(), StartupError> {
    let mut running = actix_rt::spawn(run);
    let ended = tokio::select! {
        () = startup::shutdown_signal() => {
            handle.stop(true).await;
            running.await
        }
        ended = &mut running => ended,
    };
    match ended {
        Ok(served) => served.map_err(StartupError::Server),
        Err(join) => Err(StartupError::Server(std::io::Error::other(
            join.to_string(),
        ))),
    }
}

async fn run_agent(settings: AgentSettings) -> Result<(), StartupError> {
    let agent = agent::Agent::build(settings.listen, settings.interval)?;
    let handle = agent.handle();
    until_stopped(handle, agent.run_until_stopped()).await
}
