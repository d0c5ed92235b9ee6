//! Stop: the owner first, then every other server that runs a copy.

use std::collections::HashMap;

use serde::Serialize;

use super::error::SchedulerError;
use crate::db::{self, Db};
use crate::remote::{MonitorServerClient, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopStatus {
    Stopped,
    NotRunning,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StopResult {
    pub device_id: i64,
    pub status: StopStatus,
    pub server_id: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
        let message = super::error::summary(
            "stopped",
            stopped,
            requested,
            &[(not_running, "not running"), (failed, "failed")],
        );
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
) -> Result<StopReport, SchedulerError> {
    let ids = device_ids.clone();
    let (assignments, servers) = db
        .run(move |conn| {
            // A stop asked for is the desired state from now on, whatever the pass does.
            db::devices::set_wanted(conn, &ids, false)?;
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
    // One look at what runs where, asked of every server at once, instead of asking
    // each server about each device in turn.
    let snapshot = Snapshot::take(client, servers).await;
    tracing::info!(
        devices = device_ids.len(),
        servers = snapshot.servers.len(),
        "stop pass begins"
    );
    let mut results = Vec::with_capacity(device_ids.len());
    for (done, device_id) in device_ids.into_iter().enumerate() {
        if done > 0 && done % 100 == 0 {
            tracing::info!(done, "stop pass progress");
        }
        let owner = owners.get(&device_id).copied();
        let result = stop_one(db, client, &snapshot, device_id, owner).await;
        if result.status == StopStatus::Failed {
            tracing::warn!(
                device.id = device_id,
                reason = result.reason.as_deref().unwrap_or(""),
                "could not stop monitor"
            );
        }
        results.push(result);
    }
    let report = StopReport::new(results);
    tracing::info!(message = %report.message, "stop pass done");
    Ok(report)
}

/// Stops every copy of a device's monitor: on its owner first, then on any other server
/// that runs one. The ownership record is released only when no copy can be left.
async fn stop_one(
    db: &Db,
    client: &MonitorServerClient,
    snapshot: &Snapshot,
    device_id: i64,
    owner: Option<i64>,
) -> StopResult {
    let mut holders = snapshot.holders(device_id);
    holders.sort_by_key(|s| Some(s.id) != owner);
    let mut stopped_on = Vec::new();
    let mut problems = Vec::new();
    if let Some(owner) = owner {
        if let Some(reason) = snapshot.down_reason(owner) {
            problems.push(format!("server {owner} that owns it is {reason}"));
        }
    }
    for server in holders {
        match client.stop(server, device_id).await {
            Ok(true) => stopped_on.push(server.id),
            Ok(false) => {}
            Err(error) => problems.push(format!("server {} is {error}", server.id)),
        }
    }
    if !problems.is_empty() {
        return StopResult {
            device_id,
            status: StopStatus::Failed,
            server_id: owner,
            reason: Some(format!(
                "{}; it may still be monitored there",
                problems.join("; ")
            )),
        };
    }
    if stopped_on.len() > 1 {
        tracing::warn!(device.id = device_id, servers = ?stopped_on, "device ran on several servers; stopped every copy");
    }
    if owner.is_some() {
        if let Err(error) = db
            .run(move |conn| db::assignments::release(conn, device_id))
            .await
        {
            return StopResult {
                device_id,
                status: StopStatus::Failed,
                server_id: stopped_on.first().copied().or(owner),
                reason: Some(format!(
                    "stopped, but the release could not be recorded: {error}"
                )),
            };
        }
    }
    match stopped_on.first() {
        Some(&server_id) => StopResult {
            device_id,
            status: StopStatus::Stopped,
            server_id: Some(server_id),
            reason: None,
        },
        None => StopResult {
            device_id,
            status: StopStatus::NotRunning,
            server_id: None,
            reason: None,
        },
    }
}
