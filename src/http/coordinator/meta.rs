//! What the coordinator says about itself: the index at `/` and its actors at
//! `/debug/actors`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::actors::registry::ActorRegistry;
use crate::http::auth::Caller;
use crate::http::error::ApiError;

/// `GET /`: what this server is and where its API lives.
#[utoipa::path(get, operation_id = "index", path = "/", tag = "meta", security(()), responses((status = 200, description = "Name, version and links", body = Object)))]
pub async fn index() -> HttpResponse {
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
            "openapi": "/api/v1/openapi.json",
            "metrics": "/metrics",
            "actors": "/debug/actors",
            "health": "/healthz",
        }
    }))
}

/// `GET /debug/actors` on the coordinator: admin only.
#[utoipa::path(get, operation_id = "debug_actors", path = "/debug/actors", tag = "meta", params(crate::http::debug::ActorsQuery), responses((status = 200, description = "Every actor of this node: mailbox, messages handled, recent ones", body = Object)))]
pub async fn debug_actors(
    caller: Caller,
    registry: web::Data<ActorRegistry>,
    query: web::Query<crate::http::debug::ActorsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("see the actors")?;
    Ok(crate::http::debug::actors(registry, query).await)
}
