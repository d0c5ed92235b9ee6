//! Start: walk the servers from the rotating index, skip those down or at their limit,
//! record the owner and advance the index after each success.

use std::collections::HashMap;

use serde::Serialize;

use super::SchedulerError;
use crate::db::models::{Assignment, ConfigRow, Device, MonitorServer};
use crate::db::{self, Db};
use crate::domain::{DeviceSpec, MonitorConfig};
use crate::remote::{MonitorServerClient, Snapshot, StartOutcome};
use crate::wire::StartMonitorRequest;

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
        let message = super::summary(
            "started",
            started,
            requested,
            &[(already_running, "already running"), (failed, "failed")],
        );
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

    /// The position after `position`, wrapping around.
    fn after(&self, position: usize) -> usize {
        (position + 1) % self.len
    }

    /// The server at `position` took a monitor: the next start begins after it.
    fn advance_past(&mut self, position: usize) {
        self.current = self.after(position);
    }
}

pub(super) async fn start_devices(
    db: &Db,
    client: &MonitorServerClient,
    device_ids: Vec<i64>,
) -> Result<StartReport, SchedulerError> {
    let ids = device_ids.clone();
    let (devices, companies, assignments, servers, config) = db
        .run(move |conn| {
            // Wanted from now on, whatever this pass manages: failover keeps it so.
            db::devices::set_wanted(conn, &ids, true)?;
            let devices = db::devices::of_ids(conn, &ids)?;
            let mut company_ids: Vec<i64> = devices.iter().map(|d| d.company_id).collect();
            company_ids.sort_unstable();
            company_ids.dedup();
            Ok((
                devices,
                db::companies::names_of(conn, &company_ids)?,
                db::assignments::of_devices(conn, &ids)?,
                db::monitor_servers::list(conn)?,
                db::config::get(conn)?,
            ))
        })
        .await?;
    let devices: HashMap<i64, Device> = devices.into_iter().map(|d| (d.id, d)).collect();
    let assignments: HashMap<i64, Assignment> =
        assignments.into_iter().map(|a| (a.device_id, a)).collect();
    let snapshot = Snapshot::take(client, servers).await;
    let mut pass = StartPass::new(db, client, snapshot, &config);
    tracing::info!(
        devices = device_ids.len(),
        servers = pass.snapshot.servers.len(),
        servers_down = pass.unavailable.len(),
        index = pass.rotation.current,
        "start pass begins"
    );
    let mut results = Vec::with_capacity(device_ids.len());
    for (done, device_id) in device_ids.into_iter().enumerate() {
        let device = devices.get(&device_id);
        let company = device
            .and_then(|d| companies.get(&d.company_id))
            .map_or("", String::as_str);
        let result = pass
            .start(device_id, device, company, assignments.get(&device_id))
            .await;
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

/// One start pass: what the servers looked like at its beginning, and what it learnt since.
struct StartPass<'a> {
    db: &'a Db,
    client: &'a MonitorServerClient,
    snapshot: Snapshot,
    rotation: Rotation,
    /// Servers that cannot take a monitor in this pass, with the reason.
    unavailable: HashMap<i64, String>,
    config: MonitorConfig,
}

impl<'a> StartPass<'a> {
    fn new(
        db: &'a Db,
        client: &'a MonitorServerClient,
        snapshot: Snapshot,
        config: &ConfigRow,
    ) -> Self {
        let rotation = Rotation::new(config.monitor_server_current, snapshot.servers.len());
        let unavailable = snapshot
            .servers
            .iter()
            .filter_map(|s| {
                snapshot
                    .down_reason(s.id)
                    .map(|reason| (s.id, format!("server {} is {reason}", s.id)))
            })
            .collect();
        StartPass {
            db,
            client,
            snapshot,
            rotation,
            unavailable,
            config: MonitorConfig::from(config),
        }
    }

    async fn start(
        &mut self,
        device_id: i64,
        device: Option<&Device>,
        company: &str,
        assignment: Option<&Assignment>,
    ) -> StartResult {
        let Some(device) = device else {
            return failed(device_id, format!("device {device_id} does not exist"));
        };
        if !device.enabled {
            return failed(device_id, format!("device {device_id} is disabled"));
        }
        let spec = match DeviceSpec::of(device, company) {
            Ok(spec) => spec,
            Err(e) => return failed(device_id, e.to_string()),
        };
        let holders: Vec<MonitorServer> = self
            .snapshot
            .holders(device_id)
            .into_iter()
            .cloned()
            .collect();
        if !holders.is_empty() {
            return self.keep_one(device_id, &holders, assignment).await;
        }
        let request = StartMonitorRequest {
            device: spec,
            config: self.config,
            epoch: db::assignments::next_epoch(assignment),
        };
        let positions: Vec<usize> = self.rotation.order().collect();
        for position in positions {
            let server = self.snapshot.servers[position].clone();
            if self.unavailable.contains_key(&server.id) {
                continue;
            }
            match self.client.start(&server, &request).await {
                Ok(StartOutcome::Started) => {
                    return self.record_start(position, &server, &request).await
                }
                Ok(StartOutcome::AlreadyRunning) => {
                    return self.keep_one(device_id, &[server], assignment).await;
                }
                Ok(StartOutcome::AtLimit(message)) => {
                    self.unavailable.insert(
                        server.id,
                        format!("server {} refused: {message}", server.id),
                    );
                }
                Err(error) => {
                    self.unavailable
                        .insert(server.id, format!("server {} is {error}", server.id));
                }
            }
        }
        failed(device_id, self.no_server_reason())
    }

    /// Records a successful start (owner, epoch, and the index past `position`) in one
    /// transaction. If that cannot be written, the monitor is stopped again so that no
    /// unrecorded monitor runs, and the index stays where it was.
    async fn record_start(
        &mut self,
        position: usize,
        server: &MonitorServer,
        request: &StartMonitorRequest,
    ) -> StartResult {
        let (device_id, server_id, epoch) = (request.device.id, server.id, request.epoch);
        let next_index = self.rotation.after(position) as i64;
        let recorded = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let won = db::assignments::assign(conn, device_id, server_id, epoch)?;
                    if won {
                        db::config::set_rotation_index(conn, next_index)?;
                    }
                    Ok(won)
                })
            })
            .await;
        let reason = match recorded {
            Ok(true) => {
                self.rotation.advance_past(position);
                return StartResult {
                    device_id,
                    status: StartStatus::Started,
                    server_id: Some(server_id),
                    reason: None,
                };
            }
            Ok(false) => "its owner was changed by someone else meanwhile".to_string(),
            Err(error) => format!("the start could not be recorded: {error}"),
        };
        tracing::error!(device.id = device_id, server.id = server_id, %reason, "undoing start");
        if let Err(error) = self.client.stop(server, device_id).await {
            tracing::error!(device.id = device_id, server.id = server_id, %error, "could not undo start");
        }
        failed(device_id, reason)
    }

    /// The device already runs on `holders`: keep the copy the ownership record names
    /// (or the first), stop any other, and make the record say where it runs.
    async fn keep_one(
        &self,
        device_id: i64,
        holders: &[MonitorServer],
        assignment: Option<&Assignment>,
    ) -> StartResult {
        let owner = assignment.and_then(|a| a.server_id);
        let keeper = holders
            .iter()
            .find(|s| Some(s.id) == owner)
            .or(holders.first())
            .map_or(0, |s| s.id);
        for extra in holders.iter().filter(|s| s.id != keeper) {
            tracing::warn!(
                device.id = device_id,
                server.id = extra.id,
                kept_on = keeper,
                "device ran on several servers; stopping the extra copy"
            );
            if let Err(error) = self.client.stop(extra, device_id).await {
                tracing::error!(device.id = device_id, server.id = extra.id, %error, "could not stop the extra copy");
            }
        }
        let mut reason = None;
        if owner != Some(keeper) {
            let epoch = db::assignments::next_epoch(assignment);
            if let Err(error) = self
                .db
                .run(move |conn| db::assignments::assign(conn, device_id, keeper, epoch))
                .await
            {
                tracing::error!(device.id = device_id, server.id = keeper, %error, "could not record the owner");
                reason = Some(format!(
                    "running, but its owner could not be recorded: {error}"
                ));
            }
        }
        StartResult {
            device_id,
            status: StartStatus::AlreadyRunning,
            server_id: Some(keeper),
            reason,
        }
    }

    fn no_server_reason(&self) -> String {
        if self.snapshot.servers.is_empty() {
            return "no monitor server is registered".into();
        }
        let reasons: Vec<&str> = self
            .snapshot
            .servers
            .iter()
            .filter_map(|s| self.unavailable.get(&s.id).map(String::as_str))
            .collect();
        format!("no monitor server could take it: {}", reasons.join("; "))
    }
}

fn failed(device_id: i64, reason: String) -> StartResult {
    StartResult {
        device_id,
        status: StartStatus::Failed,
        server_id: None,
        reason: Some(reason),
    }
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
