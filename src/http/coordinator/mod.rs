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
mod tokens;
pub mod views;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;

use crate::actors::membership::{GetCluster, Membership};
use crate::actors::registry::{ActorRegistry, Tracked};
use crate::actors::scheduler::SchedulerActor;
use crate::db::Db;
use crate::http::auth::{require_token, Caller};
use crate::http::error::ApiError;
use crate::http::extract::resource;

/// What every coordinator handler shares. The per-worker `MonitorServerClient` is
/// separate app data (awc clients stay on their thread).
pub struct AppState {
    pub db: Db,
    pub scheduler: Tracked<SchedulerActor>,
    pub membership: Tracked<Membership>,
    /// Networks device addresses may not point into.
    pub policy: crate::probe::AddressPolicy,
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
            "tokens": "/api/v1/tokens",
            "metrics": "/metrics",
            "actors": "/debug/actors",
            "health": "/healthz",
        }
    }))
}

/// `GET /api/v1/cluster`: every node with its role, address, counter and last advance,
/// and which is master, as this coordinator saw them at its last look. Admin only.
async fn cluster(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.admin("see the cluster")?;
    Ok(HttpResponse::Ok().json(state.membership.send(GetCluster).await?))
}

/// `GET /debug/actors` on the coordinator: admin only.
async fn debug_actors(
    caller: Caller,
    registry: web::Data<ActorRegistry>,
    query: web::Query<crate::http::debug::ActorsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("see the actors")?;
    Ok(crate::http::debug::actors(registry, query).await)
}

/// The coordinator's route table. `/` and `/healthz` are open; everything else needs an
/// API token (`require_token`), and each handler checks what its caller may do.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(
            resource("/healthz")
                .route(web::get().to(crate::http::healthz))
                .route(web::head().to(crate::http::healthz)),
        )
        .service(
            resource("/debug/actors")
                .wrap(from_fn(require_token))
                .route(web::get().to(debug_actors)),
        )
        .service(
            resource("/metrics")
                .wrap(from_fn(require_token))
                .route(web::get().to(exposition::metrics)),
        )
        .service(
            web::scope("/api/v1")
                .wrap(from_fn(require_token))
                .service(
                    resource("/tokens")
                        .route(web::get().to(tokens::list))
                        .route(web::post().to(tokens::create)),
                )
                .service(
                    resource("/tokens/{id}")
                        .route(web::get().to(tokens::get))
                        .route(web::delete().to(tokens::revoke)),
                )
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
