//! HTTP servers: the coordinator's REST API, the monitor server's internal API, and
//! what both serve (health, `/debug/actors`, JSON errors).

pub mod auth;
pub mod coordinator;
pub mod debug;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod monitor_server;
pub mod rate;
pub mod token_cache;

use actix_web::HttpResponse;
use serde_json::json;

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "meta", security(()), responses((status = 200, description = "Up", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `HEAD /healthz`: the same, for checks that only look at the status.
#[utoipa::path(head, operation_id = "healthz_head", path = "/healthz", tag = "meta", security(()), responses((status = 200, description = "Up")))]
pub async fn healthz_head() -> HttpResponse {
    healthz().await
}
