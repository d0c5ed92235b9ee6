//! `MonitorServerActor`: the supervisor of one monitor server's `DeviceMonitor`s, keyed
//! by device id. It enforces `max_monitors_per_server`, forwards config to every
//! monitor and device changes to the one that watches the device, answers info, and
//! restarts a monitor that fails or panics.
//!
//! A monitor reports its own end (`MonitorExited`, sent from `stopped`). actix runs
//! `stopped` even when the actor's future is dropped after a panic, so every death is
//! reported; one that the supervisor did not ask for is restarted with a backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use futures_util::future::join_all;

use super::device_monitor::{self, DeviceMonitor, GetStatus, MonitorSpec, Reporting, StopPolling};
use super::messages::{Fence, MonitorExited, Ping, StaleMonitors, UpdateConfig, UpdateDevice};
use super::registry::{ActorRegistry, ActorStats, Tracked, TrackedRecipient};
use crate::domain::{DeviceSpec, HealthState, MonitorConfig, MonitorStatus};
use crate::probe::ProbeFactory;
use crate::remote::wire::{RunningMonitor, ServerInfo};

/// The kind under which the supervisor appears in the actor registry.
pub const KIND: &str = "MonitorServerActor";

/// Restart delays double from this after each failure in a row...
const RESTART_BACKOFF_BASE: Duration = Duration::from_millis(50);
/// ...up to this.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A monitor that ran this long before failing starts its backoff afresh.
const STABLE_AFTER: Duration = Duration::from_secs(60);

pub struct MonitorServerActor {
    server_id: i64,
    config: MonitorConfig,
    monitors: HashMap<i64, Child>,
    probes: ProbeFactory,
    reporting: Reporting,
    registry: ActorRegistry,
    stats: Arc<ActorStats>,
    /// Where each monitor reports its exit: this actor, as its monitors know it.
    myself: Option<TrackedRecipient<MonitorExited>>,
    next_generation: u64,
    /// The threads monitors run on, dealt out in turn so polling uses every core;
    /// empty: monitors run on the supervisor's own thread.
    poll_threads: Vec<ArbiterHandle>,
    next_poll_thread: usize,
}

/// A supervised monitor and what it takes to start it again.
struct Child {
    spec: MonitorSpec,
    /// `None` while a restart is pending.
    monitor: Option<Tracked<DeviceMonitor>>,
    incarnation_started: Instant,
    /// Failures since the monitor last ran for `STABLE_AFTER`.
    failures_in_a_row: u32,
    stats: Arc<ActorStats>,
}

impl Child {
    /// What to report for a monitor that is being restarted and cannot answer.
    fn pending_status(&self) -> MonitorStatus {
        self.spec.status(HealthState::Pending, None, 0, 0)
    }

    async fn status(
        monitor: Option<Tracked<DeviceMonitor>>,
        pending: MonitorStatus,
    ) -> MonitorStatus {
        match monitor {
            Some(monitor) => monitor.send(GetStatus).await.unwrap_or(pending),
            None => pending,
        }
    }
}

impl MonitorServerActor {
    pub fn new(
        server_id: i64,
        config: MonitorConfig,
        probes: ProbeFactory,
        registry: ActorRegistry,
    ) -> Self {
        let stats = registry.register(KIND, server_id.to_string());
        MonitorServerActor {
            server_id,
            config,
            monitors: HashMap::new(),
            probes,
            reporting: Reporting::default(),
            registry,
            stats,
            myself: None,
            next_generation: 0,
            poll_threads: Vec::new(),
            next_poll_thread: 0,
        }
    }

    /// Runs the monitors on `threads`, one after the other in turn, instead of on the
    /// supervisor's thread. A ping is answered only once every one of them has taken
    /// it, so a poll thread that blocks makes the server look hung, as a blocked
    /// supervisor does.
    pub fn with_poll_threads(mut self, threads: Vec<ArbiterHandle>) -> Self {
        self.poll_threads = threads;
        self
    }

    /// The thread the next monitor starts on, `None` for the supervisor's own.
    fn poll_thread(&mut self) -> Option<ArbiterHandle> {
        let count = self.poll_threads.len();
        if count == 0 {
            return None;
        }
        self.next_poll_thread = (self.next_poll_thread + 1) % count;
        self.poll_threads.get(self.next_poll_thread).cloned()
    }

