//! The `agent` probe: read a Vigil agent's `/metrics.json` and turn it into series.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::http::DeviceClient;
use super::policy::AddressPolicy;
use super::poll::{document_url, Probe};
use crate::domain::{DeviceSpec, PollResult};
use crate::metrics::agent_report::AgentReport;

/// Largest document an agent may answer with (a host with hundreds of cores and
/// mounts stays well under it).
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

pub(super) struct AgentProbe {
    client: DeviceClient,
}

impl AgentProbe {
    pub(super) fn new(policy: Arc<AddressPolicy>) -> Self {
        AgentProbe {
            client: DeviceClient::new(policy),
        }
    }
}

impl Probe for AgentProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        let url = document_url(&device.address, "/metrics.json");
        let fetched = self.client.fetch(&url, timeout, MAX_DOCUMENT_BYTES);
        async move {
            let fetched = match fetched.await {
                Ok(fetched) => fetched,
                Err((latency_ms, error)) => return PollResult::failed(latency_ms, error),
            };
            match serde_json::from_slice::<AgentReport>(&fetched.body) {
                Ok(report) => PollResult {
                    at: Utc::now(),
                    up: true,
                    latency_ms: fetched.latency_ms,
                    status_code: Some(fetched.status),
                    error: None,
                    metrics: report.to_metrics(),
                    raw: None,
                },
                Err(e) => PollResult::failed(
                    fetched.latency_ms,
                    format!("answered something that is not an agent report: {e}"),
                ),
            }
        }
        .boxed_local()
    }
}
