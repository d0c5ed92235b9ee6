//! The `http` probe: GET the device's address; up on a 2xx answer (or on the device's
//! expected status), with the latency to the response head. The body is drained
//! (bounded) so the connection is reused.
//!
//! This file also holds [`DeviceClient`], the HTTP client every HTTP-speaking probe
//! shares: it connects only where the address policy allows, and its
//! [`DeviceClient::fetch`] is the bounded GET the `agent` and `prometheus` probes read
//! documents with.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::policy::AddressPolicy;
use super::poll::{millis, Probe};
use crate::domain::{DeviceSpec, Metrics, PollResult};
use crate::metrics::series::HTTP_STATUS_CODE;

/// At most this much of an answer is read; devices are not trusted to be brief.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub(super) struct HttpProbe {
    client: DeviceClient,
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
    pub(super) fn new(policy: Arc<AddressPolicy>) -> Self {
        HttpProbe {
            client: DeviceClient::new(policy),
        }
    }
}

/// A document a device answered with.
pub(super) struct Fetched {
    pub status: u16,
    pub body: actix_web::web::Bytes,
    /// Time to the response head.
    pub latency_ms: f64,
}

/// This thread's HTTP client, with the address policy it must keep to.
#[derive(Clone)]
pub(super) struct DeviceClient {
    http: awc::Client,
    policy: Arc<AddressPolicy>,
}

impl DeviceClient {
    pub(super) fn new(policy: Arc<AddressPolicy>) -> Self {
        DeviceClient {
            http: CLIENT.with(awc::Client::clone),
            policy,
        }
    }

    /// A GET of `url` bound to the address its host resolves to now, if the policy
    /// allows every address it resolves to; resolution counts against `deadline`.
    async fn get(
        &self,
        url: &str,
        deadline: tokio::time::Instant,
    ) -> Result<awc::ClientRequest, String> {
        let parsed =
            url::Url::parse(url).map_err(|e| format!("address {url:?} is not a URL: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("address {url:?} names no host"))?;
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("address {url:?} names no port"))?;
        let address = tokio::time::timeout_at(deadline, self.policy.resolve(host, port))
            .await
            .map_err(|_| format!("{host} did not resolve in time"))??;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        Ok(self.http.get(url).address(address).timeout(left))
    }

    /// GETs `url` and reads the body, all within `timeout`; a body over `max_bytes`, a
    /// non-2xx answer, a denied address or no answer is an error in words.
    pub(super) fn fetch(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> LocalBoxFuture<'static, Result<Fetched, (f64, String)>> {
        let (client, url) = (self.clone(), url.to_string());
        async move { client.fetch_now(&url, timeout, max_bytes).await }.boxed_local()
    }

    async fn fetch_now(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Fetched, (f64, String)> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let request = self
            .get(url, deadline)
            .await
            .map_err(|e| (millis(started), e))?;
        let mut response = request
            .send()
            .await
            .map_err(|e| (millis(started), describe(&e, timeout)))?;
        let latency_ms = millis(started);
        let status = response.status();
        if !status.is_success() {
            return Err((latency_ms, format!("answered HTTP {status}")));
        }
        let body = match tokio::time::timeout_at(deadline, response.body().limit(max_bytes)).await {
            Ok(Ok(body)) => body,
            Ok(Err(awc::error::PayloadError::Overflow)) => {
                return Err((latency_ms, format!("answered more than {max_bytes} bytes")))
            }
            Ok(Err(e)) => return Err((latency_ms, format!("could not read the answer: {e}"))),
            Err(_) => {
                return Err((
                    latency_ms,
                    format!(
                        "did not finish its answer within {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
        };
        Ok(Fetched {
            status: status.as_u16(),
            body,
            latency_ms,
        })
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
        let (client, url) = (self.client.clone(), device.address.clone());
        let expected = device.expected_status;
        async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + timeout;
            let request = match client.get(&url, deadline).await {
                Ok(request) => request,
                Err(error) => return PollResult::failed(millis(started), error),
            };
            match request.send().await {
                Ok(mut response) => {
                    let latency_ms = millis(started);
                    let status = response.status();
                    // Drain what the device sent, within the same deadline and size cap.
                    let _ =
                        tokio::time::timeout_at(deadline, response.body().limit(MAX_BODY_BYTES))
                            .await;
                    let up = match expected {
                        Some(expected) => status.as_u16() == expected,
                        None => status.is_success(),
                    };
                    let error = match expected {
                        _ if up => None,
                        Some(expected) => {
                            Some(format!("answered HTTP {status}, expected {expected}"))
                        }
                        None => Some(format!("answered HTTP {status}")),
                    };
                    let mut metrics = Metrics::new();
                    metrics.insert(HTTP_STATUS_CODE.into(), f64::from(status.as_u16()));
                    PollResult {
                        at: Utc::now(),
                        up,
                        latency_ms,
                        status_code: Some(status.as_u16()),
                        error,
                        metrics,
                        raw: None,
                    }
                }
                Err(error) => PollResult::failed(millis(started), describe(&error, timeout)),
            }
        }
        .boxed_local()
    }
}

pub(super) fn describe(error: &awc::error::SendRequestError, timeout: Duration) -> String {
    match error {
        awc::error::SendRequestError::Timeout => {
            format!("no answer within {} ms", timeout.as_millis())
        }
        other => other.to_string(),
    }
}

/// An `http` (or `agent`, `prometheus`) device's address is an absolute `http://` or
/// `https://` URL with a host.
pub fn validate_address(address: &str) -> Result<(), String> {
    let url =
        url::Url::parse(address).map_err(|e| format!("address {address:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "address {address:?} must start with http:// or https://"
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
