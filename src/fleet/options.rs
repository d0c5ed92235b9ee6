//! What `vigil fleet` is told ([`FleetOptions`]), the checks its values must pass, and
//! what stops a fleet from starting ([`FleetError`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::profile::Shares;
use crate::domain::DeviceKind;

/// Where a fleet listens when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9200";
/// The most devices one fleet serves: indices and names stay short, and a device list
/// stays a document a client can read whole.
pub const MAX_DEVICES: usize = 1_000_000;
/// How long a device answers a slow request after, by default, milliseconds.
pub const DEFAULT_SLOW_MS: u64 = 2000;
/// Upper bound of `--latency-ms` and `--slow-ms`: ten minutes.
pub const MAX_DELAY_MS: u64 = 600_000;
/// Upper bound of `--workers`.
pub const MAX_WORKERS: usize = 1024;

/// `vigil fleet --help`'s account of the profiles, kept beside the shares it states.
pub const PROFILES_HELP: &str = "\
Profiles (a pure function of --seed, the device's index and the time):
  every device's CPU and memory wander around a base of its own (CPU 20-45%, memory
  25-50%, never above 63%), disks fill slowly and are cleaned up (at most 60%),
  network and disk counters grow at rates of its own, half have temperature sensors.
  Once a cycle (20 to 60 minutes, its own) a device has an episode lasting a fifth of
  the cycle, in which
    10% of devices cross the alert threshold (CPU ~80%, memory ~78%),
     3% cross the critical threshold (CPU ~95%, memory ~94%),
     2% answer 503 (unreachable),
     2% answer after --slow-ms;
  the rest are always normal. --shares changes these four shares.

Routes: /d/{i}/metrics.json (agent JSON), /d/{i}/metrics (node_exporter text),
/d/{i}/agent-metrics (the agent's Prometheus text), GET and PUT /d/{i}/state
({\"state\": \"normal|alert|critical|unreachable|slow|auto\"}),
/devices.json?kind=agent|prometheus[&company_id=C], /healthz.";

/// What a fleet is asked to do. [`FleetOptions::default`] holds the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetOptions {
    /// How many devices, indices `0..devices`.
    pub devices: usize,
    pub listen: SocketAddr,
    pub seed: u64,
    /// HTTP worker threads.
    pub workers: usize,
    /// Added to every answer of a device's metrics routes, milliseconds.
    pub latency_ms: u64,
    /// Share of the metrics routes' requests answered 500, 0–1.
    pub error_rate: f64,
    /// How long a slow device takes to answer, milliseconds.
    pub slow_ms: u64,
    pub shares: Shares,
    /// The host in the device list's addresses (default: the bound address).
    pub advertise: Option<String>,
    /// Where to write the device list at start.
    pub write_devices: Option<PathBuf>,
    /// The kind of the devices in the written list.
    pub kind: DeviceKind,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            devices: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 9200)),
            seed: super::profile::DEFAULT_SEED,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            latency_ms: 0,
            error_rate: 0.0,
            slow_ms: DEFAULT_SLOW_MS,
            shares: Shares::default(),
            advertise: None,
            write_devices: None,
            kind: DeviceKind::Agent,
        }
    }
}

