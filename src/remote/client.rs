//! `MonitorServerClient`: the coordinator's calls to a monitor server's HTTP API.
//!
//! awc is `!Send`: a client lives on one thread (an actor's or an HTTP worker's). Every
//! call carries the cluster token; a server refuses calls without it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::wire::{
    BatchAnswer, BatchOutcome, ConfigApplied, ServerInfo, StartBatchRequest, StopAck,
    StopBatchAnswer, StopBatchRequest, StopEntry, StopOutcome, StopResult,
};
use crate::auth::ClusterToken;
use crate::db::models::MonitorServer;
use crate::domain::{DeviceSpec, MonitorConfig, MonitorStatus};

/// A server that does not accept a connection within this is taken as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A server that does not answer a call within this is taken as down.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a monitor server (a full `GET /monitors` of a big server).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Device ids per `GET /monitors?ids=` call, keeping the URL well under HTTP limits.
const IDS_PER_CALL: usize = 250;
/// Monitors per `POST /monitors/stop` call: about 40 bytes each, well under the
/// server's 64 KiB body limit.
pub const STOPS_PER_CALL: usize = 1000;

/// A call to a monitor server that did not get the answer it needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("unreachable ({0})")]
    Unreachable(String),
    #[error("answered HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("sent an unreadable answer ({0})")]
    BadAnswer(String),
}

#[derive(Clone)]
pub struct MonitorServerClient {
    http: awc::Client,
}

/// The error body every Vigil server sends.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    code: String,
}

/// `http://host:port`, with brackets around an IPv6 host.
pub fn base_url(server: &MonitorServer) -> String {
    if server.host.contains(':') {
        format!("http://[{}]:{}", server.host, server.port)
    } else {
        format!("http://{}:{}", server.host, server.port)
    }
}

/// How long a pooled connection may sit idle before it is given up rather than reused.
/// Under the monitor servers' HTTP keep-alive (actix's default, 5 s): with awc's own
/// default (15 s) a call made about 5 s after the last one could go out on a connection
/// the server was closing at that moment and fail as `Disconnected`.
pub const POOLED_CONNECTION_IDLE: Duration = Duration::from_secs(4);

impl MonitorServerClient {
    pub fn new(cluster: &ClusterToken) -> Self {
        let connector = awc::Connector::new()
            .timeout(CONNECT_TIMEOUT)
            .conn_keep_alive(POOLED_CONNECTION_IDLE);
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(REQUEST_TIMEOUT)
            .disable_redirects()
            .bearer_auth(cluster.secret())
            .finish();
        MonitorServerClient { http }
    }

    fn url(server: &MonitorServer, path: &str) -> String {
        format!("{}{path}", base_url(server))
    }

    pub async fn info(&self, server: &MonitorServer) -> Result<ServerInfo, RemoteError> {
        let response = self.http.get(Self::url(server, "/info")).send().await;
        expect_json(response, 200).await
    }

    /// `/info` without the device ids: how many monitors the server runs, and its limit.
    pub async fn load(&self, server: &MonitorServer) -> Result<ServerInfo, RemoteError> {
        let response = self
            .http
            .get(Self::url(server, "/info?devices=false"))
            .send()
            .await;
        expect_json(response, 200).await
    }

    /// `/info` with the epoch of every monitor (`monitors` stays `None` from a server
    /// too old to list them), answered within `within`.
    pub async fn info_with_epochs(
        &self,
        server: &MonitorServer,
        within: Duration,
    ) -> Result<ServerInfo, RemoteError> {
        let response = self
            .http
            .get(Self::url(server, "/info?epochs=true"))
            .timeout(within)
            .send()
            .await;
        expect_json(response, 200).await
    }

    /// Starts several monitors in one call; one outcome per entry, in order.
    pub async fn start_batch(
        &self,
        server: &MonitorServer,
        request: &StartBatchRequest,
    ) -> Result<Vec<BatchOutcome>, RemoteError> {
        let response = self
            .http
            .post(Self::url(server, "/monitors/batch"))
            .send_json(request)
            .await;
        let answer: BatchAnswer = expect_json(response, 200).await?;
        let asked: Vec<i64> = request.monitors.iter().map(|m| m.device.id).collect();
        let answered: Vec<i64> = answer.results.iter().map(|r| r.device_id).collect();
        if asked != answered || answer.server_id != server.id {
            return Err(RemoteError::BadAnswer(format!(
                "server {} answered for other devices or as server {}",
                server.id, answer.server_id
            )));
        }
        Ok(answer.results.into_iter().map(|r| r.outcome).collect())
    }

    /// Stops monitors, each only if it runs under the epoch given or an older one, in
    /// calls of [`STOPS_PER_CALL`]; one result per entry, in order. A server too old
    /// to take batch stops is asked one device at a time, and stops whatever runs.
    pub async fn stop_batch(
        &self,
        server: &MonitorServer,
        stops: &[StopEntry],
    ) -> Result<Vec<StopResult>, RemoteError> {
        let mut results = Vec::with_capacity(stops.len());
        for chunk in stops.chunks(STOPS_PER_CALL) {
            let request = StopBatchRequest {
                monitors: chunk.to_vec(),
            };
            let response = self
                .http
                .post(Self::url(server, "/monitors/stop"))
                .send_json(&request)
                .await;
            let answer: StopBatchAnswer = match expect_answer(response, 200).await? {
                Answered::Json(answer) => answer,
                Answered::NoRoute => {
                    for stop in chunk {
                        results.push(self.stop(server, *stop).await?);
                    }
                    continue;
                }
            };
            let asked: Vec<i64> = chunk.iter().map(|m| m.device_id).collect();
            let answered: Vec<i64> = answer.results.iter().map(|r| r.device_id).collect();
            if asked != answered || answer.server_id != server.id {
                return Err(RemoteError::BadAnswer(format!(
                    "server {} answered a stop for other devices or as server {}",
                    server.id, answer.server_id
                )));
            }
            results.extend(answer.results);
        }
        Ok(results)
    }

