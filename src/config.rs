//! Settings of a process, from flags, then `VIGIL_*` environment variables (both read by
//! clap in `main.rs`), then an optional TOML file (`--config`), then defaults.
//! `vigil.example.toml` documents every key.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::actors::remote_writer::{RemoteAuth, RemoteWriteSettings};
use crate::auth::ClusterToken;
use crate::db::DbUrl;
use crate::error::StartupError;
use crate::http::rate::RateLimit;
use crate::probe::AddressPolicy;

pub const DEFAULT_DB: &str = "sqlite://vigil.db";
pub const DEFAULT_COORDINATOR_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MONITOR_SERVER_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_DB_POOL_SIZE: u32 = 8;
/// Monitor servers `vigil serve` runs in-process.
pub const DEFAULT_SERVE_MONITOR_SERVERS: u16 = 2;
/// `vigil agent` serves every interface: it exists to be scraped from elsewhere.
pub const DEFAULT_AGENT_LISTEN: &str = "0.0.0.0:9109";
pub const DEFAULT_AGENT_INTERVAL_MS: u64 = crate::agent::DEFAULT_INTERVAL.as_millis() as u64;
/// The most poll threads a monitor server runs: far more than cores only adds switches.
pub const MAX_POLL_THREADS: u16 = 256;
/// The longest agent interval accepted: a sample an hour old is no longer a reading.
pub const MAX_AGENT_INTERVAL_MS: u64 = 3_600_000;

/// What a TOML settings file may hold; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub db: Option<String>,
    pub listen: Option<String>,
    pub db_pool_size: Option<u32>,
    pub advertise: Option<String>,
    pub monitor_servers: Option<u16>,
    pub agent_interval_ms: Option<u64>,
    pub log: Option<String>,
    pub cluster_token_file: Option<PathBuf>,
    pub deny_networks: Option<Vec<String>>,
    pub rate_limit: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    pub poll_threads: Option<u16>,
    pub remote_write_url: Option<String>,
    pub remote_write_bearer_token_file: Option<PathBuf>,
    pub remote_write_username: Option<String>,
    pub remote_write_password_file: Option<PathBuf>,
    pub remote_write_queue: Option<usize>,
}

impl FileSettings {
    pub fn load(path: &Path) -> Result<Self, StartupError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StartupError::Settings(format!("cannot read settings file {}: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            let reason = e.message().to_string();
            StartupError::Settings(format!(
                "settings file {} is invalid: {reason}",
                path.display()
            ))
        })
    }
}

/// The flags (or environment variables) given on the command line; `None` when absent.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub db: Option<String>,
    pub listen: Option<String>,
    pub db_pool_size: Option<u32>,
    pub advertise: Option<String>,
    pub monitor_servers: Option<u16>,
    pub interval_ms: Option<u64>,
    pub cluster_token_file: Option<PathBuf>,
    /// The secret itself, from `VIGIL_CLUSTER_TOKEN` (never a flag: it would show in `ps`).
    pub cluster_token: Option<String>,
    /// Comma-separated CIDRs; an empty string denies nothing.
    pub deny_networks: Option<String>,
    pub rate_limit: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    pub poll_threads: Option<u16>,
    pub remote_write: RemoteWriteFlags,
}

/// Where samples also go by Prometheus remote write, as flags give it.
#[derive(Debug, Clone, Default)]
pub struct RemoteWriteFlags {
    pub url: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub queue: Option<usize>,
}

/// Settings every node has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    pub db: DbUrl,
    pub listen: SocketAddr,
    pub db_pool_size: u32,
    /// Networks no device address may point into.
    pub address_policy: AddressPolicy,
    /// Requests per API token (the coordinator's).
    pub rate_limit: RateLimit,
}

/// `vigil serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    pub node: NodeSettings,
    pub monitor_servers: u16,
    /// Threads each monitor server polls its devices on.
    pub poll_threads: usize,
    /// Where every sample also goes, if anywhere.
    pub remote_write: Option<RemoteWriteSettings>,
}

