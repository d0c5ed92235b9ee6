//! A monitor server's own API, called by coordinators: start, stop and change monitors,
//! apply config, report info. Bodies and queries ignore fields they do not know (a newer
//! coordinator may send some; see `remote::wire`). Each handler sends one message to the `MonitorServerActor`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{resource, Id};
use super::metrics::DeviceReading;
use crate::actors::device_monitor::PollStats;
use crate::actors::messages::{UpdateConfig, UpdateDevice};
use crate::actors::monitor_server::{
    GetInfo, GetMonitorStatus, ListMonitors, MonitorServerActor, StartMonitor, StartMonitors,
    StartRefused, StopAnswer, StopMonitor, StopMonitors,
};
use crate::actors::reconciler::ReconcileStats;
use crate::actors::registry::Tracked;
use crate::actors::remote_writer::RemoteWriteStats;
use crate::actors::writer::WriterStats;
use crate::domain::{self, DeviceSpec, MonitorConfig};
use crate::metrics::exposition::Exposition;
use crate::remote::wire::{
    BatchAnswer, BatchOutcome, BatchResult, ConfigApplied, MonitorAck, StartBatchRequest,
    StartMonitorRequest, StopAck, StopBatchAnswer, StopBatchRequest, StopOutcome, StopResult,
};

/// A first poll is put off by one day at most (the longest poll interval).
const MAX_FIRST_POLL_AFTER_MS: u64 = domain::MAX_POLL_INTERVAL_MS as u64;

/// Most device ids one `GET /monitors?ids=` takes.
const MAX_IDS: usize = 10_000;

pub struct MonitorServerState {
    pub server_id: i64,
    pub actor: Tracked<MonitorServerActor>,
    pub polls: Arc<PollStats>,
    pub writer: Arc<WriterStats>,
    /// What this node's reconciler did while it was master.
    pub reconciled: Arc<ReconcileStats>,
    /// What its remote writer did, when samples also go by remote write.
    pub remote_write: Option<Arc<RemoteWriteStats>>,
}

fn check_config(config: &MonitorConfig) -> Result<(), ApiError> {
    domain::check_limits(config).map_err(|e| ApiError::bad_request("invalid_config", e))
}

async fn start(
    state: web::Data<MonitorServerState>,
    body: web::Json<StartMonitorRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    check_config(&request.config)?;
    let device_id = request.device.id;
    let answer = state
        .actor
        .send(StartMonitor {
            device: request.device,
            config: request.config,
            epoch: request.epoch,
        })
        .await?;
    match answer {
        Ok(()) => Ok(HttpResponse::Created().json(MonitorAck {
            device_id,
            server_id: state.server_id,
        })),
        Err(refused @ StartRefused::AlreadyRunning(_)) => {
            Err(ApiError::conflict("already_running", refused.to_string()))
        }
        Err(refused @ StartRefused::AtLimit(_)) => Err(ApiError::TooManyRequests {
            code: "at_limit",
            message: refused.to_string(),
        }),
    }
}