    /// Sends the monitors' samples and state changes to `reporting`'s writer and counts
    /// their polls there (by default nothing is stored).
    pub fn with_reporting(mut self, reporting: Reporting) -> Self {
        self.reporting = reporting;
        self
    }

    /// Starts the actor on the current arbiter and returns its tracked address.
    pub fn launch(self) -> Tracked<MonitorServerActor> {
        let stats = Arc::clone(&self.stats);
        Tracked::new(self.start(), stats)
    }

    /// Starts the actor, and with it every monitor it starts, on `arbiter`.
    pub fn launch_on(self, arbiter: &ArbiterHandle) -> Tracked<MonitorServerActor> {
        let stats = Arc::clone(&self.stats);
        Tracked::new(Self::start_in_arbiter(arbiter, |_| self), stats)
    }

    /// Starts (or restarts) the monitor of `device_id` from the child's spec.
    fn spawn_monitor(&mut self, device_id: i64) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let Some(child) = self.monitors.get_mut(&device_id) else {
            return;
        };
        child.spec.generation = generation;
        child.spec.config = self.config;
        child.stats.reset_mailbox();
        let spec = child.spec.clone();
        let stats = Arc::clone(&child.stats);
        // Only the first incarnation waits; a restarted monitor polls at once.
        child.spec.first_poll_at = None;
        child.incarnation_started = Instant::now();
        let probes = Arc::clone(&self.probes);
        let supervisor = self.myself.clone();
        let reporting = self.reporting.clone();
        let build = {
            let stats = Arc::clone(&stats);
            move |_: &mut Context<DeviceMonitor>| {
                DeviceMonitor::new(spec, probes, stats, supervisor, reporting)
            }
        };
        let address = match self.poll_thread() {
            Some(thread) => DeviceMonitor::start_in_arbiter(&thread, build),
            None => DeviceMonitor::create(build),
        };
        if let Some(child) = self.monitors.get_mut(&device_id) {
            child.monitor = Some(Tracked::new(address, stats));
        }
    }

    /// A monitor died: start a fresh one after a backoff that grows while it keeps failing.
    fn restart(&mut self, ctx: &mut Context<Self>, device_id: i64) {
        let Some(child) = self.monitors.get_mut(&device_id) else {
            return;
        };
        if child.monitor.take().is_none() {
            return; // a restart is already pending
        }
        if child.incarnation_started.elapsed() >= STABLE_AFTER {
            child.failures_in_a_row = 0;
        }
        let delay = RESTART_BACKOFF_BASE
            .saturating_mul(1 << child.failures_in_a_row.min(16))
            .min(RESTART_BACKOFF_MAX);
        child.failures_in_a_row += 1;
        child.spec.restarts += 1;
        let generation = child.spec.generation;
        tracing::warn!(
            device.id = device_id,
            server.id = self.server_id,
            restarts = child.spec.restarts,
            delay_ms = delay.as_millis() as u64,
            "device monitor stopped unexpectedly; restarting"
        );
        ctx.run_later(delay, move |act, _ctx| {
            let still_waiting = act
                .monitors
                .get(&device_id)
                .is_some_and(|c| c.monitor.is_none() && c.spec.generation == generation);
            if still_waiting {
                act.spawn_monitor(device_id);
            }
        });
    }

    /// Stops every monitor and forgets it; answers how many there were.
    fn stop_all(&mut self) -> usize {
        let devices: Vec<i64> = self.monitors.keys().copied().collect();
        for device_id in &devices {
            self.stop_one(*device_id);
        }
        devices.len()
    }

    /// The coordinator read the config just now; a broadcast this server missed is
    /// healed here.
    fn take_config(&mut self, config: MonitorConfig) {
        if config != self.config {
            self.set_config(config);
        }
    }

    /// Starts a monitor of `device` under `epoch`, first polling at `first_poll_at`
    /// (`None`: at once), unless it runs here already or the server is at its limit.
    fn start_one(
        &mut self,
        device: DeviceSpec,
        epoch: i64,
        first_poll_at: Option<Instant>,
    ) -> Result<(), StartRefused> {
        let device_id = device.id;
        if self.monitors.contains_key(&device_id) {
            return Err(StartRefused::AlreadyRunning(device_id));
        }
        let max = self.config.max_monitors_per_server;
        if self.monitors.len() >= max as usize {
            return Err(StartRefused::AtLimit(max));
        }
        let stats = self
            .registry
            .register(device_monitor::KIND, device_id.to_string());
        self.monitors.insert(
            device_id,
            Child {
                spec: MonitorSpec {
                    device,
                    config: self.config,
                    epoch,
                    restarts: 0,
                    started_at: Utc::now(),
                    generation: 0,
                    first_poll_at,
                },
                monitor: None,
                incarnation_started: Instant::now(),
                failures_in_a_row: 0,
                stats,
            },
        );
        self.spawn_monitor(device_id);
        tracing::info!(
            device.id = device_id,
            server.id = self.server_id,
            epoch,
            first_poll_after_ms = first_poll_at.map_or(0, |at| at
                .saturating_duration_since(Instant::now())
                .as_millis() as u64),
            "monitor started"
        );
        Ok(())
    }

    /// Stops the monitor of `device_id` and forgets it; false when there was none.
    fn stop_one(&mut self, device_id: i64) -> bool {
        let Some(child) = self.monitors.remove(&device_id) else {
            return false;
        };
        if let Some(monitor) = child.monitor {
            monitor.do_send(StopPolling);
        }
        self.registry.unregister(&child.stats);
        true
    }

    /// Stops the monitor of `device_id` if it runs under `newest` or an older epoch (any
    /// epoch when `newest` is `None`).
    fn stop_named(&mut self, device_id: i64, newest: Option<i64>) -> StopAnswer {
        let Some(epoch) = self.monitors.get(&device_id).map(|c| c.spec.epoch) else {
            return StopAnswer::NotRunning;
        };
        if newest.is_some_and(|newest| epoch > newest) {
            tracing::info!(
                device.id = device_id,
                server.id = self.server_id,
                epoch,
                asked_for = newest,
                "kept a monitor a stop did not mean: it runs under a newer epoch"
            );
            return StopAnswer::KeptNewer { epoch };
        }
        self.stop_one(device_id);
        tracing::info!(
            device.id = device_id,
            server.id = self.server_id,
            epoch,
            "monitor stopped"
        );
        StopAnswer::Stopped { epoch }
    }

    fn set_config(&mut self, config: MonitorConfig) -> usize {
        self.config = config;
        for child in self.monitors.values_mut() {
            child.spec.config = config;
            if let Some(monitor) = &child.monitor {
                monitor.do_send(UpdateConfig(config));
            }
        }
        self.monitors.len()
    }
}

