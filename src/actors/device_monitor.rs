//! `DeviceMonitor`: one actor per monitored device. It polls its device every
//! `poll_interval_ms` with `timeout_ms`, judges its health (`crate::health`), hands
//! every sample and every change of state to the node's `MetricsWriter`, and takes
//! device and config changes while running.
//!
//! A probe that panics makes the monitor stop; its supervisor (`MonitorServerActor`)
//! sees it go and starts a fresh one.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;

use super::messages::{MonitorExited, Sample, StateChanged, UpdateConfig, UpdateDevice};
use super::registry::{ActorStats, TrackedRecipient};
use super::sample_queue::SampleQueue;
use crate::domain::{DeviceSpec, HealthState, MonitorConfig, MonitorStatus, PollResult};
use crate::health::HealthTracker;
use crate::metrics::exposition::Histogram;
use crate::metrics::series;
use crate::probe::{Probe, ProbeFactory};

/// The kind under which monitors appear in the actor registry.
pub const KIND: &str = "DeviceMonitor";

/// Extra time a probe gets past its own timeout before the monitor stops waiting.
const PROBE_GRACE: Duration = Duration::from_millis(500);

/// Upper bounds of the poll-latency histogram, in seconds.
static LATENCY_BOUNDS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds of the poll-lateness histogram, in seconds.
static LATENESS_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// What the monitors of one node have done, for `GET /metrics`.
#[derive(Debug)]
pub struct PollStats {
    pub polls: AtomicU64,
    pub failures: AtomicU64,
    /// Seconds per poll.
    pub latency: Histogram,
    /// Seconds a poll began after it was due: how far behind the poll threads run.
    pub lateness: Histogram,
}

impl Default for PollStats {
    fn default() -> Self {
        PollStats {
            polls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: Histogram::new(&LATENCY_BOUNDS),
            lateness: Histogram::new(&LATENESS_BOUNDS),
        }
    }
}

/// Where a monitor's results go besides its own status: the node's writer, through
/// its queue (absent in tests that do not store), and the node's poll counters.
#[derive(Clone, Default)]
pub struct Reporting {
    pub samples: Option<Arc<SampleQueue>>,
    pub changes: Option<TrackedRecipient<StateChanged>>,
    pub polls: Arc<PollStats>,
}

/// What a monitor is started with; the supervisor keeps it to restart the monitor.
#[derive(Debug, Clone)]
pub struct MonitorSpec {
    pub device: DeviceSpec,
    pub config: MonitorConfig,
    pub epoch: i64,
    pub restarts: u32,
    pub started_at: DateTime<Utc>,
    /// Tells this incarnation apart from earlier ones of the same device.
    pub generation: u64,
    /// When the first poll of the first incarnation is due (`None`: at once, as for a
    /// restart). An instant rather than a delay, so that the monitors of one batch keep
    /// the spread they were given however long the batch takes to create.
    pub first_poll_at: Option<Instant>,
}

impl MonitorSpec {
    /// The status of a monitor started from this spec, with what it has seen so far.
    pub fn status(
        &self,
        state: HealthState,
        last_result: Option<PollResult>,
        polls: u64,
        failures: u64,
    ) -> MonitorStatus {
        MonitorStatus {
            device: self.device.clone(),
            epoch: self.epoch,
            state,
            last_result,
            polls,
            failures,
            restarts: self.restarts,
            config: self.config,
            started_at: self.started_at,
        }
    }
}

pub struct DeviceMonitor {
    spec: MonitorSpec,
    probes: ProbeFactory,
    /// Built in `started`, on the monitor's own thread (probes may be `!Send`).
    probe: Option<Box<dyn Probe>>,
    health: HealthTracker,
    reporting: Reporting,
    last_result: Option<PollResult>,
    polls: u64,
    failures: u64,
    stats: Arc<ActorStats>,
    supervisor: Option<TrackedRecipient<MonitorExited>>,
    /// Bumped on every device change, so the result of a poll of the old address is dropped.
    device_version: u64,
    in_flight: bool,
    next_poll: Option<SpawnHandle>,
    /// The scheduled poll's place on the monitor's grid: later polls are due whole
    /// intervals after it.
    slot: Option<Instant>,
    /// When the scheduled poll is due, to measure how late it comes: its slot, or when
    /// it was scheduled if the slot was already past.
    due: Option<Instant>,
}

