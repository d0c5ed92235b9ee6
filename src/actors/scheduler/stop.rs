//! Stop: the owner first, then wherever else the device runs.

use std::collections::HashMap;

use serde::Serialize;

use super::SchedulerError;
use crate::db::models::MonitorServer;
use crate::db::{self, Db};
use crate::remote::{MonitorServerClient, RemoteError, Snapshot};

// Stop

/// Whether a stop names one device or every device of a company; a company-wide stop
/// ignores devices that are not monitored, and searches only where they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopScope {
    Device,
    Company,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopStatus {
    Stopped,
    NotRunning,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopResult {
    pub device_id: i64,
    pub status: StopStatus,
    pub server_id: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopReport {
    pub requested: usize,
    pub stopped: usize,
    pub not_running: usize,
    pub failed: usize,
    pub message: String,
    pub results: Vec<StopResult>,
}

impl StopReport {
    fn new(results: Vec<StopResult>) -> Self {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (stopped, not_running, failed) = (
            count(StopStatus::Stopped),
            count(StopStatus::NotRunning),
            count(StopStatus::Failed),
        );
        let requested = results.len();
        let mut message = format!("stopped {stopped} of {requested} monitors");
        if not_running > 0 {
            message.push_str(&format!(", {not_running} not running"));
        }
        if failed > 0 {
            message.push_str(&format!(", {failed} failed"));
        }
        StopReport {
            requested,
            stopped,
            not_running,
            failed,
            message,
            results,
        }
    }
}

pub(super) async fn stop_devices(
    db: &Db,
    client: &MonitorServerClient,
    device_ids: Vec<i64>,
    scope: StopScope,
) -> Result<StopReport, SchedulerError> {
    let ids = device_ids.clone();
    let (assignments, servers) = db
        .run(move |conn| {
            Ok((
                db::assignments::of_devices(conn, &ids)?,
                db::monitor_servers::list(conn)?,
            ))
        })
        .await?;
    let owners: HashMap<i64, i64> = assignments
        .iter()
        .filter_map(|a| a.server_id.map(|s| (a.device_id, s)))
        .collect();
    // A company-wide stop looks once at what runs where instead of asking every server
    // about every device.
    let snapshot = match scope {
        StopScope::Company => Some(Snapshot::take(client, servers.clone()).await),
        StopScope::Device => None,
    };
    let by_id: HashMap<i64, &MonitorServer> = servers.iter().map(|s| (s.id, s)).collect();
    let mut down: HashMap<i64, String> = HashMap::new();
    if let Some(snapshot) = &snapshot {
        down.extend(
            servers
                .iter()
                .filter_map(|s| snapshot.down_reason(s.id).map(|r| (s.id, r))),
        );
    }

    let mut results = Vec::with_capacity(device_ids.len());
    for device_id in device_ids {
        let owner = owners.get(&device_id).copied();
        // The owner first, then wherever else the device may run.
        let mut candidates: Vec<i64> = owner.into_iter().collect();
        match &snapshot {
            Some(snapshot) => candidates.extend(snapshot.holders(device_id).iter().map(|s| s.id)),
            None => candidates.extend(servers.iter().map(|s| s.id)),
        }
        let mut seen = Vec::new();
        candidates.retain(|id| {
            let first = !seen.contains(id);
            seen.push(*id);
            first
        });

        let mut stopped_on = None;
        let mut owner_unreachable = None;
        for server_id in candidates {
            let Some(server) = by_id.get(&server_id) else {
                continue;
            };
            let answer = match down.get(&server_id) {
                Some(reason) => Err(RemoteError::Unreachable(reason.clone())),
                None => client.stop(server, device_id).await,
            };
            match answer {
                Ok(true) => {
                    stopped_on = Some(server_id);
                    break;
                }
                Ok(false) => {}
                Err(error) => {
                    if Some(server_id) == owner {
                        owner_unreachable = Some(format!(
                            "server {server_id} that owns it is {error}; it may still be monitored there"
                        ));
                    }
                    down.entry(server_id).or_insert_with(|| error.to_string());
                }
            }
        }

        let result = match (stopped_on, owner_unreachable) {
            (Some(server_id), _) => StopResult {
                device_id,
                status: StopStatus::Stopped,
                server_id: Some(server_id),
                reason: None,
            },
            (None, Some(reason)) => StopResult {
                device_id,
                status: StopStatus::Failed,
                server_id: owner,
                reason: Some(reason),
            },
            (None, None) => StopResult {
                device_id,
                status: StopStatus::NotRunning,
                server_id: None,
                reason: None,
            },
        };
        if result.status != StopStatus::Failed && owner.is_some() {
            db.run(move |conn| db::assignments::release(conn, device_id))
                .await?;
        }
        results.push(result);
    }
    let report = StopReport::new(results);
    tracing::info!(message = %report.message, "stop pass done");
    Ok(report)
}
