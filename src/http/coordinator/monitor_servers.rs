//! `/api/v1/monitor-servers`: the registered servers with their live status. A server
//! that is down shows as `down` with `running_monitors: null`; it never fails the list.

use actix_web::{web, HttpResponse};

use super::views::server_views;
use super::AppState;
use crate::db;
use crate::http::error::ApiError;
use crate::remote::MonitorServerClient;

pub async fn list(
    state: web::Data<AppState>,
    client: web::Data<MonitorServerClient>,
) -> Result<HttpResponse, ApiError> {
    let servers = state.db.run(db::monitor_servers::list).await?;
    Ok(HttpResponse::Ok().json(server_views(&client, servers).await))
}

pub async fn get(
    state: web::Data<AppState>,
    client: web::Data<MonitorServerClient>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let server = state
        .db
        .run(move |conn| db::monitor_servers::get(conn, id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("monitor server {id} does not exist")))?;
    let mut views = server_views(&client, vec![server]).await;
    let view = views
        .pop()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no view for monitor server {id}")))?;
    Ok(HttpResponse::Ok().json(view))
}
