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