/// `vigil coordinator`.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    pub node: NodeSettings,
    pub cluster: ClusterToken,
}

/// `vigil monitor-server`.
#[derive(Debug, Clone)]
pub struct MonitorServerSettings {
    pub node: NodeSettings,
    pub cluster: ClusterToken,
    /// `HOST[:PORT]` coordinators use to reach this server; see [`advertised_address`].
    pub advertise: Option<String>,
    /// Threads the server polls its devices on.
    pub poll_threads: usize,
    /// Where every sample also goes, if anywhere.
    pub remote_write: Option<RemoteWriteSettings>,
}

/// `vigil agent`: no database, only where to listen and how often to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    pub listen: SocketAddr,
    pub interval: Duration,
}

impl AgentSettings {
    pub fn resolve(flags: &Flags, file: &FileSettings) -> Result<Self, StartupError> {
        let listen = flags
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| DEFAULT_AGENT_LISTEN.into());
        let interval_ms = flags
            .interval_ms
            .or(file.agent_interval_ms)
            .unwrap_or(DEFAULT_AGENT_INTERVAL_MS);
        // Shorter, and sysinfo's CPU percentages would be noise.
        let min_ms = crate::agent::MIN_INTERVAL.as_millis() as u64;
        if !(min_ms..=MAX_AGENT_INTERVAL_MS).contains(&interval_ms) {
            return Err(StartupError::Settings(format!(
                "--interval-ms must be from {min_ms} to {MAX_AGENT_INTERVAL_MS} (got {interval_ms})"
            )));
        }
        Ok(AgentSettings {
            listen: socket_address("--listen", &listen)?,
            interval: Duration::from_millis(interval_ms),
        })
    }
}

/// The database a command works on: `--db`, else the file's `db`, else the default.
pub fn database_url(flags: &Flags, file: &FileSettings) -> Result<DbUrl, StartupError> {
    flags
        .db
        .clone()
        .or_else(|| file.db.clone())
        .unwrap_or_else(|| DEFAULT_DB.into())
        .parse()
        .map_err(|e| StartupError::Settings(format!("--db: {e}")))
}

fn node(
    flags: &Flags,
    file: &FileSettings,
    default_listen: &str,
) -> Result<NodeSettings, StartupError> {
    let db = database_url(flags, file)?;
    let listen = flags
        .listen
        .clone()
        .or_else(|| file.listen.clone())
        .unwrap_or_else(|| default_listen.into());
    let db_pool_size = flags
        .db_pool_size
        .or(file.db_pool_size)
        .unwrap_or(DEFAULT_DB_POOL_SIZE);
    if db_pool_size == 0 {
        return Err(StartupError::Settings(
            "--db-pool-size must be at least 1".into(),
        ));
    }
    let denied: Option<Vec<String>> = flags
        .deny_networks
        .as_ref()
        .map(|list| list.split(',').map(String::from).collect())
        .or_else(|| file.deny_networks.clone());
    let address_policy = match denied {
        Some(networks) => AddressPolicy::new(&networks)
            .map_err(|e| StartupError::Settings(format!("--deny-networks: {e}")))?,
        None => AddressPolicy::default(),
    };
    let per_second = flags
        .rate_limit
        .or(file.rate_limit)
        .unwrap_or(RateLimit::default().per_second);
    // Two seconds' worth at once unless told otherwise.
    let burst = flags
        .rate_limit_burst
        .or(file.rate_limit_burst)
        .unwrap_or(per_second.saturating_mul(2));
    if per_second > 0 && burst == 0 {
        return Err(StartupError::Settings(
            "--rate-limit-burst must be at least 1".into(),
        ));
    }
    Ok(NodeSettings {
        db,
        listen: socket_address("--listen", &listen)?,
        db_pool_size,
        address_policy,
        rate_limit: RateLimit { per_second, burst },
    })
}

