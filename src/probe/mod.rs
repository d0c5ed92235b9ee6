//! How a device is polled: one probe per device kind behind the [`Probe`] trait.
//!
//! A probe runs on its monitor's thread (awc is `!Send`), so probes are built there,
//! by a [`ProbeFactory`] the monitor server hands to each monitor.

mod http;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use crate::domain::{DeviceKind, DeviceSpec, PollResult};

pub use self::http::validate_address as validate_http_address;

/// Polls a device once. The returned future must finish within `timeout`.
pub trait Probe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult>;
}

/// Builds the probe of a monitor, on the monitor's own thread.
pub type ProbeFactory = Arc<dyn Fn() -> Box<dyn Probe> + Send + Sync>;

/// The probes Vigil ships, chosen by the device's kind at every poll (a device
/// update may change the kind).
pub fn standard() -> ProbeFactory {
    Arc::new(|| {
        Box::new(KindProbe {
            http: http::HttpProbe::new(),
        })
    })
}

struct KindProbe {
    http: http::HttpProbe,
}

impl Probe for KindProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        match device.kind {
            DeviceKind::Http => self.http.poll(device, timeout),
        }
    }
}

/// Checks that `address` is something a probe of `kind` can poll; the error says why not.
pub fn validate_address(kind: DeviceKind, address: &str) -> Result<(), String> {
    match kind {
        DeviceKind::Http => validate_http_address(address),
    }
}

/// Milliseconds since `started`, to the microsecond: how probes report latency.
pub fn millis(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0
}
