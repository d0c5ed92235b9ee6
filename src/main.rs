//! The `vigil` binary: parses the command line, sets up logging, loads settings and
//! hands over to the library. No logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vigil::cli::{store as store_commands, telemetry, tokens as token_commands};
use vigil::config::{
    self, AgentSettings, CoordinatorSettings, FileSettings, Flags, MonitorServerSettings,
    RemoteWriteFlags, ServeSettings,
};
use vigil::error::StartupError;
use vigil::{agent, bench, db, fleet, probe, startup};

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
    /// Networks device addresses may not point into, comma-separated CIDRs; "" denies
    /// nothing [default: 169.254.0.0/16,fe80::/10,fd00:ec2::254/128,100.100.100.200/32]
    #[arg(long, env = "VIGIL_DENY_NETWORKS")]
    deny_networks: Option<String>,
    /// API requests per second each token may make; 0 turns the limit off [default: 100]
    #[arg(long, env = "VIGIL_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// API requests a token may make at once [default: twice --rate-limit]
    #[arg(long, env = "VIGIL_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
}

/// What a node of a multi-process cluster needs besides [`Common`].
#[derive(Args)]
struct Cluster {
    /// File holding the cluster token, the secret every node of the cluster shares
    /// (or set VIGIL_CLUSTER_TOKEN to the secret itself)
    #[arg(long, env = "VIGIL_CLUSTER_TOKEN_FILE")]
    cluster_token_file: Option<PathBuf>,
}

/// What a node that runs monitors needs besides [`Common`].
#[derive(Args)]
struct Polling {
    /// Threads each monitor server polls its devices on [default: one per core]
    #[arg(long, env = "VIGIL_POLL_THREADS")]
    poll_threads: Option<u16>,
    /// Send every sample also to this Prometheus remote-write URL (Prometheus with its
    /// receiver on, VictoriaMetrics, Mimir, Thanos Receive)
    #[arg(long, env = "VIGIL_REMOTE_WRITE_URL")]
    remote_write_url: Option<String>,
    /// File holding the bearer token remote write sends
    #[arg(long, env = "VIGIL_REMOTE_WRITE_BEARER_TOKEN_FILE")]
    remote_write_bearer_token_file: Option<PathBuf>,
    /// User name remote write sends (basic auth, with --remote-write-password-file)
    #[arg(long, env = "VIGIL_REMOTE_WRITE_USERNAME")]
    remote_write_username: Option<String>,
    /// File holding the password remote write sends
    #[arg(long, env = "VIGIL_REMOTE_WRITE_PASSWORD_FILE")]
    remote_write_password_file: Option<PathBuf>,
    /// Readings waiting for remote write at most; past it the oldest are dropped [default: 1000000]
    #[arg(long, env = "VIGIL_REMOTE_WRITE_QUEUE")]
    remote_write_queue: Option<usize>,
}

impl Polling {
    fn remote_write(&self) -> RemoteWriteFlags {
        RemoteWriteFlags {
            url: self.remote_write_url.clone(),
            bearer_token_file: self.remote_write_bearer_token_file.clone(),
            username: self.remote_write_username.clone(),
            password_file: self.remote_write_password_file.clone(),
            queue: self.remote_write_queue,
        }
    }
}

