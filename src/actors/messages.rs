//! Messages one actor sends to another whose type it does not know: actors hold a
//! `TrackedRecipient` of the message, so `device_monitor`, `monitor_server`, `writer`
//! and `membership` never import each other.
//!
//! - the coordinator's config and device changes, which the monitor server forwards to
//!   its device monitors ([`UpdateConfig`], [`UpdateDevice`]);
//! - a device monitor's readings and changes of state, to the node's writer
//!   ([`Sample`], [`StateChanged`]), and its end, to its supervisor ([`MonitorExited`]);
//! - the writer's word that the database refused a monitor's rows as stale, to the
//!   supervisor ([`StaleMonitors`]);
//! - membership's order to stop everything before rejoining, to the supervisor
//!   ([`Fence`]), and the heartbeat's question whether it still takes messages
//!   ([`Ping`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Message;
use chrono::{DateTime, Utc};

use crate::domain::{DeviceSpec, HealthState, Metrics, MonitorConfig, SharedReadings};

/// New settings for every running monitor. Answers how many monitors took them.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct UpdateConfig(pub MonitorConfig);

/// New data for one device, for the monitor that watches it. Answers whether a
/// monitor took it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
pub struct UpdateDevice(pub DeviceSpec);

/// What one poll read, to be stored.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct Sample {
    pub device_id: i64,
    /// The epoch of the assignment the monitor runs under.
    pub epoch: i64,
    pub at: DateTime<Utc>,
    pub metrics: Metrics,
    /// Readings besides `metrics` whose names the device's polls share.
    pub raw: Option<SharedReadings>,
}

impl Sample {
    /// The readings it holds (non-finite values included): what buffers count.
    pub fn len(&self) -> usize {
        self.metrics.len() + self.raw.as_ref().map_or(0, SharedReadings::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Samples are waiting in the node's `SampleQueue`: a batch of them (sent by the
/// queue to its writer).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SamplesWaiting;

/// A device's health changed.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct StateChanged {
    pub device_id: i64,
    pub company_id: i64,
    pub epoch: i64,
    pub from: HealthState,
    pub to: HealthState,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A monitor stopped; sent by the monitor itself from `stopped`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct MonitorExited {
    pub device_id: i64,
    pub generation: u64,
}

/// Stop these monitors, given as `(device, epoch)`: the database refused their readings
/// because their device was placed elsewhere (a later epoch) since they started. A
/// monitor of the same device started since under another epoch is kept.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StaleMonitors(pub Vec<(i64, i64)>);

/// Stop every monitor now: this server was removed from the cluster as dead, and the
/// master may have started its devices elsewhere. Answers how many were stopped.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct Fence;

/// Are you still taking messages? The heartbeat asks a monitor server's supervisor at
/// every beat; the answer is `seq` written into `answered`, so the heartbeat thread
/// never waits on the actor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Ping {
    pub seq: u64,
    pub answered: Arc<AtomicU64>,
}

impl Ping {
    /// The answer: this ping (and every earlier one) was taken.
    pub fn answer(&self) {
        self.answered.fetch_max(self.seq, Ordering::SeqCst);
    }
}
