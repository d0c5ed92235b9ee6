//! Row structs, one per use: what a query returns, what an insert takes, what an update sets.
//! These never go on the wire; the HTTP layer has its own types.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::domain::{DeviceSpec, UnknownKind};

use super::stored_time::StoredTime;

use super::schema::{
    api_tokens, assignments, companies, config, devices, events, monitor_servers, nodes, samples,
};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = companies)]
pub struct Company {
    pub id: i64,
    pub name: String,
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = companies)]
pub struct NewCompany<'a> {
    pub name: &'a str,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = devices)]
pub struct Device {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    pub address: String,
    pub kind: String,
    pub enabled: bool,
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
    pub expected_status: Option<i32>,
    /// A start asked for it and no stop since: the master keeps it monitored.
    pub monitoring_wanted: bool,
}

impl Device {
    /// What its monitor needs to know, as a device of the company named `company`.
    pub fn spec(&self, company: &str) -> Result<DeviceSpec, UnknownKind> {
        Ok(DeviceSpec {
            id: self.id,
            company_id: self.company_id,
            name: self.name.clone(),
            company: company.to_string(),
            address: self.address.clone(),
            kind: self.kind.parse()?,
            expected_status: self
                .expected_status
                .and_then(|status| u16::try_from(status).ok()),
        })
    }
}

/// A device to insert. `None` is bound as NULL rather than left to the column's default
/// (which is NULL too), so that many rows go in one multi-row INSERT on SQLite: diesel
/// splits a batch that leans on defaults into one statement per row there.
#[derive(Debug, Insertable)]
#[diesel(table_name = devices, treat_none_as_default_value = false)]
pub struct NewDevice<'a> {
    pub company_id: i64,
    pub name: &'a str,
    pub address: &'a str,
    pub kind: &'a str,
    pub enabled: bool,
    pub expected_status: Option<i32>,
}

/// A partial update of a device; `None` leaves the column as it is.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = devices)]
pub struct DeviceChanges {
    pub name: Option<String>,
    pub address: Option<String>,
    pub kind: Option<String>,
    pub enabled: Option<bool>,
    /// `Some(None)` clears the expected status.
    pub expected_status: Option<Option<i32>>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = monitor_servers)]
pub struct MonitorServer {
    pub id: i64,
    pub host: String,
    pub port: i32,
    #[diesel(deserialize_as = StoredTime)]
    pub registered_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = monitor_servers)]
pub struct NewMonitorServer<'a> {
    pub host: &'a str,
    pub port: i32,
}

/// The one row of `config`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = config)]
pub struct ConfigRow {
    pub monitor_server_current: i64,
    pub max_monitors_per_server: i32,
    pub poll_interval_ms: i64,
    pub timeout_ms: i64,
    pub alert_threshold: i32,
    pub critical_threshold: i32,
    pub balance_method: String,
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
    pub unreachable_after: i32,
    pub retention_hours: i32,
    pub heartbeat_ms: i64,
    pub validate_ms: i64,
    pub missed_checks: i32,
    pub minute_retention_days: i32,
    pub hour_retention_days: i32,
}

/// A partial update of the config row; the rotating index is not part of it.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = config)]
pub struct ConfigChanges {
    pub max_monitors_per_server: Option<i32>,
    pub poll_interval_ms: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub alert_threshold: Option<i32>,
    pub critical_threshold: Option<i32>,
    pub balance_method: Option<String>,
    pub unreachable_after: Option<i32>,
    pub retention_hours: Option<i32>,
    pub heartbeat_ms: Option<i64>,
    pub validate_ms: Option<i64>,
    pub missed_checks: Option<i32>,
    pub minute_retention_days: Option<i32>,
    pub hour_retention_days: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = assignments)]
pub struct Assignment {
    pub device_id: i64,
    /// `None` while the device is not monitored anywhere.
    pub server_id: Option<i64>,
    pub epoch: i64,
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

/// One series of one poll, as the metrics writer inserts it.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = samples)]
pub struct NewSample {
    pub device_id: i64,
    pub epoch: i64,
    pub at_ms: i64,
    pub metric: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub device_id: i64,
    pub company_id: i64,
    pub epoch: i64,
    pub from_state: String,
    pub to_state: String,
    #[diesel(deserialize_as = StoredTime)]
    pub at: NaiveDateTime,
    pub reason: String,
    /// `state` (a health change judged by a monitor) or `moved` (the device's monitor
    /// was placed on another server; `from_state`/`to_state` name the servers).
    pub kind: String,
}

/// `Event::kind` of a health change.
pub const EVENT_STATE: &str = "state";
/// `Event::kind` of a monitor moved to another server.
pub const EVENT_MOVED: &str = "moved";
/// `Event::kind` of a monitor started again on the server that owns it, which did not
/// run it (reconciliation).
pub const EVENT_RESTARTED: &str = "restarted";

/// An event to store: a health change judged by a monitor (`kind` is [`EVENT_STATE`])
/// or a monitor moved to another server ([`EVENT_MOVED`]; the states name the servers).
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = events)]
pub struct NewEvent {
    pub device_id: i64,
    pub company_id: i64,
    pub epoch: i64,
    pub from_state: String,
    pub to_state: String,
    pub at: NaiveDateTime,
    pub reason: String,
    pub kind: &'static str,
}

/// A live process of the cluster.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = nodes)]
pub struct Node {
    pub id: i64,
    pub role: String,
    pub address: String,
    /// For a monitor server: its row in `monitor_servers`.
    pub server_id: Option<i64>,
    pub counter: i64,
    #[diesel(deserialize_as = StoredTime)]
    pub started_at: NaiveDateTime,
    /// The database's time of the node's last heartbeat.
    #[diesel(deserialize_as = StoredTime)]
    pub last_beat_at: NaiveDateTime,
    /// What it reported with its last heartbeat (none before its first report).
    pub memory_bytes: Option<i64>,
    pub cpu_percent: Option<f64>,
    pub threads: Option<i32>,
    /// The version of Vigil it runs (`None`: a version that did not record it).
    pub version: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = nodes)]
pub struct NewNode<'a> {
    pub role: &'a str,
    pub address: &'a str,
    pub server_id: Option<i64>,
    pub version: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub company_id: Option<i64>,
    pub secret_hash: String,
    pub prefix: String,
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub company_id: Option<i64>,
    pub secret_hash: &'a str,
    pub prefix: &'a str,
}
