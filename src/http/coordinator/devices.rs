//! `/api/v1/devices`: create, list, read, change, delete; start and stop one device.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::input;
use super::state::AppState;
use super::views::{monitoring_of, Deleted, DeviceView};
use crate::actors::scheduler::{
    DeleteDevice, DeleteOutcome, RouteDeviceUpdate, RouteOutcome, StartDevices, StartReason,
    StartReport, StopDevices, StopResult, StopStatus,
};
use crate::db::models::{Device, DeviceChanges, NewDevice};
use crate::db::{self, Db};
use crate::domain::DeviceKind;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Id;
use crate::probe::{self, policy, AddressPolicy};
use crate::remote::MonitorServerClient;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceBody {
    /// Required with an admin token; a scoped token's devices go to its own company.
    company_id: Option<i64>,
    name: String,
    address: String,
    kind: String,
    expected_status: Option<i64>,
    enabled: Option<bool>,
}

/// A new device's fields, each checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckedDevice {
    pub company_id: Option<i64>,
    pub name: String,
    pub address: String,
    pub kind: DeviceKind,
    pub expected_status: Option<i32>,
    pub enabled: bool,
}

impl NewDeviceBody {
    /// The body's fields checked one by one (the company is checked against the caller
    /// and the database by the handler).
    pub(super) fn checked(self, policy: &AddressPolicy) -> Result<CheckedDevice, ApiError> {
        let name = input::name("name", &self.name)?;
        let kind = kind(&self.kind)?;
        Ok(CheckedDevice {
            company_id: self.company_id,
            name,
            address: address(policy, kind, &self.address)?,
            kind,
            expected_status: expected_status(kind, self.expected_status)?,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    name: Option<String>,
    address: Option<String>,
    kind: Option<String>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    expected_status: Option<Option<i64>>,
    enabled: Option<bool>,
}

/// A field that was given, even as `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl DevicePatch {
    fn is_empty(&self) -> bool {
        matches!(
            self,
            DevicePatch {
                name: None,
                address: None,
                kind: None,
                expected_status: None,
                enabled: None,
            }
        )
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    company_id: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) fn kind(value: &str) -> Result<DeviceKind, ApiError> {
    value.parse().map_err(|e: crate::domain::UnknownKind| {
        ApiError::bad_request("invalid_kind", e.to_string())
    })
}

/// A device address as stored: trimmed, bounded, fit for its kind, and not an IP in a
/// network the address policy denies (a name is checked after resolution, at each poll).
pub(super) fn address(
    policy: &AddressPolicy,
    kind: DeviceKind,
    value: &str,
) -> Result<String, ApiError> {
    let value = value.trim();
    if value.chars().count() > input::MAX_ADDRESS_CHARS {
        return Err(ApiError::bad_request(
            "invalid_address",
            format!(
                "address must be at most {} characters",
                input::MAX_ADDRESS_CHARS
            ),
        ));
    }
    probe::validate_address(kind, value)
        .map_err(|e| ApiError::bad_request("invalid_address", e))?;
    let literal = probe::host_of(kind, value).and_then(|host| policy::literal_ip(&host));
    if let Some(refusal) = literal.and_then(|ip| policy.refusal(ip)) {
        return Err(ApiError::unprocessable(
            "address_denied",
            format!("address {value:?} is refused: {refusal}"),
        ));
    }
    Ok(value.to_string())
}

/// An expected status: an HTTP status code, and only for `http` devices.
pub(super) fn expected_status(
    kind: DeviceKind,
    value: Option<i64>,
) -> Result<Option<i32>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if kind != DeviceKind::Http {
        return Err(ApiError::bad_request(
            "invalid_expected_status",
            format!("expected_status applies only to http devices, not to {kind} devices"),
        ));
    }
    match i32::try_from(value) {
        Ok(status) if (100..=599).contains(&status) => Ok(Some(status)),
        _ => Err(ApiError::bad_request(
            "invalid_expected_status",
            format!("expected_status must be an HTTP status from 100 to 599 (got {value})"),
        )),
    }
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::conflict(
        "device_exists",
        format!("the company already has a device named {name:?}"),
    )
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("device {id} does not exist"))
}

/// The device, or the 404 every device route answers for a missing one and for
/// another tenant's.
pub async fn existing(db: &Db, caller: &Caller, id: i64) -> Result<Device, ApiError> {
    let scope = caller.scope();
    db.run(move |conn| db::devices::get_in(conn, id, scope))
        .await?
        .ok_or_else(|| not_found(id))
}

/// The company a new device goes to: the token's own, or for an admin the one named.
/// Another tenant's company answers as a missing one.
fn company_of_new(caller: &Caller, named: Option<i64>) -> Result<i64, ApiError> {
    let missing = |id: i64| {
        ApiError::unprocessable("company_not_found", format!("company {id} does not exist"))
    };
    match (caller.scope(), named) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(id)) if id == own => Ok(own),
        (Some(_), Some(id)) => Err(missing(id)),
        (None, Some(id)) => Ok(id),
        (None, None) => Err(ApiError::bad_request(
            "invalid_body",
            "company_id is required with an admin token",
        )),
    }
}

