//! `/api/v1/devices`: create (one, or many at once in [`bulk`]), list, read, change,
//! delete; start and stop one device.

pub(super) mod bulk;

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::input;
use super::lists::Listing;
use super::live::{monitoring_of, Owners};
use super::state::AppState;
use super::views::{Deleted, DeviceView};
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
    #[serde(default, deserialize_with = "input::present")]
    expected_status: Option<Option<i64>>,
    enabled: Option<bool>,
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

/// What a new device answers when its company does not exist, or is another tenant's.
fn company_not_found(id: i64) -> ApiError {
    ApiError::unprocessable("company_not_found", format!("company {id} does not exist"))
}

/// The company a new device goes to: the token's own, or for an admin the one named.
/// Another tenant's company answers as a missing one.
fn company_of_new(caller: &Caller, named: Option<i64>) -> Result<i64, ApiError> {
    match (caller.scope(), named) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(id)) if id == own => Ok(own),
        (Some(_), Some(id)) => Err(company_not_found(id)),
        (None, Some(id)) => Ok(id),
        (None, None) => Err(ApiError::bad_request(
            "invalid_body",
            "company_id is required with an admin token",
        )),
    }
}

/// The device with its live monitoring.
async fn view(
    state: &AppState,
    client: &MonitorServerClient,
    device: Device,
) -> Result<DeviceView, ApiError> {
    let id = device.id;
    let owners = state.db.run(move |conn| Owners::read(conn, &[id])).await?;
    let mut monitoring = monitoring_of(client, &state.live, owners).await;
    let current = monitoring.remove(&device.id);
    Ok(DeviceView::new(device, current))
}

/// A device of a create that was refused: its index in the request, and why.
pub(super) struct Refused {
    pub index: usize,
    pub error: ApiError,
}

/// A device that passed the checks made without the database: its place in the
/// request, its company, its fields.
struct Candidate {
    index: usize,
    company_id: i64,
    device: CheckedDevice,
}

/// Creates the devices `bodies` describe, all of them or none, in one write transaction.
/// Each is checked as a single create checks it (its company for this caller, then its
/// fields), against the others (a name once per company), and against what is stored
/// (the company exists, the name is free). Answers the created devices in request
/// order, or every refused one in index order; a name taken by a concurrent create
/// between the check and the insert answers 409 and nothing is created.
pub(super) async fn create_all(
    state: &AppState,
    caller: &Caller,
    bodies: Vec<NewDeviceBody>,
) -> Result<Result<Vec<Device>, Vec<Refused>>, ApiError> {
    let mut refused = Vec::new();
    let mut candidates = Vec::with_capacity(bodies.len());
    let mut first_of_name: HashMap<(i64, String), usize> = HashMap::new();
    for (index, body) in bodies.into_iter().enumerate() {
        let checked = company_of_new(caller, body.company_id)
            .and_then(|company_id| Ok((company_id, body.checked(&state.policy)?)));
        let (company_id, device) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                refused.push(Refused { index, error });
                continue;
            }
        };
        match first_of_name.entry((company_id, device.name.clone())) {
            Entry::Occupied(first) => refused.push(Refused {
                index,
                error: repeated_name(&device.name, company_id, *first.get()),
            }),
            Entry::Vacant(slot) => {
                slot.insert(index);
                candidates.push(Candidate {
                    index,
                    company_id,
                    device,
                });
            }
        }
    }
    if candidates.is_empty() {
        return Ok(Err(refused));
    }
    // Checked against the database even when some were refused already, so that the
    // answer lists every refused device at once.
    let insert = refused.is_empty();
    let lone_name = match candidates.as_slice() {
        [only] => Some(only.device.name.clone()),
        _ => None,
    };
    let stored = state
        .db
        .run(move |conn| db::write_transaction(conn, |conn| store_new(conn, &candidates, insert)))
        .await
        .map_err(|e| match (e.is_unique_violation(), &lone_name) {
            (true, Some(name)) => duplicate_name(name),
            (true, None) => ApiError::conflict(
                "device_exists",
                "another request created a device of one of these names in the same company \
                 meanwhile; nothing was created",
            ),
            (false, _) => e.into(),
        })?;
    match stored {
        Ok(devices) => Ok(Ok(devices)),
        Err(found) => {
            refused.extend(found);
            refused.sort_by_key(|r| r.index);
            Ok(Err(refused))
        }
    }
}