/// `POST /monitors/batch`: several starts in one call and one supervisor message.
async fn start_batch(
    state: web::Data<MonitorServerState>,
    body: web::Json<StartBatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    check_config(&request.config)?;
    let ids: Vec<i64> = request.monitors.iter().map(|m| m.device.id).collect();
    let monitors = request
        .monitors
        .into_iter()
        .map(|m| {
            let delay = Duration::from_millis(m.first_poll_after_ms.min(MAX_FIRST_POLL_AFTER_MS));
            (m.device, m.epoch, delay)
        })
        .collect();
    let answers = state
        .actor
        .send(StartMonitors {
            config: request.config,
            monitors,
        })
        .await?;
    let results = ids
        .into_iter()
        .zip(answers)
        .map(|(device_id, answer)| BatchResult {
            device_id,
            outcome: match answer {
                Ok(()) => BatchOutcome::Started,
                Err(StartRefused::AlreadyRunning(_)) => BatchOutcome::AlreadyRunning,
                Err(StartRefused::AtLimit(_)) => BatchOutcome::AtLimit,
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(BatchAnswer {
        server_id: state.server_id,
        results,
    }))
}

#[derive(Debug, Deserialize)]
struct StopQuery {
    /// The newest epoch the stop means; any copy is stopped when absent.
    epoch: Option<i64>,
}

fn stop_result(device_id: i64, answer: StopAnswer) -> StopResult {
    let (outcome, epoch) = match answer {
        StopAnswer::Stopped { epoch } => (StopOutcome::Stopped, Some(epoch)),
        StopAnswer::KeptNewer { epoch } => (StopOutcome::KeptNewer, Some(epoch)),
        StopAnswer::NotRunning => (StopOutcome::NotRunning, None),
    };
    StopResult {
        device_id,
        outcome,
        epoch,
    }
}

/// `DELETE /monitors/{id}[?epoch=N]`: 200 with what it did (`stopped`, or `kept_newer`
/// for a copy under a newer epoch than the one named), 404 when nothing runs.
async fn stop(
    state: web::Data<MonitorServerState>,
    id: web::Path<Id>,
    query: web::Query<StopQuery>,
) -> Result<HttpResponse, ApiError> {
    let device_id = id.into_inner().0;
    let answer = state
        .actor
        .send(StopMonitor {
            device_id,
            epoch: query.epoch,
        })
        .await?;
    let result = stop_result(device_id, answer);
    if result.outcome == StopOutcome::NotRunning {
        return Err(ApiError::NotMonitored(device_id));
    }
    Ok(HttpResponse::Ok().json(StopAck {
        device_id,
        server_id: state.server_id,
        outcome: result.outcome,
        epoch: result.epoch,
    }))
}

/// `POST /monitors/stop`: several epoch-bounded stops in one call and one supervisor
/// message, one result per entry.
async fn stop_batch(
    state: web::Data<MonitorServerState>,
    body: web::Json<StopBatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let stops: Vec<(i64, i64)> = body
        .monitors
        .iter()
        .map(|m| (m.device_id, m.epoch))
        .collect();
    let ids: Vec<i64> = stops.iter().map(|(id, _)| *id).collect();
    let answers = state.actor.send(StopMonitors(stops)).await?;
    let results = ids
        .into_iter()
        .zip(answers)
        .map(|(device_id, answer)| stop_result(device_id, answer))
        .collect();
    Ok(HttpResponse::Ok().json(StopBatchAnswer {
        server_id: state.server_id,
        results,
    }))
}

async fn update(
    state: web::Data<MonitorServerState>,
    id: web::Path<Id>,
    body: web::Json<DeviceSpec>,
) -> Result<HttpResponse, ApiError> {
    let device_id = id.into_inner().0;
    let device = body.into_inner();
    if device.id != device_id {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!(
                "the body is device {} but the path names device {device_id}",
                device.id
            ),
        ));
    }
    if !state.actor.send(UpdateDevice(device)).await? {
        return Err(ApiError::NotMonitored(device_id));
    }
    Ok(HttpResponse::Ok().json(MonitorAck {
        device_id,
        server_id: state.server_id,
    }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Comma-separated device ids; all monitors when absent.
    ids: Option<String>,
}

fn parse_ids(raw: &str) -> Result<Vec<i64>, ApiError> {
    let ids: Vec<i64> = raw
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.trim().parse().map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("ids must be comma-separated integers (got {part:?})"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if ids.len() > MAX_IDS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("at most {MAX_IDS} ids per request (got {})", ids.len()),
        ));
    }
    Ok(ids)
}

async fn list(
    state: web::Data<MonitorServerState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let device_ids = query.ids.as_deref().map(parse_ids).transpose()?;
    let statuses = state.actor.send(ListMonitors { device_ids }).await?;
    Ok(HttpResponse::Ok().json(statuses))
}

async fn status(
    state: web::Data<MonitorServerState>,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let device_id = id.into_inner().0;
    let status = state
        .actor
        .send(GetMonitorStatus { device_id })
        .await?
        .ok_or(ApiError::NotMonitored(device_id))?;
    Ok(HttpResponse::Ok().json(status))
}

