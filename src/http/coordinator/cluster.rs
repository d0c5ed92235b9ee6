//! `GET /api/v1/cluster`: the nodes of the cluster as this coordinator sees them.

use actix_web::{web, HttpResponse};

use super::state::AppState;
use crate::actors::membership::{ClusterView, GetCluster};
use crate::http::auth::Caller;
use crate::http::error::ApiError;

/// `GET /api/v1/cluster`: every node with its role, address, counter and last advance,
/// and which is master, as this coordinator saw them at its last look. Admin only.
#[utoipa::path(get, operation_id = "get_cluster", path = "/api/v1/cluster", tag = "cluster", responses((status = 200, description = "The nodes and the master", body = ClusterView)))]
pub async fn cluster(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.admin("see the cluster")?;
    Ok(HttpResponse::Ok().json(state.membership.send(GetCluster).await?))
}
