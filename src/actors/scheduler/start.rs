//! Start: one pass places every device asked for.
//!
//! 1. Every server is asked at once what it runs. A device that runs somewhere is kept
//!    where its ownership record says (extra copies are stopped); a copy the record
//!    does not name is stopped and the device placed afresh.
//! 2. The balancing method chooses a server for each device to place. Each choice is
//!    claimed in the database first, by a compare-and-set on the assignment's epoch,
//!    all of a round in one transaction: of two schedulers placing the same device at
//!    once, one claim wins and the other scheduler leaves the device alone.
//! 3. Each server gets its claimed devices in one batch call. Devices a server refused
//!    (at its limit, unreachable) go round again on the others, the claim moving on.
//! 4. A device no server took is released (its claim moves to no server): it stays
//!    wanted, and failover starts it once a server has room.
//!
//! A re-homing pass (failover) spreads the first polls over one poll interval and
//! records a `moved` event for each device it starts.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use diesel::RunQueryDsl;
use futures_util::future::join_all;
use serde::Serialize;

use super::balance::{BalanceMethod, Balancer, Candidate};
use super::error::{summary, SchedulerError};
use super::stop::stop_on_servers;
use crate::db::models::{
    Assignment, Device, MonitorServer, NewEvent, Node, EVENT_MOVED, EVENT_RESTARTED,
};
use crate::db::{self, Db};
use crate::domain::{DeviceSpec, LoadReport, MonitorConfig};
use crate::remote::wire::{BatchEntry, BatchOutcome, StartBatchRequest, StopEntry, StopOutcome};
use crate::remote::{MonitorServerClient, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartStatus {
    Started,
    AlreadyRunning,
    /// A stop that came after this start was asked for won: the device is not wanted
    /// any more, and this pass left it alone.
    Superseded,
    Failed,
}

/// Why a pass starts devices: what it records and where it prefers to place them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    /// Someone asked (the API): the devices are wanted from now on.
    Asked,
    /// Their server left the cluster, or is leaving, or none had room: failover.
    /// Only devices still wanted are started, each with a `moved` event.
    Rehome,
    /// Their server is a member but does not run them: reconciliation. Each goes back
    /// to its server while it has room (a `restarted` event), else elsewhere (`moved`).
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StartResult {
    pub device_id: i64,
    pub status: StartStatus,
    pub server_id: Option<i64>,
    pub reason: Option<String>,
}

/// `started K of N monitors`, with one result per device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StartReport {
    pub requested: usize,
    pub started: usize,
    pub already_running: usize,
    pub superseded: usize,
    pub failed: usize,
    pub message: String,
    pub results: Vec<StartResult>,
}

