//! Bodies of the monitor-server API, spoken by `http::monitor_server` (the server side)
//! and `remote::MonitorServerClient` (the coordinator side).
//!
//! Unlike the public API, these bodies ignore fields they do not know, and an outcome
//! a newer peer names that this version does not know reads as `unknown`: a rolling
//! upgrade runs coordinators and monitor servers of two versions side by side. A field
//! added here is optional (`#[serde(default)]`), or asked for, as `GET /info?epochs=true`
//! asks for the epochs, so an older peer keeps reading what it gets.

use serde::{Deserialize, Serialize};

use crate::domain::{DeviceSpec, MonitorConfig};

/// `POST /monitors`: start monitoring a device here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartMonitorRequest {
    pub device: DeviceSpec,
    pub config: MonitorConfig,
    /// The ownership epoch the coordinator will record for this start.
    pub epoch: i64,
}

/// `POST /monitors/batch`: start monitoring several devices here, in one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartBatchRequest {
    pub config: MonitorConfig,
    pub monitors: Vec<BatchEntry>,
}

/// One device of a batch start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    pub device: DeviceSpec,
    /// The ownership epoch the coordinator recorded for this start.
    pub epoch: i64,
    /// The first poll waits this long (re-homed monitors are spread over one poll
    /// interval rather than all polling at once).
    #[serde(default)]
    pub first_poll_after_ms: u64,
}

/// What became of one device of a batch start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchOutcome {
    Started,
    AlreadyRunning,
    AtLimit,
    /// An outcome a newer server named that this version does not know.
    #[serde(other)]
    Unknown,
}

/// The answer to `POST /monitors/batch`, one result per entry, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub server_id: i64,
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    pub device_id: i64,
    pub outcome: BatchOutcome,
}

/// `POST /monitors/stop`: stop several monitors here, each only if it runs under the
/// epoch given or an older one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopBatchRequest {
    pub monitors: Vec<StopEntry>,
}

/// One monitor to stop: the device, and the newest epoch the stop means (the epoch
/// its scheduler read). A copy started since under a newer epoch is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopEntry {
    pub device_id: i64,
    pub epoch: i64,
}

/// What a server did with one stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// The copy ran under the epoch given or an older one; it is stopped.
    Stopped,
    /// The copy runs under a newer epoch than the stop names; it is kept.
    KeptNewer,
    /// No copy runs here.
    NotRunning,
    /// An outcome a newer server named that this version does not know.
    #[serde(other)]
    Unknown,
}

/// What a server did with one stop, and the epoch of the copy it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResult {
    pub device_id: i64,
    pub outcome: StopOutcome,
    /// The epoch the copy ran under (absent when none ran).
    #[serde(default)]
    pub epoch: Option<i64>,
}

/// The answer to `POST /monitors/stop`, one result per entry, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopBatchAnswer {
    pub server_id: i64,
    pub results: Vec<StopResult>,
}

/// A monitor as `GET /info?epochs=true` lists it: its device and the epoch it runs
/// under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningMonitor {
    pub device_id: i64,
    pub epoch: i64,
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub server_id: i64,
    pub running_monitors: usize,
    pub max_monitors: u32,
    pub device_ids: Vec<i64>,
    /// Every monitor with its epoch, in device order; only when asked
    /// (`?epochs=true`), and absent from a server too old to tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitors: Option<Vec<RunningMonitor>>,
}

/// `PUT /config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub monitors_updated: usize,
}

/// `PUT /monitors/{id}`, `POST /monitors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorAck {
    pub device_id: i64,
    pub server_id: i64,
}

/// `DELETE /monitors/{id}[?epoch=N]`: what the server did. Without an epoch (what an
/// older coordinator sends) the copy is stopped whatever its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopAck {
    pub device_id: i64,
    pub server_id: i64,
    /// `stopped` or `kept_newer` (a server too old to say stopped it).
    #[serde(default = "stopped")]
    pub outcome: StopOutcome,
    #[serde(default)]
    pub epoch: Option<i64>,
}

fn stopped() -> StopOutcome {
    StopOutcome::Stopped
}