impl Actor for MonitorServerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.myself = Some(Tracked::new(ctx.address(), Arc::clone(&self.stats)).recipient());
        tracing::info!(
            server.id = self.server_id,
            max_monitors = self.config.max_monitors_per_server,
            "monitor server actor started"
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.stop_all();
        self.registry.unregister(&self.stats);
    }
}

/// Why a start was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRefused {
    #[error("device {0} is already monitored on this server")]
    AlreadyRunning(i64),
    #[error("this server is at its limit of {0} monitors")]
    AtLimit(u32),
}

/// Start monitoring a device here, with the config the coordinator holds now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StartRefused>")]
pub struct StartMonitor {
    pub device: DeviceSpec,
    pub config: MonitorConfig,
    pub epoch: i64,
}

impl Handler<StartMonitor> for MonitorServerActor {
    type Result = Result<(), StartRefused>;

    fn handle(&mut self, msg: StartMonitor, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<StartMonitor>();
        self.take_config(msg.config);
        self.start_one(msg.device, msg.epoch, None)
    }
}

/// Start monitoring several devices here, in one message: `(device, epoch, first poll
/// after)`. Answers one result per device, in order.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Result<(), StartRefused>>")]
pub struct StartMonitors {
    pub config: MonitorConfig,
    pub monitors: Vec<(DeviceSpec, i64, Duration)>,
}

