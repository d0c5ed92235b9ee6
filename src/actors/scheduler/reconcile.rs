//! Reconcile: what the assignments of the live servers say, held against what each of
//! those servers runs (device ids with their epochs), and the difference mended.
//!
//! - A device that is wanted and enabled, assigned to a member server that answered
//!   and does not run it under the assignment's epoch, whose claim is older than the
//!   in-flight window (a start of another scheduler may still be on its way), is
//!   started again: on its server while that has room (a `restarted` event), else
//!   placed afresh (`moved`).
//! - A copy running where its assignment does not name it, or under an older epoch
//!   than the assignment's, is stopped under its own epoch (a newer copy placed since
//!   is kept by the server). So is a copy of a device that no longer exists.
//! - A copy of a device that is not wanted any more (stopped, disabled) but runs where
//!   its record says is stopped when two passes in a row saw it so: a stop of another
//!   scheduler may be on its way to it.
//!
//! Devices whose server left the cluster are failover's (`actors::reconciler`), and
//! a member server that does not answer within a second is left out of the pass: its
//! devices are neither restarted elsewhere nor stopped until it is judged dead (or
//! leaves, its supervisor hung) or answers again. The pass holds the scheduler, so it
//! never waits long on one server.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::RunQueryDsl;

use super::error::SchedulerError;
use super::start::{start_devices, StartReason, StartReport, MENDING_INFO_WITHIN, START_IN_FLIGHT};
use super::stop::stop_on_servers;
use crate::db::assignments::Record;
use crate::db::models::MonitorServer;
use crate::db::{self, Db};
use crate::remote::wire::{StopEntry, StopOutcome};
use crate::remote::{MonitorServerClient, Snapshot};

/// A copy seen running: `(server, device, epoch)`.
pub type Copy = (i64, i64, i64);

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Copies stopped: `(server, device, epoch)`.
    pub stopped: Vec<Copy>,
    /// The pass that started devices again, when there were any.
    pub started: Option<StartReport>,
    /// Copies of devices not wanted any more seen at this pass, stopped when the next
    /// pass sees them still.
    pub unwanted: HashSet<Copy>,
}

pub(super) async fn reconcile(
    db: &Db,
    client: &MonitorServerClient,
    unwanted_before: HashSet<Copy>,
) -> Result<ReconcileReport, SchedulerError> {
    let (servers, members) = db
        .run(|conn| {
            let members: HashSet<i64> = db::nodes::list(conn)?
                .into_iter()
                .filter_map(|n| n.server_id)
                .collect();
            Ok((db::monitor_servers::list(conn)?, members))
        })
        .await?;
    let servers: Vec<MonitorServer> = servers
        .into_iter()
        .filter(|s| members.contains(&s.id))
        .collect();
    let snapshot = Snapshot::take_within(client, servers, MENDING_INFO_WITHIN).await;
    let mut running: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    let mut answered = Vec::new();
    for server in &snapshot.servers {
        let Some(Ok(info)) = snapshot.info(server.id) else {
            continue;
        };
        let Some(monitors) = &info.monitors else {
            // Too old to tell epochs: nothing can be judged on it.
            continue;
        };
        answered.push(server.id);
        for m in monitors {
            running
                .entry(server.id)
                .or_default()
                .push((m.device_id, m.epoch));
        }
    }
    // Read after the servers were asked: every copy they showed was claimed before it
    // started, so no record read now is older than a copy it backs.
    let held: Vec<i64> = running.values().flatten().map(|(d, _)| *d).collect();
    let on = answered.clone();
    let (records, now) = db
        .run(move |conn| {
            let mut records = db::assignments::records_on(conn, &on)?;
            let known: HashSet<i64> = records.iter().map(|r| r.device_id).collect();
            let others: Vec<i64> = held.into_iter().filter(|d| !known.contains(d)).collect();
            records.extend(db::assignments::records_of(conn, &others)?);
            let now = diesel::select(diesel::dsl::now).get_result::<NaiveDateTime>(conn)?;
            Ok((records, now))
        })
        .await?;
    let records: HashMap<i64, Record> = records.into_iter().map(|r| (r.device_id, r)).collect();

    let mut report = ReconcileReport::default();
    let mut stops: BTreeMap<i64, Vec<StopEntry>> = BTreeMap::new();
    for (&server_id, copies) in &running {
        for &(device_id, epoch) in copies {
            let record = records.get(&device_id);
            let named = record.is_some_and(|r| r.server_id == Some(server_id) && r.epoch == epoch);
            let stop = match record {
                _ if !named => {
                    tracing::warn!(
                        device.id = device_id,
                        server.id = server_id,
                        epoch,
                        recorded_server = record.and_then(|r| r.server_id),
                        recorded_epoch = record.map(|r| r.epoch),
                        "reconcile: stopping a copy its record does not name"
                    );
                    true
                }
                Some(r) if !(r.wanted && r.enabled) => {
                    let copy = (server_id, device_id, epoch);
                    report.unwanted.insert(copy);
                    let again = unwanted_before.contains(&copy);
                    if again {
                        tracing::warn!(
                            device.id = device_id,
                            server.id = server_id,
                            epoch,
                            "reconcile: stopping a copy of a device that is not wanted any more"
                        );
                    }
                    again
                }
                _ => false,
            };
            if stop {
                stops
                    .entry(server_id)
                    .or_default()
                    .push(StopEntry { device_id, epoch });
            }
        }
    }
    let plan: Vec<(MonitorServer, Vec<StopEntry>)> = stops
        .into_iter()
        .filter_map(|(id, entries)| {
            let server = snapshot.servers.iter().find(|s| s.id == id)?.clone();
            Some((server, entries))
        })
        .collect();
    for (server, _, answer) in stop_on_servers(client, plan).await {
        for result in answer.into_iter().flatten() {
            if result.outcome == StopOutcome::Stopped {
                let epoch = result.epoch.unwrap_or(0);
                tracing::info!(
                    device.id = result.device_id,
                    server.id = server.id,
                    epoch,
                    "reconcile: copy stopped"
                );
                report.stopped.push((server.id, result.device_id, epoch));
            }
        }
    }

    let runs = |server_id: i64, device_id: i64, epoch: i64| {
        running
            .get(&server_id)
            .is_some_and(|copies| copies.contains(&(device_id, epoch)))
    };
    let mut restart: Vec<i64> = records
        .values()
        .filter(|r| r.wanted && r.enabled)
        .filter_map(|r| Some((r, r.server_id?)))
        .filter(|(r, server_id)| {
            answered.contains(server_id)
                && !runs(*server_id, r.device_id, r.epoch)
                && now.signed_duration_since(r.updated_at) >= START_IN_FLIGHT
        })
        .map(|(r, server_id)| {
            tracing::warn!(
                device.id = r.device_id,
                server.id = server_id,
                epoch = r.epoch,
                "reconcile: its server does not run it; starting it again"
            );
            r.device_id
        })
        .collect();
    restart.sort_unstable();
    if !restart.is_empty() {
        report.started = Some(start_devices(db, client, restart, StartReason::Restart).await?);
    }
    Ok(report)
}
