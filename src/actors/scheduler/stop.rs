//! Stop: every copy of each device, one batch call per server, releases recorded in one
//! transaction per owning server.
//!
//! A stop names the epoch it read from the device's assignment: a server stops only a
//! copy that runs under that epoch or an older one, and the release is a
//! compare-and-set on that epoch. A start that another scheduler made after the read
//! (a newer epoch) keeps its copy and its record: the device is reported `superseded`.
//! A copy under a newer epoch that no record names (started behind the schedulers'
//! backs) is stopped at its own epoch.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::join_all;
use serde::Serialize;

use super::error::{summary, SchedulerError};
use crate::db::models::MonitorServer;
use crate::db::{self, Db};
use crate::remote::wire::{StopEntry, StopOutcome, StopResult as ServerStop};
use crate::remote::{MonitorServerClient, RemoteError, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopStatus {
    Stopped,
    NotRunning,
    /// Another scheduler started the device again while this stop ran: its newer copy
    /// runs, and the device stays monitored.
    Superseded,
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
    pub superseded: usize,
    pub failed: usize,
    pub message: String,
    pub results: Vec<StopResult>,
}

impl StopReport {
    fn new(results: Vec<StopResult>) -> Self {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (stopped, not_running, superseded, failed) = (
            count(StopStatus::Stopped),
            count(StopStatus::NotRunning),
            count(StopStatus::Superseded),
            count(StopStatus::Failed),
        );
        let requested = results.len();
        let message = summary(
            "stopped",
            stopped,
            requested,
            &[
                (not_running, "not running"),
                (superseded, "started again meanwhile"),
                (failed, "failed"),
            ],
        );
        StopReport {
            requested,
            stopped,
            not_running,
            superseded,
            failed,
            message,
            results,
        }
    }
}

/// Stops, on each server at once, the copies given: one batch call (or a few, for many
/// copies) per server. Answers each server's results, in the order given.
pub(super) async fn stop_on_servers(
    client: &MonitorServerClient,
    plan: Vec<(MonitorServer, Vec<StopEntry>)>,
) -> Vec<(
    MonitorServer,
    Vec<StopEntry>,
    Result<Vec<ServerStop>, RemoteError>,
)> {
    let answers = join_all(
        plan.iter()
            .map(|(server, stops)| client.stop_batch(server, stops)),
    )
    .await;
    plan.into_iter()
        .zip(answers)
        .map(|((server, stops), answer)| {
            if let Err(error) = &answer {
                tracing::warn!(server.id = server.id, stops = stops.len(), %error, "could not stop monitors");
            }
            (server, stops, answer)
        })
        .collect()
}

/// What one device's stop found, server by server.
#[derive(Default)]
struct Found {
    stopped_on: Vec<i64>,
    /// A copy under a newer epoch than the stop read: `(server, epoch)`.
    newer: Option<(i64, i64)>,
    problems: Vec<String>,
}

pub(super) async fn stop_devices(
    db: &Db,
    client: &MonitorServerClient,
    device_ids: Vec<i64>,
) -> Result<StopReport, SchedulerError> {
    let ids = device_ids.clone();
    let (assignments, servers) = db
        .run(move |conn| {
            db::write_transaction(conn, |conn| {
                // A stop asked for is the desired state from now on, whatever the pass
                // does; the epochs read with it are the ones this stop means.
                db::devices::set_wanted(conn, &ids, false)?;
                Ok((
                    db::assignments::of_devices(conn, &ids)?,
                    db::monitor_servers::list(conn)?,
                ))
            })
        })
        .await?;
    // Owner and epoch of each device as read; a device never placed has epoch 0, so any
    // copy a start makes from now on is newer.
    let records: HashMap<i64, (Option<i64>, i64)> = assignments
        .iter()
        .map(|a| (a.device_id, (a.server_id, a.epoch)))
        .collect();
    let record = |device_id: i64| records.get(&device_id).copied().unwrap_or((None, 0));
    let snapshot = Snapshot::take(client, servers).await;
    // Read again after the servers were asked: a copy newer than the first read that
    // this record names was placed by a start since, and is left to it; one that no
    // record names (a copy started behind the schedulers' backs) is stopped.
    let ids = device_ids.clone();
    let now: HashMap<i64, (Option<i64>, i64)> = db
        .run(move |conn| db::assignments::of_devices(conn, &ids))
        .await?
        .into_iter()
        .map(|a| (a.device_id, (a.server_id, a.epoch)))
        .collect();
    tracing::info!(
        devices = device_ids.len(),
        servers = snapshot.servers.len(),
        "stop pass begins"
    );
    let mut found: HashMap<i64, Found> = HashMap::with_capacity(device_ids.len());
    let mut plan: BTreeMap<i64, (MonitorServer, Vec<StopEntry>)> = BTreeMap::new();
    for &device_id in &device_ids {
        let (owner, epoch) = record(device_id);
        let entry = found.entry(device_id).or_default();
        if let Some(reason) = owner.and_then(|o| snapshot.down_reason(o)) {
            entry.problems.push(format!(
                "server {} that owns it is {reason}",
                owner.unwrap_or(0)
            ));
        }
        for (server, copy) in snapshot.copies(device_id) {
            let bound = match copy {
                Some(copy) if copy > epoch => {
                    if now.get(&device_id) == Some(&(Some(server.id), copy)) {
                        entry.newer = Some((server.id, copy));
                        continue;
                    }
                    copy
                }
                _ => epoch,
            };
            plan.entry(server.id)
                .or_insert_with(|| (server.clone(), Vec::new()))
                .1
                .push(StopEntry {
                    device_id,
                    epoch: bound,
                });
        }
    }
    for (server, stops, answer) in stop_on_servers(client, plan.into_values().collect()).await {
        match answer {
            Ok(results) => {
                for result in results {
                    let entry = found.entry(result.device_id).or_default();
                    match result.outcome {
                        StopOutcome::Stopped => entry.stopped_on.push(server.id),
                        StopOutcome::NotRunning => {}
                        StopOutcome::KeptNewer => {
                            entry.newer = Some((server.id, result.epoch.unwrap_or(0)))
                        }
                        StopOutcome::Unknown => entry.problems.push(format!(
                            "server {} answered an outcome this version does not know",
                            server.id
                        )),
                    }
                }
            }
            Err(error) => {
                for stop in stops {
                    let entry = found.entry(stop.device_id).or_default();
                    entry
                        .problems
                        .push(format!("server {} is {error}", server.id));
                }
            }
        }
    }
    let superseded = release(db, &device_ids, &records, &found).await?;
    let mut results = Vec::with_capacity(device_ids.len());
    for device_id in device_ids {
        let entry = found.remove(&device_id).unwrap_or_default();
        let (owner, epoch) = record(device_id);
        let result = outcome(device_id, owner, epoch, entry, &superseded);
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

/// Releases each device whose copies are all down, by compare-and-set on the epoch the
/// stop read, one transaction per owning server. Answers the devices whose epoch had
/// moved on: another scheduler claimed them since.
async fn release(
    db: &Db,
    device_ids: &[i64],
    records: &HashMap<i64, (Option<i64>, i64)>,
    found: &HashMap<i64, Found>,
) -> Result<HashMap<i64, Option<i64>>, SchedulerError> {
    let mut by_owner: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for device_id in device_ids {
        let Some(&(Some(owner), epoch)) = records.get(device_id) else {
            continue;
        };
        if found
            .get(device_id)
            .is_some_and(|f| !f.problems.is_empty() || f.newer.is_some())
        {
            continue;
        }
        by_owner.entry(owner).or_default().push((*device_id, epoch));
    }
    let mut superseded = HashMap::new();
    for (owner, releases) in by_owner {
        let count = releases.len();
        let moved = db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let claims: Vec<db::claims::Claim> = releases
                        .iter()
                        .map(|&(device_id, epoch)| (device_id, Some(epoch), None))
                        .collect();
                    let released = db::claims::claim_many(conn, &claims)?;
                    let mut moved = Vec::new();
                    for ((device_id, _), epoch) in releases.into_iter().zip(released) {
                        if epoch.is_none() {
                            moved.push((device_id, db::assignments::get(conn, device_id)?));
                        }
                    }
                    Ok(moved)
                })
            })
            .await?;
        tracing::info!(
            server.id = owner,
            released = count - moved.len(),
            "releases recorded"
        );
        for (device_id, now) in moved {
            superseded.insert(device_id, now.and_then(|a| a.server_id));
        }
    }
    Ok(superseded)
}