async fn config(
    state: web::Data<MonitorServerState>,
    body: web::Json<MonitorConfig>,
) -> Result<HttpResponse, ApiError> {
    let config = body.into_inner();
    check_config(&config)?;
    let monitors_updated = state.actor.send(UpdateConfig(config)).await?;
    Ok(HttpResponse::Ok().json(ConfigApplied { monitors_updated }))
}

#[derive(Debug, Deserialize)]
struct InfoQuery {
    /// List every monitor with its epoch too.
    #[serde(default)]
    epochs: bool,
    /// List the device ids (the default); `false` leaves `device_ids` empty, for a
    /// caller that wants the counts alone.
    #[serde(default = "yes")]
    devices: bool,
}

/// `GET /info[?epochs=true][&devices=false]`: running count, limit, device ids (empty
/// with `devices=false`), and with `epochs` each monitor's epoch (left out otherwise,
/// so an older coordinator reads the same body).
async fn info(
    state: web::Data<MonitorServerState>,
    query: web::Query<InfoQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut info = state.actor.send(GetInfo).await?;
    if !query.epochs {
        info.monitors = None;
    }
    if !query.devices {
        info.device_ids = Vec::new();
    }
    Ok(HttpResponse::Ok().json(info))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsQuery {
    /// Include each monitor's last poll (the default); `false` gives the server's own
    /// figures alone, which stay cheap to scrape however many monitors it runs.
    #[serde(default = "yes")]
    devices: bool,
}

fn yes() -> bool {
    true
}

/// `GET /metrics[?devices=false]`: this server's monitors and writer, and (unless
/// `devices=false`) the latest result of each of its monitors, labelled as the
/// coordinator labels them.
async fn metrics(
    state: web::Data<MonitorServerState>,
    query: web::Query<MetricsQuery>,
) -> Result<HttpResponse, ApiError> {
    let info = state.actor.send(GetInfo).await?;
    let statuses = if query.devices {
        state.actor.send(ListMonitors { device_ids: None }).await?
    } else {
        Vec::new()
    };
    let mut out = Exposition::new();
    super::metrics::write_runtime(
        &mut out,
        state.server_id,
        info.running_monitors,
        info.max_monitors,
        &state.polls,
        &state.writer,
    );
    super::metrics::write_reconcile(&mut out, &state.reconciled);
    if let Some(remote) = &state.remote_write {
        super::metrics::write_remote_write(&mut out, state.server_id, remote);
    }
    let devices: Vec<DeviceReading> = statuses
        .into_iter()
        .filter_map(|status| {
            let result = status.last_result?;
            Some(DeviceReading {
                labels: vec![
                    ("device", status.device.name),
                    ("company", status.device.company),
                    ("device_id", status.device.id.to_string()),
                ],
                metrics: result.metrics,
            })
        })
        .collect();
    super::metrics::write_devices(&mut out, &devices);
    Ok(super::metrics::respond(out.finish()))
}

async fn healthz(state: web::Data<MonitorServerState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "server_id": state.server_id }))
}

/// The monitor server's route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/monitors")
            .route(web::get().to(list))
            .route(web::post().to(start)),
    )
    .service(resource("/monitors/batch").route(web::post().to(start_batch)))
    .service(resource("/monitors/stop").route(web::post().to(stop_batch)))
    .service(
        resource("/monitors/{device_id}")
            .route(web::get().to(status))
            .route(web::put().to(update))
            .route(web::delete().to(stop)),
    )
    .service(resource("/config").route(web::put().to(config)))
    .service(resource("/info").route(web::get().to(info)))
    .service(resource("/metrics").route(web::get().to(metrics)))
    .service(
        resource("/healthz")
            .route(web::get().to(healthz))
            .route(web::head().to(healthz)),
    )
    .service(resource("/debug/actors").route(web::get().to(super::debug::actors)));
}

#[cfg(test)]
mod tests {
    use super::parse_ids;

    #[test]
    fn ids_are_comma_separated_integers() {
        assert_eq!(parse_ids("1,2,3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_ids("").unwrap(), Vec::<i64>::new());
        assert!(parse_ids("1,x").is_err());
    }
}