#[derive(Args)]
struct DbOnly {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://vigil.db]
    #[arg(long, env = "VIGIL_DB")]
    db: Option<String>,
    /// Settings file (TOML); ./vigil.toml is read when present and this is not given
    #[arg(long, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make an API token and print it; it is shown this once
    Create {
        /// admin (everything), operator (one company, read and write) or viewer (one company, read only)
        #[arg(long)]
        role: String,
        /// The company an operator or viewer token is for
        #[arg(long)]
        company: Option<i64>,
        /// A name to tell the token by [default: its role]
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbOnly,
    },
    /// List the API tokens (never their secrets)
    List {
        #[command(flatten)]
        db: DbOnly,
    },
    /// Revoke an API token: it stops working at once
    Revoke {
        /// The token's id, as `vigil token list` shows it
        id: i64,
        #[command(flatten)]
        db: DbOnly,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Series, polls, samples and bytes on disk per tier, bytes per sample, oldest and newest poll
    Stats {
        #[command(flatten)]
        db: DbOnly,
    },
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
        #[command(flatten)]
        polling: Polling,
    },
    /// The REST API and the scheduler
    Coordinator {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// One monitor-server replica
    MonitorServer {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        /// HOST[:PORT] coordinators use to reach this server [default: the bound address]
        #[arg(long, env = "VIGIL_ADVERTISE")]
        advertise: Option<String>,
        #[command(flatten)]
        polling: Polling,
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
    /// A simulated fleet of N devices on one port (agent JSON, node_exporter text,
    /// forced states), for tests and benchmarks; needs no database
    #[command(after_help = fleet::PROFILES_HELP)]
    Fleet(FleetArgs),
    /// API tokens: create, list, revoke
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The series store: what it holds and what it costs on disk
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Benchmarks of whole processes beside their peers, as a table and JSON under
    /// target/bench/ (not part of cargo test); run a release build
    Bench {
        /// The scenario: vs-prometheus, monitors, start-all, ingest, store, agent, api, or all
        scenario: String,
        /// Small sizes, seconds per scenario (what CI runs)
        #[arg(long)]
        smoke: bool,
        /// A PostgreSQL server to run the database-bound scenarios on as well as SQLite
        #[arg(long, env = "VIGIL_BENCH_DATABASE_URL")]
        postgres: Option<String>,
        /// Where the JSON reports and the processes' logs go
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Devices to run with instead of the scenario's own number
        #[arg(long)]
        devices: Option<usize>,
    },
}

#[derive(Args)]
struct FleetArgs {
    /// How many devices to simulate, 1 to 1000000; device i answers under /d/{i}/
    #[arg(long)]
    devices: usize,
    /// Address to listen on, HOST:PORT (port 0 picks a free one) [default: 127.0.0.1:9200]
    #[arg(long, env = "VIGIL_LISTEN")]
    listen: Option<String>,
    /// Seed of the devices' profiles: the same seed gives the same readings at the same time
    #[arg(long, default_value_t = fleet::DEFAULT_SEED)]
    seed: u64,
    /// HTTP worker threads [default: one per core]
    #[arg(long)]
    workers: Option<usize>,
    /// Milliseconds added to every answer of a device's metrics routes
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of metrics requests answered 500, 0 to 1
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Milliseconds a slow device takes to answer
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// Shares of devices that cross the alert threshold, cross the critical threshold,
    /// go unreachable and answer slowly, in episodes [default: 0.10,0.03,0.02,0.02]
    #[arg(long, value_name = "ALERT,CRITICAL,UNREACHABLE,SLOW", value_parser = fleet::Shares::parse)]
    shares: Option<fleet::Shares>,
    /// Write the device list (the bulk API's body) to FILE at start
    #[arg(long, value_name = "FILE")]
    write_devices: Option<PathBuf>,
    /// Kind of the devices in --write-devices' list: agent (/metrics.json) or prometheus (/metrics)
    #[arg(long, default_value = "agent", value_parser = fleet::document_kind)]
    kind: vigil::domain::DeviceKind,
    /// Host to put in the device list's addresses [default: the bound address]
    #[arg(long)]
    advertise: Option<String>,
}

/// Exit code for settings, database and bind errors.
const EXIT_STARTUP: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let (config, flags) = match cli.command {
        Command::Serve {
            ref common,
            monitor_servers,
            ref polling,
        } => (
            common.config.as_deref(),
            Flags {
                monitor_servers,
                poll_threads: polling.poll_threads,
                remote_write: polling.remote_write(),
                ..flags(common)
            },
        ),
        Command::Coordinator {
            ref common,
            ref cluster,
        } => (
            common.config.as_deref(),
            Flags {
                cluster_token_file: cluster.cluster_token_file.clone(),
                ..flags(common)
            },
        ),
        Command::MonitorServer {
            ref common,
            ref cluster,
            ref advertise,
            ref polling,
        } => (
            common.config.as_deref(),
            Flags {
                advertise: advertise.clone(),
                poll_threads: polling.poll_threads,
                remote_write: polling.remote_write(),
                cluster_token_file: cluster.cluster_token_file.clone(),
                ..flags(common)
            },
        ),
        Command::Token { ref action } => {
            let db = match action {
                TokenAction::Create { db, .. }
                | TokenAction::List { db }
                | TokenAction::Revoke { db, .. } => db,
            };
            (
                db.config.as_deref(),
                Flags {
                    db: db.db.clone(),
                    ..Flags::default()
                },
            )
        }
        Command::Store {
            action: StoreAction::Stats { ref db },
        } => (
            db.config.as_deref(),
            Flags {
                db: db.db.clone(),
                ..Flags::default()
            },
        ),
        Command::Bench { .. } => (None, Flags::default()),
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
        Command::Fleet(ref args) => (
            None,
            Flags {
                listen: args.listen.clone(),
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
        Command::Fleet(args) => match fleet_options(args) {
            Ok(options) => runtime.block_on(run_fleet(options)),
            Err(error) => Err(error),
        },
        Command::Token { action } => match config::database_url(&flags, &file) {
            Ok(url) => runtime.block_on(run_token(url, action)),
            Err(error) => Err(error),
        },
        Command::Store { .. } => match config::database_url(&flags, &file) {
            Ok(url) => runtime.block_on(run_store_stats(url)),
            Err(error) => Err(error),
        },
        Command::Bench {
            scenario,
            smoke,
            postgres,
            out,
            devices,
        } => {
            let scenarios = match scenario.as_str() {
                "all" => Ok(bench::Scenario::ALL.to_vec()),
                one => one.parse::<bench::Scenario>().map(|s| vec![s]),
            };
            let scenarios = match scenarios {
                Ok(scenarios) => scenarios,
                Err(error) => return fail(&StartupError::Settings(error)),
            };
            let settings = bench::BenchSettings {
                smoke,
                out,
                postgres,
                devices,
            };
            return match runtime.block_on(bench::run(&scenarios, &settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("vigil bench: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
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
        deny_networks: common.deny_networks.clone(),
        rate_limit: common.rate_limit,
        rate_limit_burst: common.rate_limit_burst,
        // The secret itself is read from the environment only: a flag would show in `ps`.
        cluster_token: std::env::var("VIGIL_CLUSTER_TOKEN").ok(),
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

/// Help and version go out as clap writes them; a value clap cannot read is one line
/// and exit code 2, as every other bad setting; other usage errors keep clap's hints.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let rendered = error.to_string();
            let line = rendered.lines().next().unwrap_or_default();
            eprintln!("vigil: {}", line.strip_prefix("error: ").unwrap_or(line));
            ExitCode::from(EXIT_STARTUP)
        }
        _ => {
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_STARTUP))
        }
    }
}

/// Prints the error as one line (libpq's messages span several) and exits with 2.
fn fail(error: &StartupError) -> ExitCode {
    let message = error.to_string();
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("vigil: {line}");
    ExitCode::from(EXIT_STARTUP)
}

async fn run_coordinator(settings: CoordinatorSettings) -> Result<(), StartupError> {
    let db = startup::open_database(settings.node.db, settings.node.db_pool_size).await?;
    let coordinator = startup::Coordinator::build(
        db,
        settings.node.listen,
        settings.cluster,
        startup::CoordinatorOptions {
            address_policy: settings.node.address_policy,
            rate_limit: settings.node.rate_limit,
            ..startup::CoordinatorOptions::default()
        },
    )?;
    let handle = coordinator.handle();
    until_stopped(handle, coordinator.run_until_stopped()).await
}

async fn run_monitor_server(settings: MonitorServerSettings) -> Result<(), StartupError> {
    let db = startup::open_database(settings.node.db, settings.node.db_pool_size).await?;
    let node = startup::MonitorServerNode::build_with(
        db,
        settings.node.listen,
        settings.advertise.as_deref(),
        settings.cluster,
        probe::standard(settings.node.address_policy),
        startup::MonitorServerOptions {
            poll_threads: settings.poll_threads,
            remote_write: settings.remote_write,
            ..startup::MonitorServerOptions::default()
        },
    )
    .await?
    .drain_on_stop();
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

fn fleet_options(args: FleetArgs) -> Result<fleet::FleetOptions, StartupError> {
    let listen = args.listen.as_deref().unwrap_or(fleet::DEFAULT_LISTEN);
    let defaults = fleet::FleetOptions::default();
    Ok(fleet::FleetOptions {
        devices: args.devices,
        listen: config::socket_address("--listen", listen)?,
        seed: args.seed,
        workers: args.workers.unwrap_or(defaults.workers),
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        slow_ms: args.slow_ms,
        shares: args.shares.unwrap_or(defaults.shares),
        advertise: args.advertise,
        write_devices: args.write_devices,
        kind: args.kind,
    })
}

async fn run_fleet(options: fleet::FleetOptions) -> Result<(), StartupError> {
    let fleet = fleet::Fleet::build(options).map_err(|error| match error {
        fleet::FleetError::Bind { address, source } => StartupError::Bind { address, source },
        fleet::FleetError::Server(error) => StartupError::Server(error),
        other => StartupError::Settings(other.to_string()),
    })?;
    let handle = fleet.handle();
    until_stopped(handle, fleet.run_until_stopped()).await
}

/// `vigil store stats`: prints the store's figures.
async fn run_store_stats(url: db::DbUrl) -> Result<(), StartupError> {
    let db = db::Db::open(url, 1).await?;
    println!("{}", store_commands::stats(&db).await?);
    Ok(())
}

/// `vigil token …`: prints what the command made or found on stdout.
async fn run_token(url: db::DbUrl, action: TokenAction) -> Result<(), StartupError> {
    let db = db::Db::open(url, 1).await?;
    let printed = match action {
        TokenAction::Create {
            role,
            company,
            name,
            ..
        } => {
            let created = token_commands::create(&db, &role, company, name.as_deref()).await?;
            eprintln!("{}", created.note);
            created.token
        }
        TokenAction::List { .. } => token_commands::list(&db).await?,
        TokenAction::Revoke { id, .. } => token_commands::revoke(&db, id).await?,
    };
    println!("{printed}");
    Ok(())
}