/// The device with its live monitoring.
async fn view(
    db: &Db,
    client: &MonitorServerClient,
    device: Device,
) -> Result<DeviceView, ApiError> {
    let mut monitoring = monitoring_of(db, client, vec![device.id]).await?;
    let current = monitoring.remove(&device.id);
    Ok(DeviceView::new(device, current))
}

#[utoipa::path(post, operation_id = "create_device", path = "/api/v1/devices", tag = "devices", request_body = NewDeviceBody, responses((status = 201, description = "Created", body = DeviceView)))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewDeviceBody>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let body = body.into_inner();
    let company_id = company_of_new(&caller, body.company_id)?;
    let CheckedDevice {
        name,
        address,
        kind,
        expected_status,
        enabled,
        ..
    } = body.checked(&state.policy)?;
    let stored_name = name.clone();
    let created = state
        .db
        .run(move |conn| {
            if db::companies::get(conn, company_id)?.is_none() {
                return Ok(None);
            }
            let new = NewDevice {
                company_id,
                name: &stored_name,
                address: &address,
                kind: kind.as_str(),
                enabled,
                expected_status,
            };
            db::devices::create(conn, &new).map(Some)
        })
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                duplicate_name(&name)
            } else {
                e.into()
            }
        })?;
    let device = created.ok_or_else(|| {
        ApiError::unprocessable(
            "company_not_found",
            format!("company {company_id} does not exist"),
        )
    })?;
    tracing::info!(
        device.id = device.id,
        company.id = company_id,
        "device created"
    );
    Ok(HttpResponse::Created().json(DeviceView::new(device, None)))
}

/// Devices the caller sees: a scoped token's company only, whatever `company_id` says.
#[utoipa::path(get, operation_id = "list_devices", path = "/api/v1/devices", tag = "devices", params(ListQuery), responses((status = 200, description = "The devices the token sees, with their monitoring", body = Vec<DeviceView>)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = input::page(query.limit, query.offset)?;
    let Some(company_id) = caller.list_filter(query.company_id) else {
        return Ok(HttpResponse::Ok().json(Vec::<DeviceView>::new()));
    };
    let devices = state
        .db
        .run(move |conn| db::devices::list(conn, company_id, limit, offset))
        .await?;
    let mut monitoring =
        monitoring_of(&state.db, &client, devices.iter().map(|d| d.id).collect()).await?;
    let views: Vec<DeviceView> = devices
        .into_iter()
        .map(|d| {
            let current = monitoring.remove(&d.id);
            DeviceView::new(d, current)
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[utoipa::path(get, operation_id = "get_device", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The device with its monitoring", body = DeviceView)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let device = existing(&state.db, &caller, id.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(view(&state.db, &client, device).await?))
}

/// `PUT /devices/{id}`: the device as saved, and how the change reached its monitor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeviceUpdated {
    device: DeviceView,
    routing: Routing,
}

/// How a saved change reached the device's monitor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Routing {
    status: &'static str,
    server_id: Option<i64>,
    reason: Option<String>,
}

impl From<RouteOutcome> for Routing {
    fn from(outcome: RouteOutcome) -> Self {
        match outcome {
            RouteOutcome::Delivered(server_id) => Routing {
                status: "delivered",
                server_id: Some(server_id),
                reason: None,
            },
            RouteOutcome::Stopped(report) => {
                let result = report.results.into_iter().next();
                Routing {
                    status: match result.as_ref().map(|r| r.status) {
                        Some(StopStatus::Failed) => "stop_failed",
                        Some(StopStatus::Stopped) => "stopped",
                        _ => "not_monitored",
                    },
                    server_id: result.as_ref().and_then(|r| r.server_id),
                    reason: result.and_then(|r| r.reason),
                }
            }
            RouteOutcome::NotMonitored => Routing {
                status: "not_monitored",
                server_id: None,
                reason: None,
            },
            RouteOutcome::Undelivered(reason) => Routing {
                status: "undelivered",
                server_id: None,
                reason: Some(reason),
            },
        }
    }
}

#[utoipa::path(put, operation_id = "update_device", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = i64, Path, minimum = 1)), request_body = DevicePatch, responses((status = 200, description = "Saved, and how the change reached its monitor", body = DeviceUpdated)))]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
    id: web::Path<Id>,
    body: web::Json<DevicePatch>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let patch = body.into_inner();
    if patch.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "give at least one of name, address, kind, expected_status or enabled to change",
        ));
    }
    let current = existing(&state.db, &caller, id).await?;
    let new_kind = match &patch.kind {
        Some(value) => kind(value)?,
        None => kind(&current.kind)?,
    };
    let changes = DeviceChanges {
        name: patch
            .name
            .as_deref()
            .map(|n| input::name("name", n))
            .transpose()?,
        // A new kind must still fit the address, so check the address whenever either changes.
        address: match (&patch.address, &patch.kind) {
            (Some(value), _) => Some(address(&state.policy, new_kind, value)?),
            (None, Some(_)) => Some(address(&state.policy, new_kind, &current.address)?),
            (None, None) => None,
        },
        kind: patch.kind.as_ref().map(|_| new_kind.as_str().to_string()),
        // A device that stops being http loses its expected status.
        expected_status: match patch.expected_status {
            Some(value) => Some(expected_status(new_kind, value)?),
            None if new_kind != DeviceKind::Http && current.expected_status.is_some() => Some(None),
            None => None,
        },
        enabled: patch.enabled,
    };
    let duplicate = changes.name.clone().unwrap_or_default();
    let device = state
        .db
        .run(move |conn| db::devices::update(conn, id, &changes))
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                duplicate_name(&duplicate)
            } else {
                e.into()
            }
        })?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(device.id = id, "device saved");
    let routing = Routing::from(
        state
            .scheduler
            .send(RouteDeviceUpdate { device_id: id })
            .await??,
    );
    let device = view(&state.db, &client, device).await?;
    Ok(HttpResponse::Ok().json(DeviceUpdated { device, routing }))
}