impl DeviceMonitor {
    pub fn new(
        spec: MonitorSpec,
        probes: ProbeFactory,
        stats: Arc<ActorStats>,
        supervisor: Option<TrackedRecipient<MonitorExited>>,
        reporting: Reporting,
    ) -> Self {
        DeviceMonitor {
            spec,
            probes,
            probe: None,
            health: HealthTracker::default(),
            reporting,
            last_result: None,
            polls: 0,
            failures: 0,
            stats,
            supervisor,
            device_version: 0,
            in_flight: false,
            next_poll: None,
            slot: None,
            due: None,
        }
    }

    fn status(&self) -> MonitorStatus {
        self.spec.status(
            self.health.state(),
            self.last_result.clone(),
            self.polls,
            self.failures,
        )
    }

    /// Polls at `slot`, or now if it is past: a monitor created on a busy poll thread
    /// after its first poll was due polls at once, is not counted late for the time it
    /// did not exist, and keeps the slot's place in the interval (a large batch's first
    /// polls held up by its creation would otherwise poll together at every interval).
    fn schedule_poll(&mut self, ctx: &mut Context<Self>, slot: Instant) {
        if let Some(handle) = self.next_poll.take() {
            ctx.cancel_future(handle);
        }
        let now = Instant::now();
        let fires = on_tick(slot, self.spec.config.poll_interval());
        self.next_poll = Some(ctx.notify_later(Poll, fires.saturating_duration_since(now)));
        self.slot = Some(slot);
        self.due = Some(slot.max(now));
    }

    /// Takes one poll's result: counts it, judges the device's health with the config
    /// as it is now, and hands the sample (and any change of state) to the writer.
    fn record(&mut self, mut result: PollResult) {
        self.polls += 1;
        let stats = &self.reporting.polls;
        stats.polls.fetch_add(1, Ordering::Relaxed);
        stats.latency.observe(result.latency_ms / 1000.0);
        if !result.up {
            self.failures += 1;
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
            .metrics
            .insert(series::UP.into(), if result.up { 1.0 } else { 0.0 });
        if result.latency_ms.is_finite() {
            result
                .metrics
                .insert(series::LATENCY_SECONDS.into(), result.latency_ms / 1000.0);
        }
        let device = &self.spec.device;
        if let Some(change) = self.health.observe(&result, &self.spec.config) {
            tracing::info!(
                device.id = device.id,
                from = change.from.as_str(),
                to = change.to.as_str(),
                reason = %change.reason,
                "device state changed"
            );
            if let Some(changes) = &self.reporting.changes {
                changes.do_send(StateChanged {
                    device_id: device.id,
                    company_id: device.company_id,
                    epoch: self.spec.epoch,
                    from: change.from,
                    to: change.to,
                    at: result.at,
                    reason: change.reason,
                });
            }
        }
        // Every series goes to storage; the monitor keeps only the summary of its last
        // poll (a node_exporter's hundreds of raw series would cost memory per monitor
        // and bulk in every device list).
        let summary = result
            .metrics
            .iter()
            .filter(|(key, _)| series::is_summary(key))
            .map(|(key, value)| (key.clone(), *value))
            .collect();
        let metrics = std::mem::replace(&mut result.metrics, summary);
        if let Some(samples) = &self.reporting.samples {
            samples.push(Sample {
                device_id: device.id,
                epoch: self.spec.epoch,
                at: result.at,
                metrics,
                raw: result.raw.take(),
            });
        }
        self.last_result = Some(result);
    }

    /// The probe panicked: stop, and let the supervisor start a fresh monitor.
    fn fail(&mut self, ctx: &mut Context<Self>, panic: &(dyn std::any::Any + Send)) {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(device.id = self.spec.device.id, %reason, "device monitor failed");
        ctx.stop();
    }
}

impl Actor for DeviceMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.probe = Some((self.probes)());
        let first = self.spec.first_poll_at.unwrap_or_else(Instant::now);
        self.schedule_poll(ctx, first);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.do_send(MonitorExited {
                device_id: self.spec.device.id,
                generation: self.spec.generation,
            });
        }
    }
}

