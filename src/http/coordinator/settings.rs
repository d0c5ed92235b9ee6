//! `/api/v1/config`: read the config (with the live monitor servers, as seed 000's
//! `MonitorServerResponse` list, for admins), and change it (admins only): saved, then
//! broadcast to every server.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::live::server_views;
use super::state::AppState;
use super::views::{ConfigView, MonitorServerView};
use crate::actors::scheduler::{ApplyConfig, ServerApplied, ServerUnreached};
use crate::db;
use crate::db::models::ConfigChanges;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::remote::MonitorServerClient;

/// A partial config; numbers are taken wide so out-of-range values get our message,
/// not a parser's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    max_monitors_per_server: Option<i64>,
    poll_interval_ms: Option<i64>,
    timeout_ms: Option<i64>,
    alert_threshold: Option<i64>,
    critical_threshold: Option<i64>,
    balance_method: Option<String>,
    unreachable_after: Option<i64>,
    retention_hours: Option<i64>,
    heartbeat_ms: Option<i64>,
    validate_ms: Option<i64>,
    missed_checks: Option<i64>,
    minute_retention_days: Option<i64>,
    hour_retention_days: Option<i64>,
}

impl ConfigPatch {
    fn is_empty(&self) -> bool {
        matches!(
            self,
            ConfigPatch {
                max_monitors_per_server: None,
                poll_interval_ms: None,
                timeout_ms: None,
                alert_threshold: None,
                critical_threshold: None,
                balance_method: None,
                unreachable_after: None,
                retention_hours: None,
                heartbeat_ms: None,
                validate_ms: None,
                missed_checks: None,
                minute_retention_days: None,
                hour_retention_days: None,
            }
        )
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ConfigWithServers {
    #[serde(flatten)]
    config: ConfigView,
    /// The servers, for an admin only: a company's token sees the settings its devices
    /// are polled with, not the infrastructure.
    #[serde(skip_serializing_if = "Option::is_none")]
    monitor_servers: Option<Vec<MonitorServerView>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ConfigApplied {
    config: ConfigView,
    applied: Vec<ServerApplied>,
    unreachable: Vec<ServerUnreached>,
}

#[utoipa::path(get, operation_id = "get_config", path = "/api/v1/config", tag = "config", responses((status = 200, description = "The config (with the servers, for admins)", body = ConfigWithServers)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
) -> Result<HttpResponse, ApiError> {
    let row = state.db.run(db::config::get).await?;
    let monitor_servers = match caller.scope() {
        Some(_) => None,
        None => {
            let servers = state.db.run(db::monitor_servers::list).await?;
            Some(server_views(&client, &state.live, servers).await)
        }
    };
    Ok(HttpResponse::Ok().json(ConfigWithServers {
        config: row.into(),
        monitor_servers,
    }))
}

/// A value for an `INTEGER` column; anything wider is out of every allowed range.
pub(super) fn narrow(field: &str, value: Option<i64>) -> Result<Option<i32>, ApiError> {
    value
        .map(|v| {
            i32::try_from(v).map_err(|_| {
                ApiError::bad_request(
                    "invalid_config",
                    format!("{field} is out of range (got {v})"),
                )
            })
        })
        .transpose()
}

#[utoipa::path(put, operation_id = "update_config", path = "/api/v1/config", tag = "config", request_body = ConfigPatch, responses((status = 200, description = "Saved and broadcast", body = ConfigApplied)))]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ConfigPatch>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("change the config")?;
    let patch = body.into_inner();
    if patch.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_config",
            "give at least one setting to change",
        ));
    }
    let changes = ConfigChanges {
        max_monitors_per_server: narrow("max_monitors_per_server", patch.max_monitors_per_server)?,
        poll_interval_ms: patch.poll_interval_ms,
        timeout_ms: patch.timeout_ms,
        alert_threshold: narrow("alert_threshold", patch.alert_threshold)?,
        critical_threshold: narrow("critical_threshold", patch.critical_threshold)?,
        balance_method: patch.balance_method,
        unreachable_after: narrow("unreachable_after", patch.unreachable_after)?,
        retention_hours: narrow("retention_hours", patch.retention_hours)?,
        heartbeat_ms: patch.heartbeat_ms,
        validate_ms: patch.validate_ms,
        missed_checks: narrow("missed_checks", patch.missed_checks)?,
        minute_retention_days: narrow("minute_retention_days", patch.minute_retention_days)?,
        hour_retention_days: narrow("hour_retention_days", patch.hour_retention_days)?,
    };
    let report = state.scheduler.send(ApplyConfig { changes }).await??;
    Ok(HttpResponse::Ok().json(ConfigApplied {
        config: report.config.into(),
        applied: report.applied,
        unreachable: report.unreachable,
    }))
}
