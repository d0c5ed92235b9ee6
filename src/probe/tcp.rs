//! The `tcp` probe: open a TCP connection to `host:port`; up when it connects, with
//! the connect time as latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::policy::AddressPolicy;
use super::poll::{millis, Probe};
use crate::domain::{DeviceSpec, Metrics, PollResult};

pub(super) struct TcpProbe {
    pub(super) policy: Arc<AddressPolicy>,
}

/// Host and port of a checked address.
fn host_and_port(address: &str) -> Result<(String, u16), String> {
    let url = as_url(address).map_err(|e| format!("address {address:?} is not host:port: {e}"))?;
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => Ok((host.to_string(), port)),
        _ => Err(format!("address {address:?} is not host:port")),
    }
}

impl Probe for TcpProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        let address = device.address.clone();
        let policy = Arc::clone(&self.policy);
        async move {
            let started = Instant::now();
            // Resolved and checked once; the connection goes to the address checked.
            let connect = async {
                let (host, port) = host_and_port(&address)?;
                let address = policy.resolve(&host, port).await?;
                tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(|e| format!("could not connect: {e}"))
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(_stream)) => PollResult {
                    at: Utc::now(),
                    up: true,
                    latency_ms: millis(started),
                    status_code: None,
                    error: None,
                    metrics: Metrics::new(),
                    raw: None,
                },
                Ok(Err(error)) => PollResult::failed(millis(started), error),
                Err(_) => PollResult::failed(
                    millis(started),
                    format!("did not connect within {} ms", timeout.as_millis()),
                ),
            }
        }
        .boxed_local()
    }
}

/// An address written as `host:port` or `tcp://host:port`, as a `tcp://` URL to take
/// apart.
pub(super) fn as_url(address: &str) -> Result<url::Url, url::ParseError> {
    let target = address.strip_prefix("tcp://").unwrap_or(address);
    url::Url::parse(&format!("tcp://{target}"))
}

/// A `tcp` device's address is `host:port` (or `tcp://host:port`), the port 1–65535
/// and IPv6 hosts in brackets.
pub fn validate_address(address: &str) -> Result<(), String> {
    let url = as_url(address).map_err(|e| format!("address {address:?} is not host:port: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let exact = url.path().is_empty() && url.query().is_none() && url.username().is_empty();
    match url.port() {
        Some(port) if port > 0 && !host.is_empty() && exact => Ok(()),
        Some(0) => Err(format!(
            "address {address:?} must name a port from 1 to 65535"
        )),
        _ => Err(format!(
            "address {address:?} must be host:port for a tcp device, e.g. db.example.com:5432"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::validate_address;

    #[test]
    fn tcp_addresses_are_host_and_port() {
        assert!(validate_address("127.0.0.1:5432").is_ok());
        assert!(validate_address("tcp://db.example.com:22").is_ok());
        assert!(validate_address("[::1]:80").is_ok());
        assert!(validate_address("db.example.com").is_err());
        assert!(validate_address("db:0").is_err());
        assert!(validate_address("db:70000").is_err());
        assert!(validate_address("db:80/path").is_err());
        assert!(validate_address("http://db:80").is_err());
        assert!(validate_address("").is_err());
    }
}
