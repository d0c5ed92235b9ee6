//! `vigil serve`: everything on one machine in one process. A coordinator on `--listen`,
//! N monitor servers on 127.0.0.1 at the ports after it (8081, 8082 for the default
//! 8080, so a restart finds them under the same rows), an agent on the port after those
//! (8083), and this host registered as an `agent` device of company "local" and
//! monitored.
//!
//! The nodes share a cluster token made at each start (they are one process); it is
//! written beside the database (`vigil.db.cluster-token` for `sqlite://vigil.db`) for
//! a Prometheus that scrapes the monitor servers. The API needs a token too: the first
//! start makes an admin token and keeps it beside the database (`vigil.db.admin-token`);
//! later starts reuse it while it is valid. The address printed at start carries it.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::select_all;

use super::coordinator::{Coordinator, CoordinatorOptions};
use super::monitor_server::{MonitorServerNode, MonitorServerOptions};
use super::process::shutdown_signal;
use crate::actors::scheduler::{StartDevices, StartReason};
use crate::agent::Agent;
use crate::auth::{self, ClusterToken, Grant, Role, TokenRequest};
use crate::config::ServeSettings;
use crate::db::models::{DeviceChanges, NewDevice};
use crate::db::{self, Db, DbError, DbUrl};
use crate::domain::DeviceKind;
use crate::error::StartupError;
use crate::probe;

/// How often the in-process agent samples this host.
const AGENT_INTERVAL: Duration = Duration::from_secs(1);
/// How long each server may take to finish (and write its metrics) after a stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the agent's first sample before monitoring this host.
const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(3);

/// The company `vigil serve` registers this host under.
pub const LOCAL_COMPANY: &str = "local";

pub async fn serve(settings: ServeSettings) -> Result<(), StartupError> {
    let listen = settings.node.listen;
    let db = super::open_database(settings.node.db.clone(), settings.node.db_pool_size).await?;
    tracing::info!(db = %db.url(), "database ready");
    let token_file = beside_database(db.url(), "admin-token");
    let admin_token = admin_token(&db, &token_file).await?;
    let cluster = ClusterToken::generate().map_err(|e| StartupError::Settings(e.to_string()))?;
    write_secret(
        &beside_database(db.url(), "cluster-token"),
        cluster.secret(),
    )
    .await?;
    let policy = settings.node.address_policy.clone();
    let options = CoordinatorOptions {
        address_policy: policy.clone(),
        rate_limit: settings.node.rate_limit,
        ..CoordinatorOptions::default()
    };
    let coordinator = Coordinator::build(db.clone(), listen, cluster.clone(), options)?;
    // The ports after --listen: one per monitor server, then the agent's.
    let after = |index: u16| -> Result<SocketAddr, StartupError> {
        let port = match listen.port() {
            0 => 0,
            base => base.checked_add(index).ok_or_else(|| {
                StartupError::Settings(format!(
                    "--listen port {base} leaves no room for {} monitor server ports and the agent's after it",
                    settings.monitor_servers
                ))
            })?,
        };
        Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    };
    let mut nodes = Vec::new();
    for index in 1..=settings.monitor_servers {
        nodes.push(
            MonitorServerNode::build_with(
                db.clone(),
                after(index)?,
                None,
                cluster.clone(),
                probe::standard(policy.clone()),
                MonitorServerOptions {
                    poll_threads: settings.poll_threads,
                    remote_write: settings.remote_write.clone(),
                    ..MonitorServerOptions::default()
                },
            )
            .await?,
        );
    }
    let agent = Agent::build(after(settings.monitor_servers + 1)?, AGENT_INTERVAL)?;
    let agent_address = agent.address();
    let first_sample = agent.latest();

    let scheduler = coordinator.scheduler();
    let public = reachable(coordinator.address());
    let mut handles = vec![coordinator.handle(), agent.handle()];
    handles.extend(nodes.iter().map(MonitorServerNode::handle));
    let mut servers = vec![
        actix_rt::spawn(coordinator.run_until_stopped()),
        actix_rt::spawn(agent.run_until_stopped()),
    ];
    servers.extend(
        nodes
            .into_iter()
            .map(|node| actix_rt::spawn(node.run_until_stopped())),
    );

    // The first poll of this host should find a sample, not the agent's 503.
    let waited = tokio::time::timeout(FIRST_SAMPLE_WAIT, async {
        while first_sample.get().is_err() {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!("the agent has no sample yet; monitoring this host anyway");
    }
    match ensure_local_device(&db, agent_address).await {
        Ok(None) => tracing::info!("this host's device is disabled; not monitoring it"),
        Ok(Some(device_id)) => match scheduler
            .send(StartDevices {
                device_ids: vec![device_id],
                reason: StartReason::Asked,
            })
            .await
        {
            Ok(Ok(report)) => {
                tracing::info!(device.id = device_id, message = %report.message, "monitoring this host")
            }
            Ok(Err(error)) => {
                tracing::error!(device.id = device_id, %error, "could not start monitoring this host")
            }
            Err(error) => tracing::error!(device.id = device_id, %error, "scheduler unavailable"),
        },
        Err(error) => tracing::error!(%error, "could not register this host as a device"),
    }
    tracing::info!(
        "Vigil is serving http://{public}/?token={admin_token} (API: curl -H 'Authorization: Bearer {admin_token}' http://{public}/api/v1/devices; the admin token is kept in {})",
        token_file.display()
    );

    let ended = tokio::select! {
        () = shutdown_signal() => None,
        (ended, index, _) = select_all(servers.iter_mut()) => {
            tracing::error!(server = index, outcome = ?ended, "an HTTP server stopped on its own; shutting down");
            Some(index)
        }
    };
    for handle in handles {
        handle.stop(true).await;
    }
    // Each monitor server's run ends by writing what its metrics writer still holds.
    for (index, server) in servers.into_iter().enumerate() {
        if Some(index) == ended {
            continue;
        }
        if tokio::time::timeout(SHUTDOWN_WAIT, server).await.is_err() {
            tracing::warn!(
                server = index,
                "a server did not finish shutting down in time"
            );
        }
    }
    Ok(())
}

/// The address to reach a server that listens on `bound` from this machine.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port()),
        _ => bound,
    }
}

