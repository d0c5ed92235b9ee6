//! The types every layer speaks: what a monitored device is, the settings a monitor
//! runs with, its health, and the outcome of one poll. They are also the wire format
//! between the coordinator and the monitor servers.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod rfc3339;

/// How a device is polled. One probe in `probe/` per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A Vigil agent: GET its `/metrics.json` and read the host's metrics.
    Agent,
    /// Any Prometheus text-exposition endpoint, such as a node_exporter.
    Prometheus,
    /// GET the address; up on a 2xx answer or on the expected status.
    Http,
    /// Open a TCP connection to `host:port`; up when it connects.
    Tcp,
}

impl DeviceKind {
    pub const ALL: &'static [DeviceKind] = &[
        DeviceKind::Agent,
        DeviceKind::Prometheus,
        DeviceKind::Http,
        DeviceKind::Tcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Agent => "agent",
            DeviceKind::Prometheus => "prometheus",
            DeviceKind::Http => "http",
            DeviceKind::Tcp => "tcp",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown device kind, named in the error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown device kind {0:?}: expected one of {kinds}", kinds = DeviceKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownKind(pub String);

impl FromStr for DeviceKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// What a monitor needs to know about its device. Spoken between nodes: fields a newer
/// peer adds are ignored (see `remote::wire`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    /// The company's name, for labels (empty when the sender did not say).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub company: String,
    pub address: String,
    pub kind: DeviceKind,
    /// For `http` devices: the status that means up (any 2xx when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<u16>,
}

/// The settings every running monitor follows; broadcast on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub alert_threshold: u8,
    pub critical_threshold: u8,
    pub max_monitors_per_server: u32,
    /// Failed polls in a row after which a device is `unreachable` (3 when a caller
    /// leaves it out).
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: u32,
}

fn default_unreachable_after() -> u32 {
    3
}

impl MonitorConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// A device's health as its monitor last judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Started, not polled yet.
    Pending,
    Normal,
    Alert,
    Critical,
    Unreachable,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Pending => "pending",
            HealthState::Normal => "normal",
            HealthState::Alert => "alert",
            HealthState::Critical => "critical",
            HealthState::Unreachable => "unreachable",
        }
    }
}

/// The readings of one poll: series name to value. A name is a Prometheus series
/// name with its labels, such as `cpu_usage_percent` or `disk_usage_percent{mount="/"}`
/// (see `crate::metrics::series`). Values are finite.
pub type Metrics = BTreeMap<String, f64>;

/// Readings whose names are one list shared by every poll of a device that reports the
/// same series (a node_exporter's hundreds of raw series): the names are built once,
/// not at every poll, and storage looks them up once per list.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedReadings {
    /// The series names, with no name twice; the same list (`Arc::ptr_eq`) for every
    /// poll that reports the same series.
    pub names: Arc<[Box<str>]>,
    /// A value per name; a non-finite value is no reading.
    pub values: Vec<f64>,
}

impl SharedReadings {
    /// The readings: each name with its value, where it is finite.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.names
            .iter()
            .zip(&self.values)
            .filter(|(_, value)| value.is_finite())
            .map(|(name, value)| (&**name, *value))
    }

    /// How many values there are (finite or not): what a buffer holding them counts.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The outcome of one poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PollResult {
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// The device answered as a healthy device of its kind answers.
    pub up: bool,
    pub latency_ms: f64,
    /// The HTTP status, for kinds that speak HTTP and got an answer.
    pub status_code: Option<u16>,
    /// Why the poll failed, in words.
    pub error: Option<String>,
    /// What the device reported (empty for kinds that only answer up or down).
    #[serde(default)]
    pub metrics: Metrics,
    /// The series of the poll besides `metrics` that go to storage only (the raw
    /// series of an exposition), their names shared with the device's other polls.
    #[serde(skip)]
    pub raw: Option<SharedReadings>,
}