#[utoipa::path(delete, operation_id = "delete_device", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Its monitor stopped, then deleted", body = Deleted)))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    existing(&state.db, &caller, id).await?;
    match state
        .scheduler
        .send(DeleteDevice { device_id: id })
        .await??
    {
        DeleteOutcome::Deleted => Ok(HttpResponse::Ok().json(Deleted { id, deleted: true })),
        DeleteOutcome::NotFound => Err(not_found(id)),
        DeleteOutcome::NotStopped(reason) => Err(ApiError::Unavailable(format!(
            "device {id} was not deleted: its monitor could not be stopped ({reason})"
        ))),
    }
}

#[utoipa::path(post, operation_id = "start_device", path = "/api/v1/devices/{id}/start", tag = "devices", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Monitored", body = StartReport), (status = 503, description = "Not placed", body = StartReport)))]
pub async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let device = existing(&state.db, &caller, id).await?;
    if !device.enabled {
        return Err(ApiError::conflict(
            "device_disabled",
            format!("device {id} is disabled; enable it first (PUT /api/v1/devices/{id} {{\"enabled\": true}})"),
        ));
    }
    let report = state
        .scheduler
        .send(StartDevices {
            device_ids: vec![id],
            reason: StartReason::Asked,
        })
        .await??;
    if report.superseded > 0 {
        return Err(ApiError::conflict(
            "superseded",
            format!(
                "device {id} was stopped by a later request while this start ran; it stays stopped"
            ),
        ));
    }
    Ok(super::views::report_response(
        report.all_monitored(),
        &report,
    ))
}

#[utoipa::path(post, operation_id = "stop_device", path = "/api/v1/devices/{id}/stop", tag = "devices", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Stopped", body = StopResult)))]
pub async fn stop(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    existing(&state.db, &caller, id).await?;
    let report = state
        .scheduler
        .send(StopDevices {
            device_ids: vec![id],
        })
        .await??;
    let Some(result) = report.results.into_iter().next() else {
        return Err(ApiError::Unexpected(anyhow::anyhow!(
            "stop of device {id} gave no result"
        )));
    };
    match result.status {
        StopStatus::Stopped => Ok(HttpResponse::Ok().json(result)),
        StopStatus::NotRunning => Err(ApiError::NotMonitored(id)),
        StopStatus::Superseded => Err(ApiError::conflict(
            "superseded",
            format!(
                "device {id} was started again while this stop ran, and stays monitored: {}",
                result.reason.as_deref().unwrap_or("a newer start won")
            ),
        )),
        StopStatus::Failed => Err(ApiError::Unavailable(format!(
            "device {id} could not be stopped: {}",
            result.reason.as_deref().unwrap_or("no reason given")
        ))),
    }
}