impl Handler<StartMonitors> for MonitorServerActor {
    type Result = MessageResult<StartMonitors>;

    fn handle(&mut self, msg: StartMonitors, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<StartMonitors>();
        self.take_config(msg.config);
        // Each delay counts from now, however long creating the batch takes.
        let received = Instant::now();
        let results: Vec<_> = msg
            .monitors
            .into_iter()
            .map(|(device, epoch, delay)| {
                let first_poll_at = (!delay.is_zero()).then(|| received + delay);
                self.start_one(device, epoch, first_poll_at)
            })
            .collect();
        let started = results.iter().filter(|r| r.is_ok()).count();
        tracing::info!(
            server.id = self.server_id,
            asked = results.len(),
            started,
            "batch of monitors started"
        );
        MessageResult(results)
    }
}

impl Handler<Fence> for MonitorServerActor {
    type Result = usize;

    fn handle(&mut self, _: Fence, _ctx: &mut Context<Self>) -> usize {
        self.stats.record::<Fence>();
        let stopped = self.stop_all();
        tracing::warn!(
            server.id = self.server_id,
            monitors = stopped,
            "fenced: stopped every monitor of this server"
        );
        stopped
    }
}

impl Handler<StaleMonitors> for MonitorServerActor {
    type Result = ();

    fn handle(&mut self, StaleMonitors(stale): StaleMonitors, _ctx: &mut Context<Self>) {
        self.stats.record::<StaleMonitors>();
        for (device_id, epoch) in stale {
            if self
                .monitors
                .get(&device_id)
                .is_some_and(|child| child.spec.epoch == epoch)
            {
                self.stop_one(device_id);
                tracing::warn!(
                    device.id = device_id,
                    server.id = self.server_id,
                    epoch,
                    "stopped a stale monitor: its device runs elsewhere under a later epoch"
                );
            }
        }
    }
}

/// What a stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAnswer {
    /// The monitor ran under this epoch, no newer than the stop named; it is stopped.
    Stopped { epoch: i64 },
    /// The monitor runs under this epoch, newer than the stop named: a later start
    /// placed it here, so it is kept.
    KeptNewer { epoch: i64 },
    /// The device is not monitored on this server.
    NotRunning,
}

/// Stop monitoring a device here: the copy that runs under `epoch` or an older one
/// (any copy when `epoch` is `None`, as an older coordinator asks).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "StopAnswer")]
pub struct StopMonitor {
    pub device_id: i64,
    pub epoch: Option<i64>,
}

impl Handler<StopMonitor> for MonitorServerActor {
    type Result = MessageResult<StopMonitor>;

    fn handle(&mut self, msg: StopMonitor, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<StopMonitor>();
        MessageResult(self.stop_named(msg.device_id, msg.epoch))
    }
}

/// Stop several monitors here in one message, each given as `(device, epoch)` and
/// stopped as [`StopMonitor`] stops it. Answers one result per entry, in order.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<StopAnswer>")]
pub struct StopMonitors(pub Vec<(i64, i64)>);

impl Handler<StopMonitors> for MonitorServerActor {
    type Result = MessageResult<StopMonitors>;

    fn handle(
        &mut self,
        StopMonitors(stops): StopMonitors,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.stats.record::<StopMonitors>();
        let answers: Vec<StopAnswer> = stops
            .into_iter()
            .map(|(device_id, epoch)| self.stop_named(device_id, Some(epoch)))
            .collect();
        let stopped = answers
            .iter()
            .filter(|a| matches!(a, StopAnswer::Stopped { .. }))
            .count();
        tracing::info!(
            server.id = self.server_id,
            asked = answers.len(),
            stopped,
            "batch of monitors stopped"
        );
        MessageResult(answers)
    }
}

impl Handler<Ping> for MonitorServerActor {
    type Result = ();

    fn handle(&mut self, ping: Ping, _ctx: &mut Context<Self>) {
        self.stats.record::<Ping>();
        if self.poll_threads.is_empty() {
            return ping.answer();
        }
        // Answered by the last poll thread to run its part.
        let ping = Arc::new(ping);
        let waiting = Arc::new(AtomicUsize::new(self.poll_threads.len()));
        for thread in &self.poll_threads {
            let (ping, waiting) = (Arc::clone(&ping), Arc::clone(&waiting));
            thread.spawn_fn(move || {
                if waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
                    ping.answer();
                }
            });
        }
    }
}

