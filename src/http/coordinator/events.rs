//! `GET /api/v1/events`: every change of a device's health, newest first, filtered by
//! device, company and time.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input;
use super::state::AppState;
use super::views::utc;
use crate::db;
use crate::db::events::EventFilter;
use crate::db::models::Event;
use crate::http::auth::Caller;
use crate::http::error::ApiError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    device_id: Option<i64>,
    company_id: Option<i64>,
    /// RFC 3339; only events at or after it.
    since: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub device_id: i64,
    pub company_id: i64,
    /// `state` (a health change: `from`/`to` are states) or `moved` (the monitor was
    /// placed on another server: `from`/`to` name the servers).
    pub kind: String,
    pub from: String,
    pub to: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// The assignment epoch of the monitor that saw the change.
    pub epoch: i64,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            device_id: e.device_id,
            company_id: e.company_id,
            kind: e.kind,
            from: e.from_state,
            to: e.to_state,
            at: utc(e.at),
            reason: e.reason,
            epoch: e.epoch,
        }
    }
}

/// Events the caller sees: a scoped token's company only, whatever `company_id` says.
#[utoipa::path(get, operation_id = "list_events", path = "/api/v1/events", tag = "events", params(EventsQuery), responses((status = 200, description = "State changes and moves, newest first", body = Vec<EventView>)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let Some(company_id) = caller.list_filter(query.company_id) else {
        return Ok(HttpResponse::Ok().json(Vec::<EventView>::new()));
    };
    let (limit, offset) = input::page(query.limit, query.offset)?;
    let since = query
        .since
        .as_deref()
        .map(|value| input::instant("since", value).map(|at| at.naive_utc()))
        .transpose()?;
    let filter = EventFilter {
        device_id: query.device_id,
        company_id,
        since,
    };
    let events = state
        .db
        .run(move |conn| db::events::list(conn, &filter, limit, offset))
        .await?;
    let views: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}