impl PollResult {
    /// A failed poll, with the reason in words.
    pub fn failed(latency_ms: f64, error: impl Into<String>) -> Self {
        PollResult {
            at: Utc::now(),
            up: false,
            latency_ms,
            status_code: None,
            error: Some(error.into()),
            metrics: Metrics::new(),
            raw: None,
        }
    }
}

/// A running monitor as its monitor server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorStatus {
    pub device: DeviceSpec,
    pub epoch: i64,
    pub state: HealthState,
    pub last_result: Option<PollResult>,
    pub polls: u64,
    pub failures: u64,
    /// How many times the supervisor restarted this monitor after a failure.
    pub restarts: u32,
    pub config: MonitorConfig,
    pub started_at: DateTime<Utc>,
}

/// What a node reports about its load with each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// The process's resident memory.
    pub memory_bytes: i64,
    /// The host's CPU use, averaged over the last 5 seconds.
    pub cpu_percent: f64,
    /// The process's threads.
    pub threads: i32,
}

/// How the scheduler chooses a server (`config.balance_method`; see
/// `actors::scheduler::balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceMethod {
    RoundRobin,
    LeastMonitors,
    ServerMemory,
    ServerCpu,
    ServerThreads,
}

impl BalanceMethod {
    pub const ALL: [BalanceMethod; 5] = [
        BalanceMethod::RoundRobin,
        BalanceMethod::LeastMonitors,
        BalanceMethod::ServerMemory,
        BalanceMethod::ServerCpu,
        BalanceMethod::ServerThreads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BalanceMethod::RoundRobin => "round_robin",
            BalanceMethod::LeastMonitors => "least_monitors",
            BalanceMethod::ServerMemory => "server_memory",
            BalanceMethod::ServerCpu => "server_cpu",
            BalanceMethod::ServerThreads => "server_threads",
        }
    }

    pub fn parse(name: &str) -> Option<BalanceMethod> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The reported value this method compares, for the methods that use reports.
    pub fn reported(self, report: &LoadReport) -> Option<f64> {
        match self {
            BalanceMethod::ServerMemory => Some(report.memory_bytes as f64),
            BalanceMethod::ServerCpu => Some(report.cpu_percent),
            BalanceMethod::ServerThreads => Some(f64::from(report.threads)),
            BalanceMethod::RoundRobin | BalanceMethod::LeastMonitors => None,
        }
    }

    pub fn needs_reports(self) -> bool {
        matches!(
            self,
            BalanceMethod::ServerMemory | BalanceMethod::ServerCpu | BalanceMethod::ServerThreads
        )
    }
}

/// Upper bound of `poll_interval_ms`: one day.
pub const MAX_POLL_INTERVAL_MS: i64 = 86_400_000;
/// Upper bound of `timeout_ms`: ten minutes.
pub const MAX_TIMEOUT_MS: i64 = 600_000;
/// Upper bound of `unreachable_after`.
pub const MAX_UNREACHABLE_AFTER: i64 = 1000;
/// Upper bound of `retention_hours`: ten years.
pub const MAX_RETENTION_HOURS: i64 = 87_600;
/// Upper bound of `minute_retention_days` and `hour_retention_days`: ten years.
pub const MAX_ROLLUP_RETENTION_DAYS: i64 = 3_650;
/// Upper bound of `max_monitors_per_server`.
pub const MAX_MONITORS_PER_SERVER: i32 = 1_000_000;

/// The settings a deployment keeps (the config row but the rotating index), as checked
/// before they are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Settings {
    pub max_monitors_per_server: i32,
    pub poll_interval_ms: i64,
    pub timeout_ms: i64,
    pub alert_threshold: i32,
    pub critical_threshold: i32,
    pub balance_method: String,
    pub unreachable_after: i32,
    /// How long raw polls (and events) are kept.
    pub retention_hours: i32,
    pub heartbeat_ms: i64,
    pub validate_ms: i64,
    pub missed_checks: i32,
    /// How long the per-minute rollups are kept.
    pub minute_retention_days: i32,
    /// How long the per-hour rollups are kept.
    pub hour_retention_days: i32,
}