impl ServeSettings {
    pub fn resolve(flags: &Flags, file: &FileSettings) -> Result<Self, StartupError> {
        let monitor_servers = flags
            .monitor_servers
            .or(file.monitor_servers)
            .unwrap_or(DEFAULT_SERVE_MONITOR_SERVERS);
        if monitor_servers == 0 {
            return Err(StartupError::Settings(
                "--monitor-servers must be at least 1".into(),
            ));
        }
        Ok(ServeSettings {
            node: node(flags, file, DEFAULT_COORDINATOR_LISTEN)?,
            monitor_servers,
            poll_threads: poll_threads(flags, file)?,
            remote_write: remote_write(&flags.remote_write, file)?,
        })
    }
}

/// The cluster token of a coordinator or monitor server: from `--cluster-token-file`
/// (or the file's `cluster_token_file`), else `VIGIL_CLUSTER_TOKEN`. Required: a node
/// without it could neither call monitor servers nor be called.
pub fn cluster_token(flags: &Flags, file: &FileSettings) -> Result<ClusterToken, StartupError> {
    let path = flags
        .cluster_token_file
        .clone()
        .or_else(|| file.cluster_token_file.clone());
    let (secret, source) = match (path, &flags.cluster_token) {
        (Some(path), _) => (
            std::fs::read_to_string(&path).map_err(|e| {
                StartupError::Settings(format!(
                    "--cluster-token-file {}: cannot read it: {e}",
                    path.display()
                ))
            })?,
            format!("--cluster-token-file {}", path.display()),
        ),
        (None, Some(secret)) => (secret.clone(), "VIGIL_CLUSTER_TOKEN".to_string()),
        (None, None) => {
            return Err(StartupError::Settings(
                "no cluster token: give --cluster-token-file PATH or set VIGIL_CLUSTER_TOKEN, \
                 the same secret on every node (make one with: openssl rand -hex 32)"
                    .into(),
            ))
        }
    };
    ClusterToken::new(&secret).map_err(|e| StartupError::Settings(format!("{source}: {e}")))
}

/// `vigil coordinator`.
pub fn coordinator_settings(
    flags: &Flags,
    file: &FileSettings,
) -> Result<CoordinatorSettings, StartupError> {
    Ok(CoordinatorSettings {
        node: node(flags, file, DEFAULT_COORDINATOR_LISTEN)?,
        cluster: cluster_token(flags, file)?,
    })
}

impl MonitorServerSettings {
    pub fn resolve(flags: &Flags, file: &FileSettings) -> Result<Self, StartupError> {
        Ok(MonitorServerSettings {
            node: node(flags, file, DEFAULT_MONITOR_SERVER_LISTEN)?,
            cluster: cluster_token(flags, file)?,
            advertise: flags.advertise.clone().or_else(|| file.advertise.clone()),
            poll_threads: poll_threads(flags, file)?,
            remote_write: remote_write(&flags.remote_write, file)?,
        })
    }
}

/// The threads a monitor server polls on: `--poll-threads`, else the file's, else one
/// per core this process may use.
fn poll_threads(flags: &Flags, file: &FileSettings) -> Result<usize, StartupError> {
    match flags.poll_threads.or(file.poll_threads) {
        None => Ok(default_poll_threads()),
        Some(n) if (1..=MAX_POLL_THREADS).contains(&n) => Ok(usize::from(n)),
        Some(n) => Err(StartupError::Settings(format!(
            "--poll-threads must be from 1 to {MAX_POLL_THREADS} (got {n})"
        ))),
    }
}

/// One poll thread per core this process may use (1 when that cannot be told).
/// Readings waiting for remote write at most, by default: a few hundred MB at worst.
pub const DEFAULT_REMOTE_WRITE_QUEUE: usize = 1_000_000;
/// The fewest a queue may be set to: less would drop samples at the first hiccup.
const MIN_REMOTE_WRITE_QUEUE: usize = 1_000;