impl StartReport {
    fn new(results: Vec<StartResult>) -> Self {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (started, already_running, superseded, failed) = (
            count(StartStatus::Started),
            count(StartStatus::AlreadyRunning),
            count(StartStatus::Superseded),
            count(StartStatus::Failed),
        );
        let requested = results.len();
        let message = summary(
            "started",
            started,
            requested,
            &[
                (already_running, "already running"),
                (superseded, "stopped meanwhile"),
                (failed, "failed"),
            ],
        );
        StartReport {
            requested,
            started,
            already_running,
            superseded,
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

/// A claim this recent, for a server that does not run the device yet, is a start in
/// flight (a start call waits 5 s at most for its answer).
pub(super) const START_IN_FLIGHT: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// How long a failover or reconciliation pass waits for a server to tell what it runs.
pub(super) const MENDING_INFO_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Largest batch body sent to a monitor server, under its 64 KiB JSON limit.
const MAX_BATCH_BYTES: usize = 48 * 1024;

/// What a pass reads from the database before it asks the servers.
struct Stored {
    devices: HashMap<i64, Device>,
    companies: HashMap<i64, String>,
    /// Read before the servers are asked what they run: a claim moves on from these
    /// epochs, so one made by another scheduler since fails and is left to it.
    assignments: HashMap<i64, Assignment>,
    servers: Vec<MonitorServer>,
    config: crate::db::models::ConfigRow,
    reports: HashMap<i64, LoadReport>,
}

async fn read(db: &Db, device_ids: &[i64], asked: bool) -> Result<Stored, SchedulerError> {
    let ids = device_ids.to_vec();
    let stored = db
        .run(move |conn| {
            if asked {
                // Wanted from now on, whatever this pass manages: failover keeps it so.
                db::devices::set_wanted(conn, &ids, true)?;
            }
            let devices = db::devices::of_ids(conn, &ids)?;
            let mut company_ids: Vec<i64> = devices.iter().map(|d| d.company_id).collect();
            company_ids.sort_unstable();
            company_ids.dedup();
            Ok(Stored {
                companies: db::companies::names_of(conn, &company_ids)?,
                devices: devices.into_iter().map(|d| (d.id, d)).collect(),
                assignments: by_device(db::assignments::of_devices(conn, &ids)?),
                servers: db::monitor_servers::list(conn)?,
                config: db::config::get(conn)?,
                reports: reports_by_server(db::nodes::list(conn)?),
            })
        })
        .await?;
    Ok(stored)
}

fn by_device(assignments: Vec<Assignment>) -> HashMap<i64, Assignment> {
    assignments.into_iter().map(|a| (a.device_id, a)).collect()
}

/// The last load report of each monitor server's node.
fn reports_by_server(nodes: Vec<Node>) -> HashMap<i64, LoadReport> {
    nodes
        .into_iter()
        .filter_map(|n| {
            Some((
                n.server_id?,
                LoadReport {
                    memory_bytes: n.memory_bytes?,
                    cpu_percent: n.cpu_percent?,
                    threads: n.threads?,
                },
            ))
        })
        .collect()
}

/// A device this pass places.
struct Placing {
    /// Its position among the devices asked for.
    index: usize,
    spec: DeviceSpec,
    /// Its assignment's epoch as this pass last knew it (`None`: it has none).
    epoch: Option<i64>,
    /// The server its record named when the pass began.
    from: Option<i64>,
    first_poll_after: Duration,
}

pub(super) async fn start_devices(
    db: &Db,
    client: &MonitorServerClient,
    device_ids: Vec<i64>,
    reason: StartReason,
) -> Result<StartReport, SchedulerError> {
    let stored = read(db, &device_ids, reason == StartReason::Asked).await?;
    // Mending passes do not wait long on a server that hangs: they run while something
    // is already wrong, and what they place should not wait for it.
    let snapshot = match reason {
        StartReason::Asked => Snapshot::take(client, stored.servers.clone()).await,
        _ => Snapshot::take_within(client, stored.servers.clone(), MENDING_INFO_WITHIN).await,
    };
    // Read after the servers were asked: a copy they showed was claimed before it was
    // started, so the owner read now tells the copy to keep. `now` is the database's
    // time of this read.
    let ids = device_ids.clone();
    let (recorded, now) = db
        .run(move |conn| {
            let now = diesel::select(diesel::dsl::now).get_result::<NaiveDateTime>(conn)?;
            Ok((db::assignments::of_devices(conn, &ids)?, now))
        })
        .await?;
    let recorded = by_device(recorded);
    let method =
        BalanceMethod::parse(&stored.config.balance_method).unwrap_or(BalanceMethod::RoundRobin);
    let limit = usize::try_from(stored.config.max_monitors_per_server).unwrap_or(0);
    let candidates = snapshot
        .servers
        .iter()
        .map(|s| {
            let info = snapshot.info(s.id).and_then(|i| i.as_ref().ok());
            Candidate {
                server_id: s.id,
                up: info.is_some(),
                running: info.map_or(0, |i| i.running_monitors),
                limit,
                report: stored.reports.get(&s.id).copied(),
            }
        })
        .collect();
    let (balancer, fallback) =
        Balancer::new(method, candidates, stored.config.monitor_server_current);
    if let Some(why) = fallback {
        tracing::warn!("{why}");
    }
    let mut pass = StartPass {
        db,
        client,
        snapshot,
        balancer,
        config: stored.config.monitor_config(),
        results: vec![None; device_ids.len()],
        problems: HashMap::new(),
        moves: Vec::new(),
        reason,
        spread_from: Instant::now(),
    };
    tracing::info!(
        devices = device_ids.len(),
        servers = pass.snapshot.servers.len(),
        method = pass.balancer.method().as_str(),
        reason = ?reason,
        "start pass begins"
    );
    let mut placing = Vec::new();
    // Copies the record does not name, to stop before placing: `(server, stop)`.
    let mut extras: BTreeMap<i64, (MonitorServer, Vec<StopEntry>)> = BTreeMap::new();
    for (index, &device_id) in device_ids.iter().enumerate() {
        let device = stored.devices.get(&device_id);
        let company = device
            .and_then(|d| stored.companies.get(&d.company_id))
            .map_or("", String::as_str);
        let assignment = stored.assignments.get(&device_id);
        let recorded = recorded.get(&device_id);
        if reason != StartReason::Asked && device.is_some_and(|d| !d.monitoring_wanted) {
            pass.results[index] = Some(stopped_meanwhile(device_id));
            continue;
        }
        if let Some(result) = pass.starting_elsewhere(device_id, recorded, now) {
            pass.results[index] = Some(result);
            continue;
        }
        let owner = recorded.and_then(|a| a.server_id);
        let epoch = recorded.map_or(0, |a| a.epoch);
        match pass.check(device_id, device, company, owner, epoch, &mut extras) {
            Ok(spec) => placing.push(Placing {
                index,
                spec,
                epoch: assignment.map(|a| a.epoch),
                from: assignment.and_then(|a| a.server_id),
                first_poll_after: Duration::ZERO,
            }),
            Err(result) => pass.results[index] = Some(result),
        }
    }
    pass.stop_copies(extras).await;
    if !placing.is_empty() {
        // First polls spread over one poll interval, so a company start or a server's
        // devices coming back do not all poll in the same instant, and later polls keep
        // that spread. A device started alone polls at once.
        let interval = pass.config.poll_interval_ms;
        let count = placing.len() as u64;
        pass.spread_from = Instant::now();
        for (n, p) in placing.iter_mut().enumerate() {
            p.first_poll_after = Duration::from_millis(interval * n as u64 / count);
        }
    }
    pass.place(placing).await?;
    pass.record_moves().await;
    let results = pass
        .results
        .into_iter()
        .zip(&device_ids)
        .map(|(result, &id)| result.unwrap_or_else(|| failed(id, "no result".into())))
        .collect();
    let report = StartReport::new(results);
    tracing::info!(message = %report.message, "start pass done");
    Ok(report)
}

/// One start pass: what the servers looked like at its beginning, and what it learnt since.
struct StartPass<'a> {
    db: &'a Db,
    client: &'a MonitorServerClient,
    snapshot: Snapshot,
    balancer: Balancer,
    config: MonitorConfig,
    /// One per device asked for, in order.
    results: Vec<Option<StartResult>>,
    /// Why servers could not take monitors in this pass.
    problems: HashMap<i64, String>,
    /// Devices started by a re-homing or restarting pass, for their events.
    moves: Vec<NewEvent>,
    reason: StartReason,
    /// When the first polls were spread: every batch's delays count from here.
    spread_from: Instant,
}

impl StartPass<'_> {
    /// A device claimed for a server that is up, moments ago, that the server does not
    /// run yet: another scheduler is starting it there. It is left to that scheduler.
    fn starting_elsewhere(
        &self,
        device_id: i64,
        recorded: Option<&Assignment>,
        now: NaiveDateTime,
    ) -> Option<StartResult> {
        let assignment = recorded?;
        let server_id = assignment.server_id?;
        let in_flight = now.signed_duration_since(assignment.updated_at) < START_IN_FLIGHT
            && self.snapshot.down_reason(server_id).is_none()
            && self.snapshot.holders(device_id).is_empty();
        in_flight.then(|| StartResult {
            device_id,
            status: StartStatus::AlreadyRunning,
            server_id: Some(server_id),
            reason: Some(format!(
                "being started on server {server_id} by another scheduler"
            )),
        })
    }

    /// The device's spec when it is to be placed, or its result when it is not: it does
    /// not exist, is disabled, or runs already. Copies the record (owner `owner`, epoch
    /// `epoch`) does not name go into `extras`, to be stopped.
    fn check(
        &self,
        device_id: i64,
        device: Option<&Device>,
        company: &str,
        owner: Option<i64>,
        epoch: i64,
        extras: &mut BTreeMap<i64, (MonitorServer, Vec<StopEntry>)>,
    ) -> Result<DeviceSpec, StartResult> {
        let Some(device) = device else {
            return Err(failed(
                device_id,
                format!("device {device_id} does not exist"),
            ));
        };
        if !device.enabled {
            return Err(failed(device_id, format!("device {device_id} is disabled")));
        }
        let spec = device
            .spec(company)
            .map_err(|e| failed(device_id, e.to_string()))?;
        let copies = self.snapshot.copies(device_id);
        if copies.is_empty() {
            return Ok(spec);
        }
        let keeper = copies
            .iter()
            .find(|(s, _)| Some(s.id) == owner)
            .map(|(s, _)| s.id);
        // Copies the record does not name write nothing (their epoch is not the
        // device's): stop them, and place the device afresh if none is the owner. The
        // record was read after the servers were asked, so no claim is newer than
        // these copies: each is stopped under its own epoch.
        for (extra, copy) in copies.into_iter().filter(|(s, _)| Some(s.id) != keeper) {
            tracing::warn!(
                device.id = device_id,
                server.id = extra.id,
                owner,
                "stopping a copy the ownership record does not name"
            );
            extras
                .entry(extra.id)
                .or_insert_with(|| (extra.clone(), Vec::new()))
                .1
                .push(StopEntry {
                    device_id,
                    epoch: copy.unwrap_or(epoch).max(epoch),
                });
        }
        match keeper {
            Some(server_id) => Err(StartResult {
                device_id,
                status: StartStatus::AlreadyRunning,
                server_id: Some(server_id),
                reason: None,
            }),
            None => Ok(spec),
        }
    }

    /// Stops copies found where they should not run, one batch per server.
    async fn stop_copies(&self, copies: BTreeMap<i64, (MonitorServer, Vec<StopEntry>)>) {
        if copies.is_empty() {
            return;
        }
        for (server, _, answer) in
            stop_on_servers(self.client, copies.into_values().collect()).await
        {
            if let Ok(results) = answer {
                for kept in results
                    .iter()
                    .filter(|r| r.outcome == StopOutcome::KeptNewer)
                {
                    tracing::info!(
                        device.id = kept.device_id,
                        server.id = server.id,
                        epoch = kept.epoch,
                        "kept a copy under a newer epoch than this pass read"
                    );
                }
            }
        }
    }

    /// Places `placing` in rounds until every device is started or no server is left.
    async fn place(&mut self, mut placing: Vec<Placing>) -> Result<(), SchedulerError> {
        let mut round = 0;
        // Each round either places a device or takes a server out of the pass; an
        // answer that fits neither cannot keep it going past this.
        let max_rounds = self.snapshot.servers.len() + 2;
        while !placing.is_empty() {
            round += 1;
            let mut chosen: Vec<(Placing, i64)> = Vec::with_capacity(placing.len());
            let mut unplaced = Vec::new();
            for p in placing {
                let choice = match (self.reason, p.from) {
                    (StartReason::Restart, Some(owner)) => self.balancer.choose_preferring(owner),
                    _ => self.balancer.choose(),
                };
                match choice.filter(|_| round <= max_rounds) {
                    Some(server_id) => chosen.push((p, server_id)),
                    None => unplaced.push(p),
                }
            }
            let claimed = self.claim(chosen).await?;
            tracing::info!(
                round,
                claimed = claimed.len(),
                unplaced = unplaced.len(),
                "start pass round"
            );
            let again = self.start_on_servers(claimed).await;
            self.give_up(unplaced).await?;
            placing = again;
        }
        Ok(())
    }

    /// Claims each device for its chosen server, all in one transaction, and moves the
    /// rotating index on. A device claimed by someone else meanwhile is left to them.
    async fn claim(
        &mut self,
        chosen: Vec<(Placing, i64)>,
    ) -> Result<Vec<(Placing, i64)>, SchedulerError> {
        if chosen.is_empty() {
            return Ok(chosen);
        }
        let wanted: Vec<(i64, Option<i64>, i64)> = chosen
            .iter()
            .map(|(p, server)| (p.spec.id, p.epoch, *server))
            .collect();
        let rotation = self.balancer.rotation();
        let outcomes =
            self.db
                .run(move |conn| {
                    db::write_transaction(conn, |conn| {
                        // Locked until the claims commit: a stop of these devices either
                        // came first (and they are skipped) or waits and then sees them.
                        let ids: Vec<i64> = wanted.iter().map(|(id, _, _)| *id).collect();
                        let still_wanted = db::devices::lock_wanted(conn, &ids)?;
                        let claims: Vec<db::claims::Claim> = wanted
                            .iter()
                            .filter(|(device_id, _, _)| still_wanted.contains(device_id))
                            .map(|&(device_id, expected, server_id)| {
                                (device_id, expected, Some(server_id))
                            })
                            .collect();
                        let mut epochs = db::claims::claim_many(conn, &claims)?.into_iter();
                        let mut outcomes = Vec::with_capacity(wanted.len());
                        for (device_id, _, _) in wanted {
                            if !still_wanted.contains(&device_id) {
                                outcomes.push(Claimed::NotWanted);
                                continue;
                            }
                            match epochs.next().flatten() {
                                Some(epoch) => outcomes.push(Claimed::Won(epoch)),
                                None => outcomes
                                    .push(Claimed::Lost(db::assignments::get(conn, device_id)?)),
                            }
                        }
                        db::config::advance_rotation(conn, rotation)?;
                        Ok(outcomes)
                    })
                })
                .await?;
        let mut claimed = Vec::with_capacity(chosen.len());
        for ((mut p, server_id), outcome) in chosen.into_iter().zip(outcomes) {
            match outcome {
                Claimed::Won(epoch) => {
                    p.epoch = Some(epoch);
                    claimed.push((p, server_id));
                }
                Claimed::NotWanted => {
                    self.balancer.take_back(server_id);
                    tracing::info!(
                        device.id = p.spec.id,
                        "stopped by a later request before it was placed; leaving it stopped"
                    );
                    self.results[p.index] = Some(stopped_meanwhile(p.spec.id));
                }
                Claimed::Lost(now) => {
                    self.balancer.take_back(server_id);
                    let holder = now.and_then(|a| a.server_id);
                    tracing::info!(
                        device.id = p.spec.id,
                        server.id = holder,
                        "another scheduler placed this device meanwhile; leaving it to them"
                    );
                    self.results[p.index] = Some(StartResult {
                        device_id: p.spec.id,
                        status: StartStatus::AlreadyRunning,
                        server_id: holder,
                        reason: Some("placed by another scheduler at the same moment".into()),
                    });
                }
            }
        }
        Ok(claimed)
    }

    /// Sends each server its claimed devices in batches, all servers at once. Answers
    /// the devices to place again elsewhere.
    async fn start_on_servers(&mut self, claimed: Vec<(Placing, i64)>) -> Vec<Placing> {
        let mut by_server: Vec<(MonitorServer, Vec<Placing>)> = Vec::new();
        for (p, server_id) in claimed {
            match by_server.iter_mut().find(|(s, _)| s.id == server_id) {
                Some((_, devices)) => devices.push(p),
                None => {
                    let Some(server) = self.snapshot.servers.iter().find(|s| s.id == server_id)
                    else {
                        continue;
                    };
                    by_server.push((server.clone(), vec![p]));
                }
            }
        }
        let config = self.config;
        let client = self.client;
        let spread_from = self.spread_from;
        let answers = join_all(by_server.iter().map(|(server, devices)| async move {
            let mut outcomes = Vec::with_capacity(devices.len());
            for mut batch in batches(devices, config) {
                let elapsed = u64::try_from(spread_from.elapsed().as_millis()).unwrap_or(u64::MAX);
                for entry in &mut batch.monitors {
                    entry.first_poll_after_ms =
                        delay_from_now(entry.first_poll_after_ms, elapsed, config.poll_interval_ms);
                }
                match client.start_batch(server, &batch).await {
                    Ok(answer) => outcomes.extend(answer.into_iter().map(Ok)),
                    Err(error) => {
                        outcomes.extend(batch.monitors.iter().map(|_| Err(error.to_string())))
                    }
                }
            }
            outcomes
        }))
        .await;
        let mut again = Vec::new();
        let mut unexpected: BTreeMap<i64, (MonitorServer, Vec<StopEntry>)> = BTreeMap::new();
        for ((server, devices), outcomes) in by_server.into_iter().zip(answers) {
            let mut refused = 0;
            let mut problem = None;
            for (p, outcome) in devices.into_iter().zip(outcomes) {
                match outcome {
                    Ok(BatchOutcome::Started) => self.started(p, server.id),
                    Ok(BatchOutcome::AlreadyRunning) => {
                        // A copy the snapshot did not show, under an older epoch than
                        // this claim: stop it and place the device again.
                        let claimed = p.epoch.unwrap_or(1);
                        unexpected
                            .entry(server.id)
                            .or_insert_with(|| (server.clone(), Vec::new()))
                            .1
                            .push(StopEntry {
                                device_id: p.spec.id,
                                epoch: claimed - 1,
                            });
                        self.balancer.take_back(server.id);
                        again.push(p);
                    }
                    Ok(BatchOutcome::Unknown) => {
                        refused += 1;
                        problem = Some(format!(
                            "server {} answered an outcome this version does not know",
                            server.id
                        ));
                        again.push(p);
                    }
                    Ok(BatchOutcome::AtLimit) => {
                        refused += 1;
                        problem = Some(format!("server {} refused: it is at its limit", server.id));
                        again.push(p);
                    }
                    Err(error) => {
                        refused += 1;
                        problem = Some(format!("server {} is {error}", server.id));
                        again.push(p);
                    }
                }
            }
            if let Some(problem) = problem {
                tracing::warn!(server.id = server.id, %problem, "server takes no more monitors in this pass");
                self.balancer.refuse(server.id, refused);
                self.problems.insert(server.id, problem);
            }
        }
        self.stop_copies(unexpected).await;
        again
    }

    fn started(&mut self, p: Placing, server_id: i64) {
        let epoch = p.epoch.unwrap_or(1);
        let event = match (self.reason, p.from) {
            (StartReason::Asked, _) => None,
            (StartReason::Restart, Some(from)) if from == server_id => Some((
                EVENT_RESTARTED,
                format!("server {from} did not run it; started again there"),
            )),
            (StartReason::Restart, Some(from)) => Some((
                EVENT_MOVED,
                format!("server {from} did not run it and had no room for it"),
            )),
            (_, Some(from)) if from != server_id => {
                Some((EVENT_MOVED, format!("server {from} left the cluster")))
            }
            (_, Some(_)) => Some((EVENT_RESTARTED, "restarted on the same server".to_string())),
            (_, None) => Some((EVENT_MOVED, "it was waiting for a server".to_string())),
        };
        if let Some((kind, reason)) = event {
            self.moves.push(NewEvent {
                device_id: p.spec.id,
                company_id: p.spec.company_id,
                epoch,
                from_state: p.from.map_or("none".into(), |s| format!("server {s}")),
                to_state: format!("server {server_id}"),
                at: Utc::now().naive_utc(),
                reason,
                kind,
            });
        }
        self.results[p.index] = Some(StartResult {
            device_id: p.spec.id,
            status: StartStatus::Started,
            server_id: Some(server_id),
            reason: None,
        });
    }

    /// No server took these: each fails with the reasons, and a claim it holds moves on
    /// to no server, so the device waits for failover to find it a server.
    async fn give_up(&mut self, unplaced: Vec<Placing>) -> Result<(), SchedulerError> {
        if unplaced.is_empty() {
            return Ok(());
        }
        let reason = self.no_server_reason();
        let claims: Vec<db::claims::Claim> = unplaced
            .iter()
            .filter_map(|p| Some((p.spec.id, Some(p.epoch?), None)))
            .collect();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| db::claims::claim_many(conn, &claims))
            })
            .await?;
        for p in unplaced {
            tracing::warn!(device.id = p.spec.id, %reason, "could not start monitor");
            self.results[p.index] = Some(failed(p.spec.id, reason.clone()));
        }
        Ok(())
    }

    async fn record_moves(&mut self) {
        if self.moves.is_empty() {
            return;
        }
        let moves = std::mem::take(&mut self.moves);
        let count = moves.len();
        if let Err(error) = self
            .db
            .run(move |conn| db::events::record_moves(conn, &moves))
            .await
        {
            tracing::error!(%error, count, "could not record the moves and restarts of this pass");
        }
    }

    fn no_server_reason(&self) -> String {
        if self.snapshot.servers.is_empty() {
            return "no monitor server is registered".into();
        }
        let reasons: Vec<String> = self
            .snapshot
            .servers
            .iter()
            .map(
                |s| match (self.problems.get(&s.id), self.snapshot.down_reason(s.id)) {
                    (Some(problem), _) => problem.clone(),
                    (None, Some(down)) => format!("server {} is {down}", s.id),
                    (None, None) => format!("server {} is at its limit", s.id),
                },
            )
            .collect();
        format!("no monitor server could take it: {}", reasons.join("; "))
    }
}

