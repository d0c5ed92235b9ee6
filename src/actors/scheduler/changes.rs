//! Config and device changes: saved, then delivered to the monitor servers (config to
//! all of them, a device change to the one monitor of that device).

use futures_util::future::join_all;
use serde::Serialize;

use super::stop::{stop_devices, StopReport, StopScope};
use super::SchedulerError;
use crate::db::models::{ConfigChanges, ConfigRow, Device, MonitorServer};
use crate::db::{self, Db};
use crate::domain::{self, DeviceSpec, MonitorConfig};
use crate::remote::MonitorServerClient;

// Config

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerApplied {
    pub server_id: i64,
    pub monitors_updated: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerUnreached {
    pub server_id: i64,
    pub reason: String,
}

/// The config as stored, which servers applied it and which could not be reached.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigReport {
    pub config: ConfigRow,
    pub applied: Vec<ServerApplied>,
    pub unreachable: Vec<ServerUnreached>,
}

pub(super) async fn apply_config(
    db: &Db,
    client: &MonitorServerClient,
    changes: ConfigChanges,
) -> Result<ConfigReport, SchedulerError> {
    let saved = db
        .run(move |conn| {
            db::write_transaction(conn, |conn| {
                let merged = domain::merge_config(db::config::get(conn)?, &changes);
                if let Err(problem) = domain::check_config(&merged) {
                    return Ok(Err(problem));
                }
                Ok(Ok((
                    db::config::update(conn, &changes)?,
                    db::monitor_servers::list(conn)?,
                )))
            })
        })
        .await?;
    let (row, servers) = saved.map_err(SchedulerError::InvalidConfig)?;
    let config = MonitorConfig::from(&row);
    let answers = join_all(servers.iter().map(|s| client.put_config(s, &config))).await;
    let mut report = ConfigReport {
        config: row,
        applied: Vec::new(),
        unreachable: Vec::new(),
    };
    for (server, answer) in servers.iter().zip(answers) {
        match answer {
            Ok(applied) => report.applied.push(ServerApplied {
                server_id: server.id,
                monitors_updated: applied.monitors_updated,
            }),
            Err(error) => {
                tracing::warn!(server.id = server.id, %error, "config not delivered");
                report.unreachable.push(ServerUnreached {
                    server_id: server.id,
                    reason: error.to_string(),
                });
            }
        }
    }
    tracing::info!(
        applied = report.applied.len(),
        unreachable = report.unreachable.len(),
        "config broadcast"
    );
    Ok(report)
}

// Device change

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// The monitor on this server took the new data.
    Delivered(i64),
    /// The device is disabled now; this is how its stop went.
    Stopped(StopReport),
    /// No server monitors it.
    NotMonitored,
    /// The owner could not be reached.
    Undelivered(String),
}

pub(super) async fn route_device_update(
    db: &Db,
    client: &MonitorServerClient,
    device: Device,
) -> Result<RouteOutcome, SchedulerError> {
    let device_id = device.id;
    if !device.enabled {
        let report = stop_devices(db, client, vec![device_id], StopScope::Device).await?;
        return Ok(RouteOutcome::Stopped(report));
    }
    let spec =
        DeviceSpec::try_from(&device).map_err(|e| SchedulerError::StoredDevice(device_id, e))?;
    let (assignment, servers) = db
        .run(move |conn| {
            Ok((
                db::assignments::get(conn, device_id)?,
                db::monitor_servers::list(conn)?,
            ))
        })
        .await?;
    let owner = assignment.and_then(|a| a.server_id);
    // The owner first; the others only if the owner does not have it (seed 000 sends
    // the change to every replica until one holds the monitor).
    let mut ordered: Vec<&MonitorServer> = servers.iter().filter(|s| Some(s.id) == owner).collect();
    ordered.extend(servers.iter().filter(|s| Some(s.id) != owner));
    let mut owner_error = None;
    for server in ordered {
        match client.update_device(server, &spec).await {
            Ok(true) => {
                tracing::info!(
                    device.id = device_id,
                    server.id = server.id,
                    "device change delivered"
                );
                return Ok(RouteOutcome::Delivered(server.id));
            }
            Ok(false) => {}
            Err(error) if Some(server.id) == owner => {
                owner_error = Some(format!("server {} is {error}", server.id));
            }
            Err(_) => {}
        }
    }
    Ok(match owner_error {
        Some(reason) => {
            tracing::warn!(device.id = device_id, %reason, "device change not delivered");
            RouteOutcome::Undelivered(reason)
        }
        None => RouteOutcome::NotMonitored,
    })
}