/// Where samples also go by remote write: `--remote-write-url` (else the file's), with
/// a bearer token read from a file, or a user name and a password read from a file;
/// none without a URL.
fn remote_write(
    flags: &RemoteWriteFlags,
    file: &FileSettings,
) -> Result<Option<RemoteWriteSettings>, StartupError> {
    let url = flags.url.clone().or_else(|| file.remote_write_url.clone());
    let bearer = flags
        .bearer_token_file
        .clone()
        .or_else(|| file.remote_write_bearer_token_file.clone());
    let username = flags
        .username
        .clone()
        .or_else(|| file.remote_write_username.clone());
    let password = flags
        .password_file
        .clone()
        .or_else(|| file.remote_write_password_file.clone());
    let queue = flags.queue.or(file.remote_write_queue);
    let Some(url) = url else {
        if bearer.is_some() || username.is_some() || password.is_some() || queue.is_some() {
            return Err(StartupError::Settings(
                "remote-write settings were given without --remote-write-url".into(),
            ));
        }
        return Ok(None);
    };
    let parsed = url::Url::parse(&url).map_err(|e| {
        StartupError::Settings(format!("--remote-write-url {url:?} is not a URL: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(StartupError::Settings(format!(
            "--remote-write-url must be an http:// or https:// URL with a host (got {url:?})"
        )));
    }
    let secret = |flag: &str, path: &Path| -> Result<String, StartupError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StartupError::Settings(format!("{flag} {}: cannot read it: {e}", path.display()))
        })?;
        let secret = text.trim().to_string();
        if secret.is_empty() {
            return Err(StartupError::Settings(format!(
                "{flag} {} is empty",
                path.display()
            )));
        }
        Ok(secret)
    };
    let auth = match (bearer, username, password) {
        (None, None, None) => RemoteAuth::None,
        (Some(path), None, None) => {
            RemoteAuth::Bearer(secret("--remote-write-bearer-token-file", &path)?)
        }
        (None, Some(username), Some(path)) => RemoteAuth::Basic {
            username,
            password: secret("--remote-write-password-file", &path)?,
        },
        (Some(_), _, _) => {
            return Err(StartupError::Settings(
                "give remote write a bearer token or a user name and password, not both".into(),
            ))
        }
        (None, _, _) => {
            return Err(StartupError::Settings(
                "--remote-write-username and --remote-write-password-file go together".into(),
            ))
        }
    };
    let queue_readings = queue.unwrap_or(DEFAULT_REMOTE_WRITE_QUEUE);
    if queue_readings < MIN_REMOTE_WRITE_QUEUE {
        return Err(StartupError::Settings(format!(
            "--remote-write-queue must be at least {MIN_REMOTE_WRITE_QUEUE} (got {queue_readings})"
        )));
    }
    Ok(Some(RemoteWriteSettings {
        url,
        auth,
        queue_readings,
    }))
}

pub fn default_poll_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `HOST:PORT` (port 0 allowed) to a socket address; a host name is resolved once, here.
pub fn socket_address(flag: &str, value: &str) -> Result<SocketAddr, StartupError> {
    let invalid = |why: String| StartupError::Settings(format!("{flag} {value:?}: {why}"));
    if !value.contains(':') {
        return Err(invalid("expected HOST:PORT, e.g. 127.0.0.1:8080".into()));
    }
    value
        .to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("resolves to no address".into()))
}

