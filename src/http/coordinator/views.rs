//! What the coordinator's API answers with: companies, devices with their live
//! monitoring, monitor servers with their live status. Built from db rows and from what
//! the monitor servers report; never the db rows themselves.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::db::models::{Company, ConfigRow, Device, MonitorServer};
use crate::domain::{rfc3339, HealthState, PollResult, Settings};

/// Stored times are UTC without zone; on the wire they are RFC 3339 with `Z`.
pub fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// What a deletion answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompanyView {
    pub id: i64,
    pub name: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<Company> for CompanyView {
    fn from(c: Company) -> Self {
        CompanyView {
            id: c.id,
            name: c.name,
            created_at: utc(c.created_at),
        }
    }
}

/// A device monitored right now: where, under which epoch, and how it is doing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Monitoring {
    pub server_id: i64,
    pub epoch: i64,
    pub state: HealthState,
    pub last_result: Option<PollResult>,
    pub polls: u64,
    pub failures: u64,
    pub restarts: u32,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    pub address: String,
    pub kind: String,
    /// For `http` devices: the status that counts as up (any 2xx when `null`).
    pub expected_status: Option<i32>,
    pub enabled: bool,
    /// A start asked for it and no stop since: if its server dies, it moves.
    pub monitoring_wanted: bool,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    /// `null` when no monitor server runs a monitor for it.
    pub monitoring: Option<Monitoring>,
}

impl DeviceView {
    pub fn new(d: Device, monitoring: Option<Monitoring>) -> Self {
        DeviceView {
            id: d.id,
            company_id: d.company_id,
            name: d.name,
            address: d.address,
            kind: d.kind,
            expected_status: d.expected_status,
            enabled: d.enabled,
            monitoring_wanted: d.monitoring_wanted,
            created_at: utc(d.created_at),
            updated_at: utc(d.updated_at),
            monitoring,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Up,
    Down,
}

/// What a monitor server said of its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLoad {
    pub running_monitors: usize,
    pub max_monitors: u32,
}

/// Seed 000's `MonitorServerResponse`: the row, plus what only the live server knows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonitorServerView {
    pub id: i64,
    pub host: String,
    pub port: i32,
    pub status: ServerStatus,
    /// `null` when the server is down.
    pub running_monitors: Option<usize>,
    pub max_monitors: Option<u32>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub registered_at: DateTime<Utc>,
}

impl MonitorServerView {
    pub(super) fn new(server: &MonitorServer, load: Option<ServerLoad>) -> Self {
        MonitorServerView {
            id: server.id,
            host: server.host.clone(),
            port: server.port,
            status: if load.is_some() {
                ServerStatus::Up
            } else {
                ServerStatus::Down
            },
            running_monitors: load.map(|l| l.running_monitors),
            max_monitors: load.map(|l| l.max_monitors),
            registered_at: utc(server.registered_at),
        }
    }
}

/// The config row as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    pub monitor_server_current: i64,
    #[serde(flatten)]
    pub settings: Settings,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl From<ConfigRow> for ConfigView {
    fn from(row: ConfigRow) -> Self {
        ConfigView {
            monitor_server_current: row.monitor_server_current,
            settings: row.settings(),
            updated_at: utc(row.updated_at),
        }
    }
}

/// 200 when the operation reached every device asked for, 503 otherwise; same body.
pub(super) fn report_response(complete: bool, report: &impl Serialize) -> HttpResponse {
    let status = if complete {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(report)
}
