//! `GET /debug/actors[?kind=K]`: every actor of this node (or those of one kind), with
//! its mailbox length, the count of messages it handled by type, and its last few
//! messages.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::actors::registry::ActorRegistry;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActorsQuery {
    kind: Option<String>,
}

pub async fn actors(
    registry: web::Data<ActorRegistry>,
    query: web::Query<ActorsQuery>,
) -> HttpResponse {
    let mut actors = registry.snapshot();
    if let Some(kind) = &query.kind {
        actors.retain(|actor| actor.kind == kind);
    }
    HttpResponse::Ok().json(json!({ "actors": actors }))
}
