//! What every probe is: the [`Probe`] trait, the factory a monitor builds its probe
//! with, and what the probes of all kinds share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use crate::domain::{DeviceSpec, PollResult};

/// Polls a device once. The returned future must finish within `timeout`.
pub trait Probe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult>;
}

/// Builds the probe of a monitor, on the monitor's own thread.
pub type ProbeFactory = Arc<dyn Fn() -> Box<dyn Probe> + Send + Sync>;

/// The URL a document is read from: the address itself, or `default_path` when the
/// address names only a host (`http://host:9109` → `http://host:9109/metrics.json`).
pub(super) fn document_url(address: &str, default_path: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut url) if url.path() == "/" && url.query().is_none() => {
            url.set_path(default_path);
            url.to_string()
        }
        _ => address.to_string(),
    }
}

/// Milliseconds since `started`, to the microsecond: how probes report latency.
pub fn millis(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_gets_the_kinds_document_path() {
        assert_eq!(
            document_url("http://h:9109", "/metrics.json"),
            "http://h:9109/metrics.json"
        );
        assert_eq!(
            document_url("http://h:9109/", "/metrics"),
            "http://h:9109/metrics"
        );
        assert_eq!(
            document_url("http://h:9100/other", "/metrics"),
            "http://h:9100/other"
        );
    }
}