/// A first poll due `offset` ms after the pass spread its devices, as a delay from a
/// moment `elapsed` ms after that: the rest of the wait while it is ahead; once past
/// (a large pass sends its later batches seconds after its first), the same place in
/// the next interval. Every batch of a pass keeps the one spread this way, where
/// counting each batch's delays from its own arrival would shift the later batches and
/// pile their ends onto the first's beginning. A zero offset (a device started alone)
/// stays "at once".
fn delay_from_now(offset: u64, elapsed: u64, interval: u64) -> u64 {
    if offset == 0 || offset >= elapsed {
        return offset.saturating_sub(elapsed);
    }
    if interval == 0 {
        return 0;
    }
    interval - (elapsed - offset) % interval
}

/// The batch requests that start `devices` on one server, each under the body limit.
fn batches(devices: &[Placing], config: MonitorConfig) -> Vec<StartBatchRequest> {
    let mut batches = Vec::new();
    let mut current = StartBatchRequest {
        config,
        monitors: Vec::new(),
    };
    let mut bytes = 0;
    for p in devices {
        let entry = BatchEntry {
            device: p.spec.clone(),
            epoch: p.epoch.unwrap_or(1),
            first_poll_after_ms: u64::try_from(p.first_poll_after.as_millis()).unwrap_or(u64::MAX),
        };
        let size = serde_json::to_vec(&entry).map_or(MAX_BATCH_BYTES, |b| b.len() + 1);
        if !current.monitors.is_empty() && bytes + size > MAX_BATCH_BYTES {
            batches.push(std::mem::replace(
                &mut current,
                StartBatchRequest {
                    config,
                    monitors: Vec::new(),
                },
            ));
            bytes = 0;
        }
        bytes += size;
        current.monitors.push(entry);
    }
    if !current.monitors.is_empty() {
        batches.push(current);
    }
    batches
}

/// What a claim in a pass's transaction came to.
enum Claimed {
    Won(i64),
    /// Someone else changed the owner first: the assignment as it is now.
    Lost(Option<Assignment>),
    /// A stop asked for since: the device is not wanted any more.
    NotWanted,
}

fn stopped_meanwhile(device_id: i64) -> StartResult {
    StartResult {
        device_id,
        status: StartStatus::Superseded,
        server_id: None,
        reason: Some("stopped by a later request while this start ran".into()),
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
    use super::delay_from_now;

    #[test]
    fn a_batch_sent_late_keeps_the_passs_spread() {
        // Ahead: the rest of the wait.
        assert_eq!(delay_from_now(30_000, 2_000, 60_000), 28_000);
        assert_eq!(delay_from_now(2_000, 2_000, 60_000), 0);
        // Past: the same place in the next interval, not at once.
        assert_eq!(delay_from_now(1_000, 2_500, 60_000), 58_500);
        assert_eq!(delay_from_now(1_000, 121_500, 60_000), 59_500);
        // Alone: at once.
        assert_eq!(delay_from_now(0, 2_500, 60_000), 0);
        assert_eq!(delay_from_now(1_000, 2_500, 0), 0);
    }
}