impl Settings {
    /// Checks the settings as a whole; the error names every problem found.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = limit_problems(
            i64::from(self.alert_threshold),
            i64::from(self.critical_threshold),
            self.poll_interval_ms,
            self.timeout_ms,
            i64::from(self.max_monitors_per_server),
            i64::from(self.unreachable_after),
        );
        problems.extend(membership_problems(
            self.heartbeat_ms,
            self.validate_ms,
            self.missed_checks,
        ));
        if !(1..=MAX_RETENTION_HOURS).contains(&i64::from(self.retention_hours)) {
            problems.push(format!(
                "retention_hours must be between 1 and {MAX_RETENTION_HOURS} (got {})",
                self.retention_hours
            ));
        }
        for (field, days) in [
            ("minute_retention_days", self.minute_retention_days),
            ("hour_retention_days", self.hour_retention_days),
        ] {
            if !(1..=MAX_ROLLUP_RETENTION_DAYS).contains(&i64::from(days)) {
                problems.push(format!(
                    "{field} must be between 1 and {MAX_ROLLUP_RETENTION_DAYS} (got {days})"
                ));
            }
        }
        if BalanceMethod::parse(&self.balance_method).is_none() {
            let names: Vec<&str> = BalanceMethod::ALL.iter().map(|m| m.as_str()).collect();
            problems.push(format!(
                "balance_method must be one of {} (got {:?})",
                names.join(", "),
                self.balance_method
            ));
        }
        joined(problems)
    }

    /// What every monitor follows. The settings were checked on the way in; clamp
    /// rather than trust blindly.
    pub fn monitor_config(&self) -> MonitorConfig {
        let clamp_pct = |v: i32| u8::try_from(v.clamp(0, 100)).unwrap_or(100);
        MonitorConfig {
            poll_interval_ms: u64::try_from(self.poll_interval_ms).unwrap_or(1).max(1),
            timeout_ms: u64::try_from(self.timeout_ms).unwrap_or(1).max(1),
            alert_threshold: clamp_pct(self.alert_threshold),
            critical_threshold: clamp_pct(self.critical_threshold),
            max_monitors_per_server: u32::try_from(self.max_monitors_per_server).unwrap_or(0),
            unreachable_after: u32::try_from(self.unreachable_after).unwrap_or(1).max(1),
        }
    }
}

/// Checks the settings a monitor server is handed (the same rules as [`Settings::check`]).
pub fn check_limits(config: &MonitorConfig) -> Result<(), String> {
    let wide = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    joined(limit_problems(
        i64::from(config.alert_threshold),
        i64::from(config.critical_threshold),
        wide(config.poll_interval_ms),
        wide(config.timeout_ms),
        i64::from(config.max_monitors_per_server),
        i64::from(config.unreachable_after),
    ))
}

fn limit_problems(
    alert: i64,
    critical: i64,
    poll_interval_ms: i64,
    timeout_ms: i64,
    max_monitors: i64,
    unreachable_after: i64,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in [("alert_threshold", alert), ("critical_threshold", critical)] {
        if !(0..=100).contains(&value) {
            problems.push(format!("{name} must be between 0 and 100 (got {value})"));
        }
    }
    if alert >= critical {
        problems.push(format!(
            "alert_threshold ({alert}) must be below critical_threshold ({critical})"
        ));
    }
    if !(1..=MAX_POLL_INTERVAL_MS).contains(&poll_interval_ms) {
        problems.push(format!(
            "poll_interval_ms must be between 1 and {MAX_POLL_INTERVAL_MS} (got {poll_interval_ms})"
        ));
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        problems.push(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS} (got {timeout_ms})"
        ));
    }
    if !(1..=i64::from(MAX_MONITORS_PER_SERVER)).contains(&max_monitors) {
        problems.push(format!(
            "max_monitors_per_server must be between 1 and {MAX_MONITORS_PER_SERVER} (got {max_monitors})"
        ));
    }
    if !(1..=MAX_UNREACHABLE_AFTER).contains(&unreachable_after) {
        problems.push(format!(
            "unreachable_after must be between 1 and {MAX_UNREACHABLE_AFTER} (got {unreachable_after})"
        ));
    }
    problems
}