impl FleetOptions {
    /// Checks every value; the error names the option and what it takes.
    pub fn validate(&self) -> Result<(), FleetError> {
        let invalid = |message: String| Err(FleetError::Invalid(message));
        if !(1..=MAX_DEVICES).contains(&self.devices) {
            return invalid(format!(
                "--devices must be from 1 to {MAX_DEVICES} (got {})",
                self.devices
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return invalid(format!(
                "--workers must be from 1 to {MAX_WORKERS} (got {})",
                self.workers
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return invalid(format!(
                "--error-rate must be a fraction from 0 to 1 (got {})",
                self.error_rate
            ));
        }
        if self.latency_ms > MAX_DELAY_MS {
            return invalid(format!(
                "--latency-ms must be at most {MAX_DELAY_MS} (got {})",
                self.latency_ms
            ));
        }
        if !(1..=MAX_DELAY_MS).contains(&self.slow_ms) {
            return invalid(format!(
                "--slow-ms must be from 1 to {MAX_DELAY_MS} (got {})",
                self.slow_ms
            ));
        }
        if let Some(host) = &self.advertise {
            let bad = host.is_empty()
                || host.contains(['/', '?', '#', '@'])
                || host.chars().any(char::is_whitespace);
            if bad {
                return invalid(format!(
                    "--advertise takes a host name or IP address, without scheme or path (got {host:?})"
                ));
            }
        }
        if !matches!(self.kind, DeviceKind::Agent | DeviceKind::Prometheus) {
            return invalid(format!(
                "--kind must be agent or prometheus (got {})",
                self.kind
            ));
        }
        Ok(())
    }
}

/// `--kind`'s value: `agent` or `prometheus`, the kinds a fleet's devices are polled as.
pub fn document_kind(text: &str) -> Result<DeviceKind, String> {
    match text.parse::<DeviceKind>() {
        Ok(kind @ (DeviceKind::Agent | DeviceKind::Prometheus)) => Ok(kind),
        _ => Err(format!("expected agent or prometheus (got {text:?})")),
    }
}

/// Why a fleet did not start. The binary prints it as one line and exits with 2.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
    #[error("cannot write the device list to {}: {source}", path.display())]
    WriteDevices {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the built-in node_exporter reference cannot be read: {0}")]
    Reference(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::profile::{
        ALERT_SHARE, CRITICAL_SHARE, CYCLE_MAX_SECONDS, CYCLE_MIN_SECONDS, EPISODE_SHARE,
        SLOW_SHARE, UNREACHABLE_SHARE,
    };

    #[test]
    fn bad_values_are_refused_with_the_option_named() {
        let ok = FleetOptions::default();
        assert!(ok.validate().is_ok());
        for (bad, says) in [
            (
                FleetOptions {
                    devices: 0,
                    ..ok.clone()
                },
                "--devices must be from 1",
            ),
            (
                FleetOptions {
                    devices: MAX_DEVICES + 1,
                    ..ok.clone()
                },
                "--devices",
            ),
            (
                FleetOptions {
                    error_rate: 1.5,
                    ..ok.clone()
                },
                "--error-rate must be a fraction from 0 to 1 (got 1.5)",
            ),
            (
                FleetOptions {
                    error_rate: f64::NAN,
                    ..ok.clone()
                },
                "--error-rate",
            ),
            (
                FleetOptions {
                    workers: 0,
                    ..ok.clone()
                },
                "--workers",
            ),
            (
                FleetOptions {
                    slow_ms: 0,
                    ..ok.clone()
                },
                "--slow-ms",
            ),
            (
                FleetOptions {
                    latency_ms: MAX_DELAY_MS + 1,
                    ..ok.clone()
                },
                "--latency-ms",
            ),
            (
                FleetOptions {
                    advertise: Some("http://x/".into()),
                    ..ok.clone()
                },
                "--advertise",
            ),
            (
                FleetOptions {
                    kind: DeviceKind::Tcp,
                    ..ok.clone()
                },
                "--kind",
            ),
        ] {
            let error = bad.validate().unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
        assert_eq!(document_kind("prometheus"), Ok(DeviceKind::Prometheus));
        assert!(document_kind("http").is_err());
    }

    #[test]
    fn the_help_states_the_shares_and_cycle_the_code_uses() {
        for (share, line) in [
            (ALERT_SHARE, "10% of devices cross the alert"),
            (CRITICAL_SHARE, " 3% cross the critical"),
            (UNREACHABLE_SHARE, " 2% answer 503"),
            (SLOW_SHARE, " 2% answer after"),
        ] {
            let stated = format!("{}%", (share * 100.0).round());
            assert!(line.trim_start().starts_with(&stated), "{line} vs {share}");
            assert!(PROFILES_HELP.contains(line), "{line}");
        }
        assert_eq!(EPISODE_SHARE, 0.2, "the help says a fifth of the cycle");
        assert_eq!(
            (CYCLE_MIN_SECONDS / 60.0, CYCLE_MAX_SECONDS / 60.0),
            (20.0, 60.0)
        );
    }
}