impl Handler<UpdateDevice> for MonitorServerActor {
    type Result = bool;

    fn handle(&mut self, msg: UpdateDevice, _ctx: &mut Context<Self>) -> bool {
        self.stats.record::<UpdateDevice>();
        let Some(child) = self.monitors.get_mut(&msg.0.id) else {
            return false;
        };
        child.spec.device = msg.0.clone();
        if let Some(monitor) = &child.monitor {
            monitor.do_send(msg);
        }
        true
    }
}

impl Handler<UpdateConfig> for MonitorServerActor {
    type Result = usize;

    fn handle(&mut self, UpdateConfig(config): UpdateConfig, _ctx: &mut Context<Self>) -> usize {
        self.stats.record::<UpdateConfig>();
        let updated = self.set_config(config);
        tracing::info!(
            server.id = self.server_id,
            monitors = updated,
            "config applied"
        );
        updated
    }
}

/// Running count, limit, and the device ids of this server with their epochs.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ServerInfo")]
pub struct GetInfo;

impl Handler<GetInfo> for MonitorServerActor {
    type Result = MessageResult<GetInfo>;

    fn handle(&mut self, _: GetInfo, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<GetInfo>();
        let mut monitors: Vec<RunningMonitor> = self
            .monitors
            .iter()
            .map(|(&device_id, child)| RunningMonitor {
                device_id,
                epoch: child.spec.epoch,
            })
            .collect();
        monitors.sort_unstable_by_key(|m| m.device_id);
        MessageResult(ServerInfo {
            server_id: self.server_id,
            running_monitors: monitors.len(),
            max_monitors: self.config.max_monitors_per_server,
            device_ids: monitors.iter().map(|m| m.device_id).collect(),
            monitors: Some(monitors),
        })
    }
}

/// The status of one monitor, `None` when the device is not monitored here.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<MonitorStatus>")]
pub struct GetMonitorStatus {
    pub device_id: i64,
}

impl Handler<GetMonitorStatus> for MonitorServerActor {
    type Result = ResponseFuture<Option<MonitorStatus>>;

    fn handle(&mut self, msg: GetMonitorStatus, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<GetMonitorStatus>();
        let child = self
            .monitors
            .get(&msg.device_id)
            .map(|child| (child.monitor.clone(), child.pending_status()));
        Box::pin(async move {
            let (monitor, pending) = child?;
            Some(Child::status(monitor, pending).await)
        })
    }
}

/// The status of every monitor here, or of those among `device_ids`; ordered by device id.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<MonitorStatus>")]
pub struct ListMonitors {
    pub device_ids: Option<Vec<i64>>,
}

impl Handler<ListMonitors> for MonitorServerActor {
    type Result = ResponseFuture<Vec<MonitorStatus>>;

    fn handle(&mut self, msg: ListMonitors, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<ListMonitors>();
        let mut ids: Vec<i64> = match msg.device_ids {
            Some(ids) => ids
                .into_iter()
                .filter(|id| self.monitors.contains_key(id))
                .collect(),
            None => self.monitors.keys().copied().collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        let queries: Vec<_> = ids
            .iter()
            .filter_map(|id| self.monitors.get(id))
            .map(|child| Child::status(child.monitor.clone(), child.pending_status()))
            .collect();
        Box::pin(join_all(queries))
    }
}

impl Handler<MonitorExited> for MonitorServerActor {
    type Result = ();

    fn handle(&mut self, msg: MonitorExited, ctx: &mut Context<Self>) {
        self.stats.record::<MonitorExited>();
        let current = self
            .monitors
            .get(&msg.device_id)
            .is_some_and(|c| c.monitor.is_some() && c.spec.generation == msg.generation);
        if current {
            self.restart(ctx, msg.device_id);
        }
    }
}

#[cfg(test)]
#[path = "monitor_server_tests.rs"]
mod tests;