fn outcome(
    device_id: i64,
    owner: Option<i64>,
    epoch: i64,
    found: Found,
    superseded: &HashMap<i64, Option<i64>>,
) -> StopResult {
    if !found.problems.is_empty() {
        return StopResult {
            device_id,
            status: StopStatus::Failed,
            server_id: owner,
            reason: Some(format!(
                "{}; it may still be monitored there",
                found.problems.join("; ")
            )),
        };
    }
    if let Some((server_id, newer)) = found.newer {
        tracing::info!(
            device.id = device_id,
            server.id = server_id,
            epoch,
            newer,
            "stop superseded by a newer start"
        );
        return StopResult {
            device_id,
            status: StopStatus::Superseded,
            server_id: Some(server_id),
            reason: Some(format!(
                "started again on server {server_id} (epoch {newer}) while this stop (epoch {epoch}) ran; that copy runs"
            )),
        };
    }
    if let Some(&holder) = superseded.get(&device_id) {
        return StopResult {
            device_id,
            status: StopStatus::Superseded,
            server_id: holder,
            reason: Some("placed again by another scheduler while this stop ran".into()),
        };
    }
    if found.stopped_on.len() > 1 {
        tracing::warn!(device.id = device_id, servers = ?found.stopped_on, "device ran on several servers; stopped every copy");
    }
    match found.stopped_on.first() {
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
