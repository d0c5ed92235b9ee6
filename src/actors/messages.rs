//! Messages handled by more than one actor: the monitor server forwards them to its
//! device monitors.

use actix::Message;

use crate::domain::{DeviceSpec, MonitorConfig};

/// New settings for every running monitor. Answers how many monitors took them.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct UpdateConfig(pub MonitorConfig);

/// New data for one device, for the monitor that watches it. Answers whether a
/// monitor took it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
pub struct UpdateDevice(pub DeviceSpec);
