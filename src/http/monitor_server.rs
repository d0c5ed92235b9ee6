//! A monitor server's own API, called by coordinators: start, stop and change monitors,
//! apply config, report info. Each handler sends one message to the `MonitorServerActor`.

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
    StartRefused, StopMonitor,
};
use crate::actors::registry::Tracked;
use crate::actors::writer::WriterStats;
use crate::domain::{self, DeviceSpec, MonitorConfig};
use crate::metrics::exposition::Exposition;
use crate::remote::wire::{
    BatchAnswer, BatchOutcome, BatchResult, ConfigApplied, MonitorAck, StartBatchRequest,
    StartMonitorRequest,
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

async fn stop(
    state: web::Data<MonitorServerState>,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let device_id = id.into_inner().0;
    state
        .actor
        .send(StopMonitor { device_id })
        .await?
        .map_err(|_| ApiError::NotMonitored(device_id))?;
    Ok(HttpResponse::Ok().json(MonitorAck {
        device_id,
        server_id: state.server_id,
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
#[serde(deny_unknown_fields)]
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

async fn info(state: web::Data<MonitorServerState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.actor.send(GetInfo).await?))
}

/// `GET /metrics`: this server's monitors and writer, and the latest result of each of
/// its monitors, labelled as the coordinator labels them.
async fn metrics(state: web::Data<MonitorServerState>) -> Result<HttpResponse, ApiError> {
    let info = state.actor.send(GetInfo).await?;
    let statuses = state.actor.send(ListMonitors { device_ids: None }).await?;
    let mut out = Exposition::new();
    super::metrics::write_runtime(
        &mut out,
        state.server_id,
        info.running_monitors,
        info.max_monitors,
        &state.polls,
        &state.writer,
    );
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
