//! Bodies of the monitor-server API, spoken by `http::monitor_server` (the server side)
//! and `remote::MonitorServerClient` (the coordinator side).

use serde::{Deserialize, Serialize};

use crate::domain::{DeviceSpec, MonitorConfig};

/// `POST /monitors`: start monitoring a device here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartMonitorRequest {
    pub device: DeviceSpec,
    pub config: MonitorConfig,
    /// The ownership epoch the coordinator will record for this start.
    pub epoch: i64,
}

/// `POST /monitors/batch`: start monitoring several devices here, in one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBatchRequest {
    pub config: MonitorConfig,
    pub monitors: Vec<BatchEntry>,
}

/// One device of a batch start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// The answer to `POST /monitors/batch`, one result per entry, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchAnswer {
    pub server_id: i64,
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchResult {
    pub device_id: i64,
    pub outcome: BatchOutcome,
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    pub server_id: i64,
    pub running_monitors: usize,
    pub max_monitors: u32,
    pub device_ids: Vec<i64>,
}

/// `PUT /config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigApplied {
    pub monitors_updated: usize,
}

/// `DELETE /monitors/{id}`, `PUT /monitors/{id}`, `POST /monitors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorAck {
    pub device_id: i64,
    pub server_id: i64,
}