/// The longest a poll waits past its slot for the tick it fires on.
const MAX_POLL_TICK: Duration = Duration::from_millis(10);

/// The tick a poll due at `slot` fires on: the first boundary at or after it of a grid
/// of `interval / 100` (at most [`MAX_POLL_TICK`]) shared by every monitor of the
/// process. The polls due within one tick fire together, so a poll thread wakes once
/// a tick instead of once a monitor: at a thousand polls a second a thread, waking was
/// most of what a poll cost (a context switch per poll on a VM, more than reading an
/// agent's report). A poll is that much later than its slot, and its lateness counts it.
fn on_tick(slot: Instant, interval: Duration) -> Instant {
    static GRID_START: OnceLock<Instant> = OnceLock::new();
    let tick = (interval / 100).min(MAX_POLL_TICK).as_nanos();
    let start = *GRID_START.get_or_init(Instant::now);
    if tick == 0 || slot <= start {
        return slot;
    }
    let since = slot.duration_since(start).as_nanos();
    let ticks = since.div_ceil(tick);
    // Beyond u64 nanoseconds (584 years) the slot itself is as good.
    match u64::try_from(ticks * tick) {
        Ok(nanos) => start + Duration::from_nanos(nanos),
        Err(_) => slot,
    }
}

/// When the poll after the one due at `slot` is due: one interval on, keeping the
/// monitor's place in the interval even when that poll ran late (late polls of many
/// monitors, held up together, would otherwise poll together from then on), and
/// skipping the slots already past rather than polling at once to catch up.
fn next_slot(slot: Instant, interval: Duration, now: Instant) -> Instant {
    let next = slot + interval;
    if next > now || interval.is_zero() {
        return next;
    }
    let behind = now.duration_since(next).as_nanos() / interval.as_nanos();
    let skipped = u32::try_from(behind + 1).unwrap_or(u32::MAX);
    next + interval.saturating_mul(skipped)
}

/// Time to poll the device (sent by the monitor to itself).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Poll;

impl Handler<Poll> for DeviceMonitor {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        self.stats.record_timer::<Poll>();
        self.next_poll = None;
        let slot = self.slot.take();
        let due = self.due.take();
        if let Some(due) = due {
            let late = Instant::now().saturating_duration_since(due);
            self.reporting.polls.lateness.observe(late.as_secs_f64());
        }
        if self.in_flight {
            return;
        }
        let Some(probe) = &self.probe else { return };
        let timeout = self.spec.config.timeout();
        let started = Instant::now();
        let version = self.device_version;
        let poll = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            probe.poll(&self.spec.device, timeout)
        })) {
            Ok(poll) => poll,
            Err(panic) => return self.fail(ctx, panic.as_ref()),
        };
        self.in_flight = true;
        let guarded =
            tokio::time::timeout(timeout + PROBE_GRACE, AssertUnwindSafe(poll).catch_unwind());
        ctx.spawn(guarded.into_actor(self).map(move |outcome, act, ctx| {
            act.in_flight = false;
            let result = match outcome {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => return act.fail(ctx, panic.as_ref()),
                Err(_elapsed) => PollResult::failed(
                    crate::probe::millis(started),
                    format!("no answer within {} ms", timeout.as_millis()),
                ),
            };
            if version == act.device_version {
                act.record(result);
                let slot = slot.unwrap_or(started);
                let next = next_slot(slot, act.spec.config.poll_interval(), Instant::now());
                act.schedule_poll(ctx, next);
            } else {
                // The device changed while this poll was out: poll the new one now.
                act.schedule_poll(ctx, Instant::now());
            }
        }));
    }
}

