//! The `http` probe: GET the device's address; up on a 2xx answer, with the latency
//! to the response head. The body is drained (bounded) so the connection is reused.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::{millis, Probe};
use crate::domain::{DeviceSpec, PollResult};

/// At most this much of an answer is read; devices are not trusted to be brief.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub(super) struct HttpProbe {
    client: awc::Client,
}

thread_local! {
    /// One client per thread (awc clients cannot cross threads): the monitors of a thread
    /// share its connection pool instead of each keeping its own.
    static CLIENT: awc::Client = {
        // No cap on simultaneous connections: slow devices must not queue behind each other.
        let connector = awc::Connector::new().limit(0).rustls_0_23(tls_config());
        awc::Client::builder()
            .connector(connector)
            .disable_redirects()
            .add_default_header(("user-agent", concat!("vigil/", env!("CARGO_PKG_VERSION"))))
            .finish()
    };
}

impl HttpProbe {
    pub(super) fn new() -> Self {
        HttpProbe {
            client: CLIENT.with(awc::Client::clone),
        }
    }
}

/// Server certificates are checked against the Mozilla root set (webpki-roots), loaded
/// once per process.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(build_tls_config))
}

fn build_tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // ring supports the safe default versions; this arm only keeps the type honest.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    Arc::new(config)
}

impl Probe for HttpProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        let request = self.client.get(&device.address).timeout(timeout);
        async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + timeout;
            match request.send().await {
                Ok(mut response) => {
                    let latency_ms = millis(started);
                    let status = response.status();
                    // Drain what the device sent, within the same deadline and size cap.
                    let _ =
                        tokio::time::timeout_at(deadline, response.body().limit(MAX_BODY_BYTES))
                            .await;
                    PollResult {
                        at: Utc::now(),
                        up: status.is_success(),
                        latency_ms,
                        status_code: Some(status.as_u16()),
                        error: (!status.is_success()).then(|| format!("answered HTTP {status}")),
                    }
                }
                Err(error) => PollResult {
                    at: Utc::now(),
                    up: false,
                    latency_ms: millis(started),
                    status_code: None,
                    error: Some(describe(&error, timeout)),
                },
            }
        }
        .boxed_local()
    }
}

fn describe(error: &awc::error::SendRequestError, timeout: Duration) -> String {
    match error {
        awc::error::SendRequestError::Timeout => {
            format!("no answer within {} ms", timeout.as_millis())
        }
        other => other.to_string(),
    }
}

/// An `http` device's address is an absolute `http://` or `https://` URL with a host.
pub fn validate_address(address: &str) -> Result<(), String> {
    let url =
        url::Url::parse(address).map_err(|e| format!("address {address:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "address {address:?} must start with http:// or https:// for an http device"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("address {address:?} names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_address;

    #[test]
    fn http_addresses_must_be_absolute_http_urls() {
        assert!(validate_address("http://127.0.0.1:8080/healthz").is_ok());
        assert!(validate_address("https://example.com").is_ok());
        assert!(validate_address("ftp://example.com").is_err());
        assert!(validate_address("example.com").is_err());
        assert!(validate_address("").is_err());
    }
}