    /// Stops one monitor (`DELETE /monitors/{id}?epoch=N`), as [`Self::stop_batch`] does.
    pub async fn stop(
        &self,
        server: &MonitorServer,
        stop: StopEntry,
    ) -> Result<StopResult, RemoteError> {
        let path = format!("/monitors/{}?epoch={}", stop.device_id, stop.epoch);
        let response = self.http.delete(Self::url(server, &path)).send().await;
        let mut response = response.map_err(unreachable)?;
        let status = response.status().as_u16();
        if status == 200 {
            // An older server answers without `outcome`: it stopped whatever ran.
            let ack: StopAck = response
                .json()
                .await
                .map_err(|e| RemoteError::BadAnswer(e.to_string()))?;
            return Ok(StopResult {
                device_id: stop.device_id,
                outcome: ack.outcome,
                epoch: ack.epoch,
            });
        }
        let (code, message) = read_error(&mut response).await;
        match (status, code.as_deref()) {
            (404, Some("not_monitored")) => Ok(StopResult {
                device_id: stop.device_id,
                outcome: StopOutcome::NotRunning,
                epoch: None,
            }),
            _ => Err(RemoteError::Refused { status, message }),
        }
    }

    /// Hands new device data to the monitor; `Ok(false)` when it does not run there.
    pub async fn update_device(
        &self,
        server: &MonitorServer,
        device: &DeviceSpec,
    ) -> Result<bool, RemoteError> {
        let response = self
            .http
            .put(Self::url(server, &format!("/monitors/{}", device.id)))
            .send_json(device)
            .await;
        found_or_not(response).await
    }

    pub async fn put_config(
        &self,
        server: &MonitorServer,
        config: &MonitorConfig,
    ) -> Result<ConfigApplied, RemoteError> {
        let response = self
            .http
            .put(Self::url(server, "/config"))
            .send_json(config)
            .await;
        expect_json(response, 200).await
    }

    /// The statuses of those of `device_ids` that run on `server`.
    pub async fn statuses(
        &self,
        server: &MonitorServer,
        device_ids: &[i64],
    ) -> Result<Vec<MonitorStatus>, RemoteError> {
        let mut statuses = Vec::with_capacity(device_ids.len());
        for chunk in device_ids.chunks(IDS_PER_CALL) {
            let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let url = format!("{}?ids={}", Self::url(server, "/monitors"), ids.join(","));
            let response = self.http.get(url).send().await;
            statuses.extend(expect_json::<Vec<MonitorStatus>>(response, 200).await?);
        }
        Ok(statuses)
    }
}

type Answer = Result<awc::ClientResponse, awc::error::SendRequestError>;

fn unreachable(error: awc::error::SendRequestError) -> RemoteError {
    RemoteError::Unreachable(error.to_string())
}

async fn expect_json<T: DeserializeOwned>(answer: Answer, expected: u16) -> Result<T, RemoteError> {
    let mut response = answer.map_err(unreachable)?;
    let status = response.status().as_u16();
    if status != expected {
        return Err(RemoteError::Refused {
            status,
            message: error_message(&mut response).await,
        });
    }
    read_json(&mut response).await
}

async fn read_json<T: DeserializeOwned>(
    response: &mut awc::ClientResponse,
) -> Result<T, RemoteError> {
    response
        .json::<T>()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| RemoteError::BadAnswer(e.to_string()))
}

/// The answer of a route an older server may not have.
enum Answered<T> {
    Json(T),
    /// The server has no such route (Vigil's 404 `not_found` for an unknown path).
    NoRoute,
}

async fn expect_answer<T: DeserializeOwned>(
    answer: Answer,
    expected: u16,
) -> Result<Answered<T>, RemoteError> {
    let mut response = answer.map_err(unreachable)?;
    let status = response.status().as_u16();
    if status == expected {
        return read_json(&mut response).await.map(Answered::Json);
    }
    let (code, message) = read_error(&mut response).await;
    match (status, code.as_deref()) {
        // An older server has no such route; one whose `/monitors/{id}` takes the path
        // answers that the method is not taken there.
        (404, Some("not_found")) | (405, Some("method_not_allowed")) => Ok(Answered::NoRoute),
        _ => Err(RemoteError::Refused { status, message }),
    }
}

/// `Ok(true)` on 200, `Ok(false)` when the server says the device is not monitored
/// there. Any other 404 (another program on that port, say) is not taken as an answer.
async fn found_or_not(answer: Answer) -> Result<bool, RemoteError> {
    let mut response = answer.map_err(unreachable)?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(true);
    }
    let (code, message) = read_error(&mut response).await;
    match (status, code.as_deref()) {
        (404, Some("not_monitored")) => Ok(false),
        _ => Err(RemoteError::Refused { status, message }),
    }
}

async fn error_message(response: &mut awc::ClientResponse) -> String {
    read_error(response).await.1
}

/// The `code` and sentence of a Vigil error body, or just the status line when the
/// answer is not one.
async fn read_error(response: &mut awc::ClientResponse) -> (Option<String>, String) {
    match response.json::<ErrorBody>().await {
        Ok(body) => (Some(body.code), body.error),
        Err(_) => (None, response.status().to_string()),
    }
}
