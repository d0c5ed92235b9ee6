//! How a device is polled: one probe per device kind behind the [`Probe`] trait, one
//! file per kind (and the text exposition parser the `prometheus` probe reads with).
//!
//! A probe runs on its monitor's thread (awc is `!Send`), so probes are built there,
//! by a [`ProbeFactory`] the monitor server hands to each monitor. A probe may keep
//! state between the polls of its monitor (the `prometheus` probe turns counters into
//! rates that way).

mod agent;
mod exposition_parser;
mod exposition_shape;
mod http;
mod offload;
pub mod policy;
mod poll;
mod prometheus;
mod tcp;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

use crate::domain::{DeviceKind, DeviceSpec, PollResult};

pub use self::policy::AddressPolicy;
pub use self::poll::{millis, Probe, ProbeFactory};

pub use self::exposition_parser::{
    parse_exposition, ExpositionSample, ParsedExposition, SampleKind,
};
pub use self::prometheus::{MAX_RAW_SERIES, NODE_SERIES};

/// The probes Vigil ships, chosen by the device's kind at every poll (a device
/// update may change the kind), connecting only where `policy` allows.
pub fn standard(policy: AddressPolicy) -> ProbeFactory {
    let policy = Arc::new(policy);
    Arc::new(move || {
        Box::new(KindProbe {
            agent: agent::AgentProbe::new(Arc::clone(&policy)),
            prometheus: prometheus::PrometheusProbe::new(Arc::clone(&policy)),
            http: http::HttpProbe::new(Arc::clone(&policy)),
            tcp: tcp::TcpProbe {
                policy: Arc::clone(&policy),
            },
        })
    })
}

struct KindProbe {
    agent: agent::AgentProbe,
    prometheus: prometheus::PrometheusProbe,
    http: http::HttpProbe,
    tcp: tcp::TcpProbe,
}

impl Probe for KindProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        match device.kind {
            DeviceKind::Agent => self.agent.poll(device, timeout),
            DeviceKind::Prometheus => self.prometheus.poll(device, timeout),
            DeviceKind::Http => self.http.poll(device, timeout),
            DeviceKind::Tcp => self.tcp.poll(device, timeout),
        }
    }
}

/// Checks that `address` is something a probe of `kind` can poll; the error says why not.
pub fn validate_address(kind: DeviceKind, address: &str) -> Result<(), String> {
    match kind {
        DeviceKind::Agent | DeviceKind::Prometheus | DeviceKind::Http => {
            http::validate_address(address)
        }
        DeviceKind::Tcp => tcp::validate_address(address),
    }
}

/// The host of a valid address of `kind` (`10.0.0.1`, `[fe80::1]`, `db-1`).
pub fn host_of(kind: DeviceKind, address: &str) -> Option<String> {
    let url = match kind {
        DeviceKind::Tcp => tcp::as_url(address),
        _ => url::Url::parse(address),
    };
    url.ok()?.host_str().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_per_kind() {
        assert!(validate_address(DeviceKind::Agent, "http://h:9109").is_ok());
        assert!(validate_address(DeviceKind::Prometheus, "h:9100").is_err());
        assert!(validate_address(DeviceKind::Tcp, "h:22").is_ok());
        assert!(validate_address(DeviceKind::Tcp, "http://h:22").is_err());
    }
}