/// Registers company "local" and this host (by host name) as an `agent` device read from
/// the in-process agent, or points the existing record at the agent's current address
/// (an install from before the agent existed watched the coordinator's `/healthz` as an
/// `http` device). Returns the device, or `None` when someone disabled it: that choice
/// stands.
pub async fn ensure_local_device(db: &Db, agent: SocketAddr) -> Result<Option<i64>, DbError> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.trim().is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    let address = format!("http://{agent}/metrics.json");
    db.run(move |conn| {
        let company = match db::companies::find_by_name(conn, LOCAL_COMPANY)? {
            Some(company) => company,
            None => db::companies::create(conn, LOCAL_COMPANY)?,
        };
        let kind = DeviceKind::Agent.as_str();
        let device = match db::devices::find_by_name(conn, company.id, &host)? {
            Some(device) if device.address == address && device.kind == kind => device,
            Some(device) => {
                let changes = DeviceChanges {
                    address: Some(address.clone()),
                    kind: Some(kind.to_string()),
                    expected_status: Some(None),
                    ..Default::default()
                };
                db::devices::update(conn, device.id, &changes)?.unwrap_or(device)
            }
            None => {
                let new = NewDevice {
                    company_id: company.id,
                    name: &host,
                    address: &address,
                    kind,
                    enabled: true,
                    expected_status: None,
                };
                db::devices::create(conn, &new)?
            }
        };
        Ok(device.enabled.then_some(device.id))
    })
    .await
}

/// Where `vigil serve` keeps a secret named `what`: beside a SQLite file
/// (`vigil.db.{what}`), or in the working directory for PostgreSQL (`vigil.{what}`).
pub fn beside_database(url: &DbUrl, what: &str) -> PathBuf {
    match url {
        DbUrl::Sqlite(path) => {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{what}"));
            PathBuf::from(name)
        }
        DbUrl::Postgres(_) => PathBuf::from(format!("vigil.{what}")),
    }
}

/// Writes `secret` to `path`, readable by this user only, off the event loop.
async fn write_secret(path: &Path, secret: &str) -> Result<(), StartupError> {
    let (path, secret) = (path.to_path_buf(), secret.to_string());
    blocking(move || {
        let failed = |e: std::io::Error| {
            StartupError::Settings(format!("cannot write {}: {e}", path.display()))
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(failed)?;
        writeln!(file, "{secret}").map_err(failed)
    })
    .await
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StartupError> + Send + 'static,
) -> Result<T, StartupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StartupError::Settings(format!("a file task failed: {e}")))?
}

/// The admin token in `path` when it is still a valid admin token; else a new one,
/// written there (readable by this user only).
pub async fn admin_token(db: &Db, path: &Path) -> Result<String, StartupError> {
    let file = path.to_path_buf();
    let kept = blocking(move || match std::fs::read_to_string(&file) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StartupError::Settings(format!(
            "admin token file {}: {e}",
            file.display()
        ))),
    })
    .await?;
    if let Some(kept) = kept {
        let hash = auth::hash(&kept);
        let stored = if auth::looks_like_token(&kept) {
            db.run(move |conn| db::tokens::find_by_hash(conn, &hash))
                .await?
        } else {
            None
        };
        if stored.is_some_and(|t| t.role == Role::Admin.as_str()) {
            tracing::info!(file = %path.display(), "using the admin token kept from an earlier start");
            return Ok(kept);
        }
        tracing::warn!(file = %path.display(), "the kept admin token is no longer valid; making a new one");
    }
    let request = TokenRequest {
        grant: Grant::admin(),
        name: "serve".into(),
    };
    let (stored, token) = auth::issue(db, request)
        .await?
        .ok_or_else(|| StartupError::Settings("the admin token was not stored".into()))?;
    write_secret(path, &token).await?;
    tracing::info!(token.id = stored.id, file = %path.display(), "admin token created");
    Ok(token)
}
