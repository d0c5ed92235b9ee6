//! Start: walk the servers from the rotating index, skip those down or at their limit,
//! record the owner and advance the index after each success.

use std::collections::HashMap;

use serde::Serialize;

use super::SchedulerError;
use crate::db::models::{Assignment, Device, MonitorServer};
use crate::db::{self, Db};
use crate::domain::{DeviceSpec, MonitorConfig};
use crate::remote::{MonitorServerClient, Snapshot, StartOutcome};
use crate::wire::StartMonitorRequest;

// Start

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartStatus {
    Started,
    AlreadyRunning,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartResult {
    pub device_id: i64,
    pub status: StartStatus,
    pub server_id: Option<i64>,
    pub reason: Option<String>,
}

/// `started K of N monitors`, with one result per device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartReport {
    pub requested: usize,
    pub started: usize,
    pub already_running: usize,
    pub failed: usize,
    pub message: String,
    pub results: Vec<StartResult>,
}

impl StartReport {
    fn new(results: Vec<StartResult>) -> Self {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (started, already_running, failed) = (
            count(StartStatus::Started),
            count(StartStatus::AlreadyRunning),
            count(StartStatus::Failed),
        );
        let requested = results.len();
        let mut message = format!("started {started} of {requested} monitors");
        if already_running > 0 {
            message.push_str(&format!(", {already_running} already running"));
        }
        if failed > 0 {
            message.push_str(&format!(", {failed} failed"));
        }
        StartReport {
            requested,
            started,
            already_running,
            failed,
            message,
            results,
        }
    }

    /// Every device asked for is monitored now.
    pub fn all_monitored(&self) -> bool {
        self.failed == 0
    }
}

/// The index of the next server to try, over servers in id order.
struct Rotation {
    current: usize,
    len: usize,
}

impl Rotation {
    fn new(stored: i64, len: usize) -> Self {
        let current = match (usize::try_from(stored), len) {
            (Ok(index), len) if len > 0 => index % len,
            _ => 0,
        };
        Rotation { current, len }
    }

    /// Positions to try, starting at the current one and wrapping around once.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).map(move |step| (self.current + step) % self.len)
    }

    /// The server at `position` took a monitor: the next start begins after it.
    fn advance_past(&mut self, position: usize) {
        self.current = (position + 1) % self.len;
    }
}

pub(super) async fn start_devices(
    db: &Db,
    client: &MonitorServerClient,
    device_ids: Vec<i64>,
) -> Result<StartReport, SchedulerError> {
    let ids = device_ids.clone();
    let (devices, assignments, servers, config) = db
        .run(move |conn| {
            let mut devices = Vec::with_capacity(ids.len());
            for id in &ids {
                devices.push((*id, db::devices::get(conn, *id)?));
            }
            let assignments = db::assignments::of_devices(conn, &ids)?;
            Ok((
                devices,
                assignments,
                db::monitor_servers::list(conn)?,
                db::config::get(conn)?,
            ))
        })
        .await?;
    let assignments: HashMap<i64, Assignment> =
        assignments.into_iter().map(|a| (a.device_id, a)).collect();
    let monitor_config = MonitorConfig::from(&config);
    let snapshot = Snapshot::take(client, servers).await;
    let mut rotation = Rotation::new(config.monitor_server_current, snapshot.servers.len());
    // Servers that cannot take a monitor in this pass, with the reason.
    let mut unavailable: HashMap<i64, String> = snapshot
        .servers
        .iter()
        .filter_map(|s| {
            snapshot
                .down_reason(s.id)
                .map(|reason| (s.id, format!("server {} is {reason}", s.id)))
        })
        .collect();
    tracing::info!(
        devices = devices.len(),
        servers = snapshot.servers.len(),
        servers_down = unavailable.len(),
        index = rotation.current,
        "start pass begins"
    );

    let mut results = Vec::with_capacity(devices.len());
    for (done, (device_id, device)) in devices.into_iter().enumerate() {
        let failed = |reason: String| StartResult {
            device_id,
            status: StartStatus::Failed,
            server_id: None,
            reason: Some(reason),
        };
        let Some(device) = device else {
            results.push(failed(format!("device {device_id} does not exist")));
            continue;
        };
        if !device.enabled {
            results.push(failed(format!("device {device_id} is disabled")));
            continue;
        }
        let spec = match DeviceSpec::try_from(&device) {
            Ok(spec) => spec,
            Err(e) => {
                results.push(failed(e.to_string()));
                continue;
            }
        };
        let assignment = assignments.get(&device_id);
        if let Some(holder) = snapshot.holders(device_id).first() {
            results.push(already_running(db, &device, holder.id, assignment).await?);
            continue;
        }
        let request = StartMonitorRequest {
            device: spec,
            config: monitor_config,
            epoch: assignment.map_or(1, |a| a.epoch + 1),
        };
        let positions: Vec<usize> = rotation.order().collect();
        let mut outcome = None;
        for position in positions {
            let server = &snapshot.servers[position];
            if unavailable.contains_key(&server.id) {
                continue;
            }
            match client.start(server, &request).await {
                Ok(StartOutcome::Started) => {
                    rotation.advance_past(position);
                    outcome =
                        Some(record_start(db, client, server, &request, rotation.current).await?);
                    break;
                }
                Ok(StartOutcome::AlreadyRunning) => {
                    outcome = Some(already_running(db, &device, server.id, assignment).await?);
                    break;
                }
                Ok(StartOutcome::AtLimit(message)) => {
                    unavailable.insert(
                        server.id,
                        format!("server {} refused: {message}", server.id),
                    );
                }
                Err(error) => {
                    unavailable.insert(server.id, format!("server {} is {error}", server.id));
                }
            }
        }
        let result =
            outcome.unwrap_or_else(|| failed(no_server_reason(&snapshot.servers, &unavailable)));
        if result.status == StartStatus::Failed {
            tracing::warn!(
                device.id = device_id,
                reason = result.reason.as_deref().unwrap_or(""),
                "could not start monitor"
            );
        }
        results.push(result);
        if (done + 1) % 100 == 0 {
            tracing::info!(done = done + 1, "start pass progress");
        }
    }
    let report = StartReport::new(results);
    tracing::info!(message = %report.message, "start pass done");
    Ok(report)
}

