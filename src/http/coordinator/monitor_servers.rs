//! `/api/v1/monitor-servers`: the registered servers with their live status (a server
//! that is down shows as `down` with `running_monitors: null`; it never fails the list),
//! and forgetting a server that is gone for good. Admin only: servers are the
//! infrastructure every company shares.

use actix_web::{web, HttpResponse};

use serde::Serialize;

use super::lists::Listing;
use super::live::server_views;
use super::state::AppState;
use super::views::MonitorServerView;
use crate::actors::scheduler::{ForgetOutcome, ForgetServer};
use crate::db;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Id;
use crate::remote::MonitorServerClient;

/// A server forgotten, and how many devices it held that are now unmonitored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    id: i64,
    deleted: bool,
    devices_released: usize,
}

#[utoipa::path(get, operation_id = "list_monitor_servers", path = "/api/v1/monitor-servers", tag = "cluster", responses((status = 200, description = "Every server with its live status", body = Vec<MonitorServerView>)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("see the monitor servers")?;
    let make = || async {
        let servers = state.db.run(db::monitor_servers::list).await?;
        Ok(server_views(&client, &state.live, servers).await)
    };
    state.lists.answer(Listing::MonitorServers, make).await
}

#[utoipa::path(get, operation_id = "get_monitor_server", path = "/api/v1/monitor-servers/{id}", tag = "cluster", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The server with its live status", body = MonitorServerView)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("see the monitor servers")?;
    let id = id.into_inner().0;
    let server = state
        .db
        .run(move |conn| db::monitor_servers::get(conn, id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("monitor server {id} does not exist")))?;
    let mut views = server_views(&client, &state.live, vec![server]).await;
    let view = views
        .pop()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no view for monitor server {id}")))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Forgets a server that is gone for good: its devices become unmonitored (and can be
/// started elsewhere, stopped or deleted). Refused while the server still answers.
#[utoipa::path(delete, operation_id = "forget_monitor_server", path = "/api/v1/monitor-servers/{id}", tag = "cluster", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Forgotten; its devices released", body = Forgotten)))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("forget monitor servers")?;
    let id = id.into_inner().0;
    match state.scheduler.send(ForgetServer { server_id: id }).await?? {
        ForgetOutcome::Forgotten { released } => Ok(HttpResponse::Ok().json(Forgotten {
            id,
            deleted: true,
            devices_released: released,
        })),
        ForgetOutcome::NotFound => Err(ApiError::NotFound(format!("monitor server {id} does not exist"))),
        ForgetOutcome::StillUp { running_monitors } => Err(ApiError::conflict(
            "server_up",
            format!(
                "monitor server {id} is up and runs {running_monitors} monitor(s); stop its process before forgetting it"
            ),
        )),
    }
}