/// The `(host, port)` a monitor server registers under: `--advertise HOST[:PORT]` when
/// given (a missing or zero port means the port actually bound), else the bound address,
/// which must then be a specific one.
pub fn advertised_address(
    advertise: Option<&str>,
    bound: SocketAddr,
) -> Result<(String, u16), StartupError> {
    let Some(advertise) = advertise else {
        if bound.ip().is_unspecified() {
            return Err(StartupError::Settings(format!(
                "--listen {bound} listens on every interface; give --advertise HOST[:PORT] so coordinators know where to call"
            )));
        }
        return Ok((bound.ip().to_string(), bound.port()));
    };
    let invalid = |why: &str| StartupError::Settings(format!("--advertise {advertise:?}: {why}"));
    let (host, port) = match advertise.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some((host, port))
            if !host.is_empty()
                && !port.contains(']')
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
            (host, port)
        }
        _ => (advertise, 0),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("names no host"));
    }
    Ok((
        host.to_string(),
        if port == 0 { bound.port() } else { port },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = FileSettings {
            db: Some("sqlite://from-file.db".into()),
            listen: Some("127.0.0.1:9000".into()),
            ..Default::default()
        };
        let flags = Flags {
            listen: Some("127.0.0.1:0".into()),
            cluster_token: Some("sixteen-chars-at-least".into()),
            ..Default::default()
        };
        let settings = coordinator_settings(&flags, &file).unwrap().node;
        assert_eq!(settings.db, DbUrl::Sqlite("from-file.db".into()));
        assert_eq!(settings.listen.port(), 0);
        assert_eq!(settings.db_pool_size, DEFAULT_DB_POOL_SIZE);
        let defaults = ServeSettings::resolve(&Flags::default(), &FileSettings::default()).unwrap();
        assert_eq!(defaults.node.listen.to_string(), DEFAULT_COORDINATOR_LISTEN);
        assert_eq!(defaults.monitor_servers, DEFAULT_SERVE_MONITOR_SERVERS);
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let flags = Flags {
            db: Some("mysql://x".into()),
            ..Default::default()
        };
        let err = coordinator_settings(&flags, &FileSettings::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--db: database URL must start with sqlite:// or postgres:// (got \"mysql\")"
        );
        assert!(socket_address("--listen", "8080").is_err());
        assert!(socket_address("--listen", "127.0.0.1:99999").is_err());
    }

    #[test]
    fn poll_threads_default_to_one_per_core_and_are_bounded() {
        let defaults = ServeSettings::resolve(&Flags::default(), &FileSettings::default()).unwrap();
        assert_eq!(defaults.poll_threads, default_poll_threads());
        let file = FileSettings {
            poll_threads: Some(3),
            ..Default::default()
        };
        assert_eq!(
            ServeSettings::resolve(&Flags::default(), &file)
                .unwrap()
                .poll_threads,
            3
        );
        let flags = Flags {
            poll_threads: Some(5),
            ..Default::default()
        };
        assert_eq!(
            ServeSettings::resolve(&flags, &file).unwrap().poll_threads,
            5
        );
        for bad in [0, MAX_POLL_THREADS + 1] {
            let flags = Flags {
                poll_threads: Some(bad),
                ..Default::default()
            };
            let err = ServeSettings::resolve(&flags, &file).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("--poll-threads must be from 1 to {MAX_POLL_THREADS} (got {bad})")
            );
        }
    }

    #[test]
    fn remote_write_takes_a_url_and_one_way_to_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let resolve = |remote_write: RemoteWriteFlags| {
            let flags = Flags {
                remote_write,
                ..Default::default()
            };
            MonitorServerSettings::resolve(
                &Flags {
                    cluster_token: Some("a-cluster-token-of-length".into()),
                    ..flags
                },
                &FileSettings::default(),
            )
            .map(|s| s.remote_write)
        };
        let url = || Some("http://tsdb.internal:9090/api/v1/write".to_string());
        assert_eq!(resolve(RemoteWriteFlags::default()).unwrap(), None);
        let bearer = resolve(RemoteWriteFlags {
            url: url(),
            bearer_token_file: Some(token.clone()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(bearer.auth, RemoteAuth::Bearer("s3cret".into()));
        assert_eq!(bearer.queue_readings, DEFAULT_REMOTE_WRITE_QUEUE);
        assert_eq!(format!("{:?}", bearer.auth), "Bearer(…)");
        let basic = resolve(RemoteWriteFlags {
            url: url(),
            username: Some("vigil".into()),
            password_file: Some(token.clone()),
            queue: Some(5_000),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (basic.auth, basic.queue_readings),
            (
                RemoteAuth::Basic {
                    username: "vigil".into(),
                    password: "s3cret".into()
                },
                5_000
            )
        );
        for (bad, says) in [
            (
                RemoteWriteFlags {
                    bearer_token_file: Some(token.clone()),
                    ..Default::default()
                },
                "without --remote-write-url",
            ),
            (
                RemoteWriteFlags {
                    url: Some("ftp://x/".into()),
                    ..Default::default()
                },
                "must be an http:// or https:// URL",
            ),
            (
                RemoteWriteFlags {
                    url: Some("not a url".into()),
                    ..Default::default()
                },
                "is not a URL",
            ),
            (
                RemoteWriteFlags {
                    url: url(),
                    bearer_token_file: Some(token.clone()),
                    username: Some("vigil".into()),
                    password_file: Some(token.clone()),
                    ..Default::default()
                },
                "not both",
            ),
            (
                RemoteWriteFlags {
                    url: url(),
                    username: Some("vigil".into()),
                    ..Default::default()
                },
                "go together",
            ),
            (
                RemoteWriteFlags {
                    url: url(),
                    bearer_token_file: Some(empty.clone()),
                    ..Default::default()
                },
                "is empty",
            ),
            (
                RemoteWriteFlags {
                    url: url(),
                    bearer_token_file: Some(dir.path().join("absent")),
                    ..Default::default()
                },
                "cannot read it",
            ),
            (
                RemoteWriteFlags {
                    url: url(),
                    queue: Some(10),
                    ..Default::default()
                },
                "--remote-write-queue must be at least",
            ),
        ] {
            let error = resolve(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn the_address_policy_defaults_to_link_local_and_takes_cidrs() {
        let defaults = ServeSettings::resolve(&Flags::default(), &FileSettings::default()).unwrap();
        assert_eq!(defaults.node.address_policy, AddressPolicy::default());
        let file = FileSettings {
            deny_networks: Some(vec!["10.0.0.0/8".into()]),
            ..Default::default()
        };
        let from_file = ServeSettings::resolve(&Flags::default(), &file).unwrap();
        assert_eq!(from_file.node.address_policy.denied().len(), 1);
        let flags = Flags {
            deny_networks: Some("169.254.0.0/16, 192.168.0.0/16".into()),
            ..Default::default()
        };
        let from_flag = ServeSettings::resolve(&flags, &file).unwrap();
        assert_eq!(from_flag.node.address_policy.denied().len(), 2);
        let none = Flags {
            deny_networks: Some(String::new()),
            ..Default::default()
        };
        let open = ServeSettings::resolve(&none, &file).unwrap();
        assert!(open.node.address_policy.denied().is_empty());
        let bad = Flags {
            deny_networks: Some("10.0.0.0/40".into()),
            ..Default::default()
        };
        let err = ServeSettings::resolve(&bad, &file).unwrap_err().to_string();
        assert!(err.starts_with("--deny-networks: \"10.0.0.0/40\""), "{err}");
    }

    #[test]
    fn the_rate_limit_defaults_to_100_a_second_and_bursts_of_twice_that() {
        let defaults = ServeSettings::resolve(&Flags::default(), &FileSettings::default()).unwrap();
        assert_eq!(defaults.node.rate_limit, RateLimit::default());
        let file = FileSettings {
            rate_limit: Some(10),
            ..Default::default()
        };
        let from_file = ServeSettings::resolve(&Flags::default(), &file).unwrap();
        assert_eq!(
            from_file.node.rate_limit,
            RateLimit {
                per_second: 10,
                burst: 20
            }
        );
        let off = Flags {
            rate_limit: Some(0),
            ..Default::default()
        };
        let off = ServeSettings::resolve(&off, &file).unwrap();
        assert_eq!(off.node.rate_limit.per_second, 0);
        let no_burst = Flags {
            rate_limit_burst: Some(0),
            ..Default::default()
        };
        assert!(ServeSettings::resolve(&no_burst, &file).is_err());
    }

    #[test]
    fn nodes_need_a_cluster_token_from_a_file_or_the_environment() {
        let none = coordinator_settings(&Flags::default(), &FileSettings::default()).unwrap_err();
        assert!(none.to_string().starts_with("no cluster token"), "{none}");
        let short = Flags {
            cluster_token: Some("short".into()),
            ..Default::default()
        };
        let err = MonitorServerSettings::resolve(&short, &FileSettings::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VIGIL_CLUSTER_TOKEN: the cluster token must be at least 16 characters"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.token");
        std::fs::write(&path, "from-the-file-0123456789\n").unwrap();
        let from_file = Flags {
            cluster_token_file: Some(path.clone()),
            cluster_token: Some("from-the-environment-0123".into()),
            ..Default::default()
        };
        let settings = coordinator_settings(&from_file, &FileSettings::default()).unwrap();
        assert!(settings.cluster.matches("from-the-file-0123456789"));
        let missing = Flags {
            cluster_token_file: Some(dir.path().join("absent")),
            ..Default::default()
        };
        let err = coordinator_settings(&missing, &FileSettings::default()).unwrap_err();
        assert!(err.to_string().contains("cannot read it"), "{err}");
    }

    #[test]
    fn the_advertised_address_defaults_to_the_bound_one() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            advertised_address(None, bound).unwrap(),
            ("127.0.0.1".into(), 4000)
        );
        assert_eq!(
            advertised_address(Some("ms1.lan"), bound).unwrap(),
            ("ms1.lan".into(), 4000)
        );
        assert_eq!(
            advertised_address(Some("ms1.lan:9000"), bound).unwrap(),
            ("ms1.lan".into(), 9000)
        );
        assert_eq!(
            advertised_address(Some("[::1]:9000"), bound).unwrap(),
            ("::1".into(), 9000)
        );
        assert_eq!(
            advertised_address(Some("::1"), bound).unwrap(),
            ("::1".into(), 4000)
        );
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert!(advertised_address(None, any).is_err());
        assert!(advertised_address(Some("ms1:port"), bound).is_err());
    }

    #[test]
    fn the_example_settings_file_is_valid() {
        let example: FileSettings = toml::from_str(include_str!("../vigil.example.toml")).unwrap();
        assert_eq!(example.db.as_deref(), Some(DEFAULT_DB));
        assert_eq!(example.listen.as_deref(), Some(DEFAULT_COORDINATOR_LISTEN));
        assert_eq!(example.monitor_servers, Some(DEFAULT_SERVE_MONITOR_SERVERS));
        assert_eq!(example.db_pool_size, Some(DEFAULT_DB_POOL_SIZE));
        assert_eq!(example.agent_interval_ms, Some(DEFAULT_AGENT_INTERVAL_MS));
    }

    #[test]
    fn the_agent_listens_on_every_interface_and_samples_each_second_by_default() {
        let defaults = AgentSettings::resolve(&Flags::default(), &FileSettings::default()).unwrap();
        assert_eq!(defaults.listen.to_string(), DEFAULT_AGENT_LISTEN);
        assert_eq!(defaults.interval, Duration::from_secs(1));
        let file = FileSettings {
            listen: Some("127.0.0.1:9000".into()),
            agent_interval_ms: Some(5000),
            ..Default::default()
        };
        let from_file = AgentSettings::resolve(&Flags::default(), &file).unwrap();
        assert_eq!(from_file.listen.port(), 9000);
        assert_eq!(from_file.interval, Duration::from_secs(5));
        let flags = Flags {
            interval_ms: Some(250),
            ..Default::default()
        };
        assert_eq!(
            AgentSettings::resolve(&flags, &file).unwrap().interval,
            Duration::from_millis(250)
        );
        for bad in [0, 10, MAX_AGENT_INTERVAL_MS + 1] {
            let flags = Flags {
                interval_ms: Some(bad),
                ..Default::default()
            };
            let err = AgentSettings::resolve(&flags, &file)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("--interval-ms must be from 200 to"),
                "{err}"
            );
        }
    }

    #[test]
    fn settings_files_refuse_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("vigil-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigil.toml");
        std::fs::write(&path, "db = \"sqlite://x.db\"\nlisten_port = 3\n").unwrap();
        let err = FileSettings::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `listen_port`"), "{err}");
        std::fs::write(&path, "db = \"sqlite://x.db\"\nmonitor_servers = 3\n").unwrap();
        assert_eq!(FileSettings::load(&path).unwrap().monitor_servers, Some(3));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