impl Handler<UpdateDevice> for DeviceMonitor {
    type Result = bool;

    fn handle(&mut self, UpdateDevice(device): UpdateDevice, ctx: &mut Context<Self>) -> bool {
        self.stats.record::<UpdateDevice>();
        if device.id != self.spec.device.id {
            return false;
        }
        self.spec.device = device;
        self.device_version += 1;
        if !self.in_flight {
            self.schedule_poll(ctx, Instant::now());
        }
        true
    }
}

impl Handler<UpdateConfig> for DeviceMonitor {
    type Result = usize;

    fn handle(&mut self, UpdateConfig(config): UpdateConfig, ctx: &mut Context<Self>) -> usize {
        self.stats.record::<UpdateConfig>();
        let before = self.spec.config.poll_interval();
        let interval_changed = config.poll_interval_ms != self.spec.config.poll_interval_ms;
        self.spec.config = config;
        if interval_changed && !self.in_flight {
            // Keep this monitor's place in the interval: every monitor of a server gets
            // the change at once, and restarting all their intervals now would make
            // them poll together from then on.
            let remaining = self.due.map_or(Duration::ZERO, |due| {
                due.saturating_duration_since(Instant::now())
            });
            let share = (remaining.as_secs_f64() / before.as_secs_f64()).clamp(0.0, 1.0);
            self.schedule_poll(ctx, Instant::now() + config.poll_interval().mul_f64(share));
        }
        1
    }
}

/// The monitor's device, state, last result and counters.
#[derive(Debug, Message)]
#[rtype(result = "MonitorStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for DeviceMonitor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<GetStatus>();
        MessageResult(self.status())
    }
}

/// Stop polling and go away (the device is no longer monitored here).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopPolling;

impl Handler<StopPolling> for DeviceMonitor {
    type Result = ();

    fn handle(&mut self, _: StopPolling, ctx: &mut Context<Self>) {
        self.stats.record::<StopPolling>();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_fire_on_a_shared_tick_no_later_than_a_tick_after_their_slot() {
        let second = Duration::from_secs(1);
        let base = on_tick(Instant::now() + Duration::from_millis(3), second);
        for offset_us in [0, 1, 2_500, 9_999, 10_000, 123_456] {
            let slot = base + Duration::from_micros(offset_us);
            let fires = on_tick(slot, second);
            assert!(
                fires >= slot && fires - slot < MAX_POLL_TICK,
                "{offset_us} µs"
            );
            // Every slot within one tick fires at the same instant.
            let tick_start = fires - MAX_POLL_TICK + Duration::from_nanos(1);
            assert_eq!(on_tick(tick_start, second), fires, "{offset_us} µs");
        }
        // A short interval gets a finer tick: a hundredth of it.
        let slot = base + Duration::from_micros(1);
        assert!(on_tick(slot, Duration::from_millis(100)) - slot < Duration::from_millis(1));
    }

    #[test]
    fn the_next_poll_keeps_its_place_in_the_interval() {
        let slot = Instant::now();
        let second = Duration::from_secs(1);
        // On time or late within the interval: one interval after the slot.
        assert_eq!(next_slot(slot, second, slot), slot + second);
        assert_eq!(
            next_slot(slot, second, slot + Duration::from_millis(700)),
            slot + second
        );
        // Later than a whole interval: the next slot still ahead, none caught up.
        assert_eq!(
            next_slot(slot, second, slot + Duration::from_millis(2_300)),
            slot + 3 * second
        );
        assert_eq!(
            next_slot(slot, second, slot + 2 * second),
            slot + 3 * second
        );
    }
}