/// The checks of [`create_all`] that need the database, and the insert when every
/// device passed all of them (`insert`); inside the caller's write transaction.
fn store_new(
    conn: &mut db::DbConn,
    candidates: &[Candidate],
    insert: bool,
) -> diesel::QueryResult<Result<Vec<Device>, Vec<Refused>>> {
    let mut company_ids: Vec<i64> = candidates.iter().map(|c| c.company_id).collect();
    company_ids.sort_unstable();
    company_ids.dedup();
    let companies = db::companies::names_of(conn, &company_ids)?;
    let wanted: Vec<(i64, &str)> = candidates
        .iter()
        .filter(|c| companies.contains_key(&c.company_id))
        .map(|c| (c.company_id, c.device.name.as_str()))
        .collect();
    let taken = db::devices::taken_names(conn, &wanted)?;
    let refused: Vec<Refused> = candidates
        .iter()
        .filter_map(|c| {
            let error = if !companies.contains_key(&c.company_id) {
                company_not_found(c.company_id)
            } else if taken.contains(&(c.company_id, c.device.name.clone())) {
                duplicate_name(&c.device.name)
            } else {
                return None;
            };
            Some(Refused {
                index: c.index,
                error,
            })
        })
        .collect();
    if !refused.is_empty() || !insert {
        return Ok(Err(refused));
    }
    let rows: Vec<NewDevice> = candidates
        .iter()
        .map(|c| NewDevice {
            company_id: c.company_id,
            name: &c.device.name,
            address: &c.device.address,
            kind: c.device.kind.as_str(),
            enabled: c.device.enabled,
            expected_status: c.device.expected_status,
        })
        .collect();
    let mut created: HashMap<(i64, String), Device> = db::devices::create_many(conn, &rows)?
        .into_iter()
        .map(|d| ((d.company_id, d.name.clone()), d))
        .collect();
    // RETURNING's order is not the request's; (company, name) is unique in the batch.
    let in_order: Option<Vec<Device>> = candidates
        .iter()
        .map(|c| created.remove(&(c.company_id, c.device.name.clone())))
        .collect();
    in_order.map(Ok).ok_or_else(|| {
        diesel::result::Error::QueryBuilderError(
            "the insert did not return every device it was given".into(),
        )
    })
}

/// A name given twice for one company in one request.
fn repeated_name(name: &str, company_id: i64, first: usize) -> ApiError {
    ApiError::bad_request(
        "duplicate_in_request",
        format!(
            "device {first} of this request already has the name {name:?} in company {company_id}"
        ),
    )
}

#[utoipa::path(post, operation_id = "create_device", path = "/api/v1/devices", tag = "devices", request_body = NewDeviceBody, responses((status = 201, description = "Created", body = DeviceView)))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewDeviceBody>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let device = match create_all(&state, &caller, vec![body.into_inner()]).await? {
        Ok(mut devices) => devices.pop().ok_or_else(nothing_created)?,
        // One device: its refusal is the answer.
        Err(refused) => {
            let first = refused.into_iter().next();
            return Err(first.map_or_else(nothing_created, |r| r.error));
        }
    };
    tracing::info!(
        device.id = device.id,
        company.id = device.company_id,
        "device created"
    );
    Ok(HttpResponse::Created().json(DeviceView::new(device, None)))
}

/// A create that neither created nor refused anything: a bug, not the client's doing.
fn nothing_created() -> ApiError {
    ApiError::Unexpected(anyhow::anyhow!(
        "a create of one device answered no device and no refusal"
    ))
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
    let listing = Listing::Devices {
        company_id,
        limit,
        offset,
    };
    let make = || page_views(&state, &client, company_id, (limit, offset));
    state.lists.answer(listing, make).await
}

/// A page of the devices of `company_id` (every company: `None`) with their monitoring.
async fn page_views(
    state: &AppState,
    client: &MonitorServerClient,
    company_id: Option<i64>,
    (limit, offset): (i64, i64),
) -> Result<Vec<DeviceView>, ApiError> {
    let (devices, owners) = state
        .db
        .run(move |conn| {
            let page = db::devices::list_with_owners(conn, company_id, limit, offset)?;
            let owners = page.iter().map(|(device, owner)| {
                let (server_id, epoch) = owner.unwrap_or((None, 0));
                (device.id, server_id, epoch)
            });
            let owners = Owners::of(conn, owners)?;
            let devices: Vec<Device> = page.into_iter().map(|(device, _)| device).collect();
            Ok((devices, owners))
        })
        .await?;
    let mut monitoring = monitoring_of(client, &state.live, owners).await;
    Ok(devices
        .into_iter()
        .map(|d| {
            let current = monitoring.remove(&d.id);
            DeviceView::new(d, current)
        })
        .collect())
}

#[utoipa::path(get, operation_id = "get_device", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The device with its monitoring", body = DeviceView)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    client: web::Data<MonitorServerClient>,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let device = existing(&state.db, &caller, id.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(view(&state, &client, device).await?))
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
    let device = view(&state, &client, device).await?;
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
