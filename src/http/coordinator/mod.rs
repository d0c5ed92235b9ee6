//! The coordinator's REST API under `/api/v1`: one route table, thin handlers that
//! parse, call the scheduler or a db function, and map the answer.

mod companies;
mod devices;
mod events;
mod exposition;
mod history;
mod input;
mod monitor_servers;
mod settings;
pub mod views;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;

use crate::actors::membership::{GetCluster, Membership};
use crate::actors::registry::Tracked;
use crate::actors::scheduler::SchedulerActor;
use crate::db::Db;
use crate::http::extract::resource;

/// What every coordinator handler shares. The per-worker `MonitorServerClient` is
/// separate app data (awc clients stay on their thread).
pub struct AppState {
    pub db: Db,
    pub scheduler: Tracked<SchedulerActor>,
    pub membership: Tracked<Membership>,
}

/// 200 when the operation reached every device asked for, 503 otherwise; same body.
fn report_response(complete: bool, report: &impl Serialize) -> HttpResponse {
    let status = if complete {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(report)
}

async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "vigil",
        "version": env!("CARGO_PKG_VERSION"),
        "api": "/api/v1",
        "links": {
            "devices": "/api/v1/devices",
            "companies": "/api/v1/companies",
            "monitor_servers": "/api/v1/monitor-servers",
            "config": "/api/v1/config",
            "events": "/api/v1/events",
            "cluster": "/api/v1/cluster",
            "metrics": "/metrics",
            "actors": "/debug/actors",
            "health": "/healthz",
        }
    }))
}

/// `GET /api/v1/cluster`: every node with its role, address, counter and last advance,
/// and which is master, as this coordinator saw them at its last look.
async fn cluster(state: web::Data<AppState>) -> Result<HttpResponse, crate::http::error::ApiError> {
    Ok(HttpResponse::Ok().json(state.membership.send(GetCluster).await?))
}

/// The coordinator's route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(
            resource("/healthz")
                .route(web::get().to(crate::http::healthz))
                .route(web::head().to(crate::http::healthz)),
        )
        .service(resource("/debug/actors").route(web::get().to(crate::http::debug::actors)))
        .service(resource("/metrics").route(web::get().to(exposition::metrics)))
        .service(
            web::scope("/api/v1")
                .service(
                    resource("/companies")
                        .route(web::get().to(companies::list))
                        .route(web::post().to(companies::create)),
                )
                .service(
                    resource("/companies/{id}")
                        .route(web::get().to(companies::get))
                        .route(web::delete().to(companies::delete)),
                )
                .service(resource("/companies/{id}/start").route(web::post().to(companies::start)))
                .service(resource("/companies/{id}/stop").route(web::post().to(companies::stop)))
                .service(
                    resource("/devices")
                        .route(web::get().to(devices::list))
                        .route(web::post().to(devices::create)),
                )
                .service(
                    resource("/devices/{id}")
                        .route(web::get().to(devices::get))
                        .route(web::put().to(devices::update))
                        .route(web::delete().to(devices::delete)),
                )
                .service(resource("/devices/{id}/start").route(web::post().to(devices::start)))
                .service(resource("/devices/{id}/stop").route(web::post().to(devices::stop)))
                .service(resource("/devices/{id}/metrics").route(web::get().to(history::history)))
                .service(
                    resource("/devices/{id}/metrics/latest").route(web::get().to(history::latest)),
                )
                .service(resource("/events").route(web::get().to(events::list)))
                .service(resource("/cluster").route(web::get().to(cluster)))
                .service(
                    resource("/config")
                        .route(web::get().to(settings::get))
                        .route(web::put().to(settings::update)),
                )
                .service(resource("/monitor-servers").route(web::get().to(monitor_servers::list)))
                .service(
                    resource("/monitor-servers/{id}")
                        .route(web::get().to(monitor_servers::get))
                        .route(web::delete().to(monitor_servers::delete)),
                ),
        );
}