/// Heartbeats between 10 ms and a minute, validations between 50 ms and ten minutes
/// and longer than a heartbeat (else a live node would look dead), 1–100 misses.
fn membership_problems(heartbeat_ms: i64, validate_ms: i64, missed_checks: i32) -> Vec<String> {
    let mut problems = Vec::new();
    if !(10..=60_000).contains(&heartbeat_ms) {
        problems.push(format!(
            "heartbeat_ms must be between 10 and 60000 (got {heartbeat_ms})"
        ));
    }
    if !(50..=600_000).contains(&validate_ms) {
        problems.push(format!(
            "validate_ms must be between 50 and 600000 (got {validate_ms})"
        ));
    }
    if validate_ms <= heartbeat_ms {
        problems.push(format!(
            "validate_ms ({validate_ms}) must be longer than heartbeat_ms ({heartbeat_ms})"
        ));
    }
    if !(1..=100).contains(&missed_checks) {
        problems.push(format!(
            "missed_checks must be between 1 and 100 (got {missed_checks})"
        ));
    }
    problems
}

fn joined(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_methods_are_named_as_in_the_config() {
        for method in BalanceMethod::ALL {
            assert_eq!(BalanceMethod::parse(method.as_str()), Some(method));
        }
        assert_eq!(BalanceMethod::parse("random"), None);
    }

    fn defaults() -> Settings {
        Settings {
            max_monitors_per_server: 1000,
            poll_interval_ms: 5000,
            timeout_ms: 3000,
            alert_threshold: 70,
            critical_threshold: 90,
            balance_method: "round_robin".into(),
            unreachable_after: 3,
            retention_hours: 168,
            heartbeat_ms: 1000,
            validate_ms: 3000,
            missed_checks: 1,
            minute_retention_days: 90,
            hour_retention_days: 730,
        }
    }

    #[test]
    fn the_default_settings_are_valid() {
        assert_eq!(defaults().check(), Ok(()));
    }

    #[test]
    fn thresholds_must_be_percentages_with_alert_below_critical() {
        let err = Settings {
            alert_threshold: 95,
            ..defaults()
        }
        .check()
        .unwrap_err();
        assert!(
            err.contains("alert_threshold (95) must be below critical_threshold (90)"),
            "{err}"
        );
        let err = Settings {
            critical_threshold: 101,
            ..defaults()
        }
        .check()
        .unwrap_err();
        assert!(
            err.contains("critical_threshold must be between 0 and 100"),
            "{err}"
        );
    }

    #[test]
    fn intervals_limits_and_methods_are_checked() {
        let err = Settings {
            poll_interval_ms: 0,
            timeout_ms: -5,
            max_monitors_per_server: 0,
            balance_method: "random".into(),
            unreachable_after: 0,
            retention_hours: 0,
            heartbeat_ms: 5,
            missed_checks: 0,
            minute_retention_days: 0,
            hour_retention_days: 3_651,
            ..defaults()
        }
        .check()
        .unwrap_err();
        for field in [
            "poll_interval_ms",
            "timeout_ms",
            "max_monitors_per_server",
            "balance_method",
            "unreachable_after",
            "retention_hours",
            "heartbeat_ms",
            "missed_checks",
            "minute_retention_days",
            "hour_retention_days",
        ] {
            assert!(err.contains(field), "{field} missing from {err}");
        }
    }

    #[test]
    fn device_kinds_parse_by_name() {
        assert_eq!("http".parse::<DeviceKind>(), Ok(DeviceKind::Http));
        let err = "snmp".parse::<DeviceKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown device kind \"snmp\": expected one of agent, prometheus, http, tcp"
        );
    }
}
