//! `GET /debug/actors`: every actor of this node, with its mailbox length, the count of
//! messages it handled by type, and its last few messages.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::actors::registry::ActorRegistry;

pub async fn actors(registry: web::Data<ActorRegistry>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "actors": registry.snapshot() }))
}