/// Records a successful start (owner, epoch, next index) in one transaction. If that
/// cannot be written, the monitor is stopped again so no unrecorded monitor runs.
async fn record_start(
    db: &Db,
    client: &MonitorServerClient,
    server: &MonitorServer,
    request: &StartMonitorRequest,
    next_index: usize,
) -> Result<StartResult, SchedulerError> {
    let (device_id, server_id, epoch) = (request.device.id, server.id, request.epoch);
    let recorded = db
        .run(move |conn| {
            db::write_transaction(conn, |conn| {
                let won = db::assignments::assign(conn, device_id, server_id, epoch)?;
                db::config::set_rotation_index(conn, next_index as i64)?;
                Ok(won)
            })
        })
        .await;
    let reason = match recorded {
        Ok(true) => {
            return Ok(StartResult {
                device_id,
                status: StartStatus::Started,
                server_id: Some(server_id),
                reason: None,
            })
        }
        Ok(false) => "another scheduler changed its owner meanwhile".to_string(),
        Err(error) => format!("the start could not be recorded: {error}"),
    };
    tracing::error!(device.id = device_id, server.id = server_id, %reason, "undoing start");
    if let Err(error) = client.stop(server, device_id).await {
        tracing::error!(device.id = device_id, server.id = server_id, %error, "could not undo start");
    }
    Ok(StartResult {
        device_id,
        status: StartStatus::Failed,
        server_id: None,
        reason: Some(reason),
    })
}

/// The device already runs on `holder`; make the ownership record say so.
async fn already_running(
    db: &Db,
    device: &Device,
    holder: i64,
    assignment: Option<&Assignment>,
) -> Result<StartResult, SchedulerError> {
    if assignment.and_then(|a| a.server_id) != Some(holder) {
        let (device_id, epoch) = (device.id, assignment.map_or(1, |a| a.epoch + 1));
        db.run(move |conn| db::assignments::assign(conn, device_id, holder, epoch))
            .await?;
    }
    Ok(StartResult {
        device_id: device.id,
        status: StartStatus::AlreadyRunning,
        server_id: Some(holder),
        reason: None,
    })
}

fn no_server_reason(servers: &[MonitorServer], unavailable: &HashMap<i64, String>) -> String {
    if servers.is_empty() {
        return "no monitor server is registered".into();
    }
    let reasons: Vec<&str> = servers
        .iter()
        .filter_map(|s| unavailable.get(&s.id).map(String::as_str))
        .collect();
    format!("no monitor server could take it: {}", reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::Rotation;

    #[test]
    fn rotation_starts_at_the_stored_index_and_wraps() {
        let rotation = Rotation::new(1, 3);
        assert_eq!(rotation.order().collect::<Vec<_>>(), vec![1, 2, 0]);
        let rotation = Rotation::new(7, 3);
        assert_eq!(rotation.current, 1);
        let rotation = Rotation::new(-4, 3);
        assert_eq!(rotation.current, 0);
        assert_eq!(Rotation::new(5, 0).order().count(), 0);
    }

    #[test]
    fn rotation_advances_past_the_server_that_took_the_monitor() {
        let mut rotation = Rotation::new(0, 3);
        rotation.advance_past(0);
        assert_eq!(rotation.current, 1);
        rotation.advance_past(2);
        assert_eq!(rotation.current, 0);
    }
}
