//! Changes: config (saved, then broadcast to every server), a saved device (delivered to
//! the monitor of that device), a device deleted (its monitors stopped first) and a
//! monitor server forgotten (its devices released).

use futures_util::future::join_all;
use serde::Serialize;

use super::error::SchedulerError;
use super::stop::{stop_devices, StopReport, StopStatus};
use crate::db::models::{ConfigChanges, ConfigRow};
use crate::db::{self, Db};
use crate::remote::{MonitorServerClient, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServerApplied {
    pub server_id: i64,
    pub monitors_updated: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
                let merged = db::config::get(conn)?.merged(&changes);
                if let Err(problem) = merged.settings().check() {
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
    let config = row.monitor_config();
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

/// How a saved device change reached its monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// The monitor on this server took the new data.
    Delivered(i64),
    /// The device is disabled now; this is how its stop went.
    Stopped(StopReport),
    /// No server monitors it.
    NotMonitored,
    /// The owner, or a server running a copy, could not be reached.
    Undelivered(String),
}

pub(super) async fn route_device_update(
    db: &Db,
    client: &MonitorServerClient,
    device_id: i64,
) -> Result<RouteOutcome, SchedulerError> {
    // Read here, inside the scheduler's one-at-a-time operation: of two changes saved
    // in quick succession, the monitor always ends up with the one stored last.
    let (device, assignment, servers) = db
        .run(move |conn| {
            Ok((
                db::devices::get(conn, device_id)?
                    .map(|device| {
                        let company = db::companies::get(conn, device.company_id)?
                            .map(|c| c.name)
                            .unwrap_or_default();
                        Ok::<_, diesel::result::Error>((device, company))
                    })
                    .transpose()?,
                db::assignments::get(conn, device_id)?,
                db::monitor_servers::list(conn)?,
            ))
        })
        .await?;
    let Some((device, company)) = device else {
        return Ok(RouteOutcome::NotMonitored);
    };
    if !device.enabled {
        let report = stop_devices(db, client, vec![device_id]).await?;
        return Ok(RouteOutcome::Stopped(report));
    }
    let spec = device
        .spec(&company)
        .map_err(|e| SchedulerError::StoredDevice(device_id, e))?;
    let owner = assignment.and_then(|a| a.server_id);
    let snapshot = Snapshot::take(client, servers).await;
    // Every server that runs the device gets the change, the owner first (seed 000 sends
    // it to the replicas until it finds the monitor; the snapshot finds them all at once).
    let mut holders = snapshot.holders(device_id);
    holders.sort_by_key(|s| Some(s.id) != owner);
    let mut delivered = Vec::new();
    let mut problems: Vec<String> = owner
        .and_then(|o| {
            snapshot
                .down_reason(o)
                .map(|r| format!("server {o} that owns it is {r}"))
        })
        .into_iter()
        .collect();
    for server in holders {
        match client.update_device(server, &spec).await {
            Ok(true) => delivered.push(server.id),
            Ok(false) => {}
            Err(error) => problems.push(format!("server {} is {error}", server.id)),
        }
    }
    Ok(match (delivered.first(), problems.is_empty()) {
        (Some(&server_id), true) => {
            tracing::info!(
                device.id = device_id,
                server.id = server_id,
                "device change delivered"
            );
            RouteOutcome::Delivered(server_id)
        }
        (_, false) => {
            let reason = problems.join("; ");
            tracing::warn!(device.id = device_id, %reason, "device change not delivered everywhere");
            RouteOutcome::Undelivered(reason)
        }
        (None, true) => RouteOutcome::NotMonitored,
    })
}

/// What became of a device that was to be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// Its monitor could not be stopped, so it was kept.
    NotStopped(String),
}

/// Stops every monitor of the device, then deletes it, with no other scheduler
/// operation in between: a start cannot slip in and leave a monitor of a deleted device.
pub(super) async fn delete_device(
    db: &Db,
    client: &MonitorServerClient,
    device_id: i64,
) -> Result<DeleteOutcome, SchedulerError> {
    let report = stop_devices(db, client, vec![device_id]).await?;
    if let Some(failure) = report
        .results
        .iter()
        .find(|r| r.status == StopStatus::Failed)
    {
        return Ok(DeleteOutcome::NotStopped(
            failure
                .reason
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
        ));
    }
    let deleted = db
        .run(move |conn| db::devices::delete(conn, device_id))
        .await?;
    if deleted {
        tracing::info!(device.id = device_id, "device deleted");
        Ok(DeleteOutcome::Deleted)
    } else {
        Ok(DeleteOutcome::NotFound)
    }
}

/// What became of a monitor server that was to be forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgetOutcome {
    /// Its row is gone; this many devices it owned are monitored nowhere now.
    Forgotten {
        released: usize,
    },
    NotFound,
    /// It answers, so its monitors may be running: it is kept.
    StillUp {
        running_monitors: usize,
    },
}

/// Forgets a monitor server that is gone for good, so that its devices can be started
/// elsewhere, stopped or deleted. A server that still answers is refused.
pub(super) async fn forget_server(
    db: &Db,
    client: &MonitorServerClient,
    server_id: i64,
) -> Result<ForgetOutcome, SchedulerError> {
    let Some(server) = db
        .run(move |conn| db::monitor_servers::get(conn, server_id))
        .await?
    else {
        return Ok(ForgetOutcome::NotFound);
    };
    if let Ok(info) = client.info(&server).await {
        return Ok(ForgetOutcome::StillUp {
            running_monitors: info.running_monitors,
        });
    }
    let released = db
        .run(move |conn| db::monitor_servers::forget(conn, server_id))
        .await?;
    Ok(match released {
        Some(released) => {
            tracing::info!(server.id = server_id, released, "monitor server forgotten");
            ForgetOutcome::Forgotten { released }
        }
        None => ForgetOutcome::NotFound,
    })
}
