//! `POST /api/v1/devices/bulk`: up to [`MAX_DEVICES`] devices created in one request
//! and one transaction, all of them or none. Each device goes through the same checks
//! as a single create ([`super::create_all`] serves both).

use std::collections::BTreeSet;
use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{create_all, NewDeviceBody, Refused};
use crate::http::auth::Caller;
use crate::http::coordinator::state::AppState;
use crate::http::coordinator::views::DeviceView;
use crate::http::error::{ApiError, ErrorBody, ItemError};

/// Most devices one request creates.
pub const MAX_DEVICES: usize = 10_000;
/// Largest body this route takes (every other route takes 64 KiB): room for
/// [`MAX_DEVICES`] devices with addresses of a few hundred characters. The OpenAPI
/// description of its 413 and the README say the same number.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most refused devices one answer lists; its sentence counts them all.
pub const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevicesBody {
    /// Each as `POST /api/v1/devices` takes it.
    #[schema(min_items = 1, max_items = 10000)]
    devices: Vec<NewDeviceBody>,
}

impl NewDevicesBody {
    /// The devices asked for, when there are 1 to [`MAX_DEVICES`] of them.
    pub(in crate::http::coordinator) fn devices(self) -> Result<Vec<NewDeviceBody>, ApiError> {
        if (1..=MAX_DEVICES).contains(&self.devices.len()) {
            Ok(self.devices)
        } else {
            Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "devices must hold from 1 to {MAX_DEVICES} devices (got {})",
                    self.devices.len()
                ),
            ))
        }
    }
}

/// What a bulk create answers: every device, as a single create answers it, in the
/// order of the request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DevicesCreated {
    created: usize,
    devices: Vec<DeviceView>,
}

/// Creates up to 10,000 devices in one transaction: all of them, or none.
///
/// Each device is checked as `POST /api/v1/devices` checks it, against the other
/// devices of the request (a name once per company) and against what is stored (the
/// company exists, the name is free). When any device is refused, none is created:
/// the answer is 422 `invalid_devices`, whose `errors` list the first 100 refused
/// devices, each with its index in `devices` (from 0), its code and its sentence. An
/// admin names each device's company; an operator's devices go to its own company.
/// The body may be up to 4 MiB.
#[utoipa::path(
    post,
    operation_id = "create_devices",
    path = "/api/v1/devices/bulk",
    tag = "devices",
    request_body = NewDevicesBody,
    responses(
        (status = 201, description = "Every device created, in the order of the request", body = DevicesCreated),
        (status = 409, description = "A concurrent request took one of the names; nothing was created", body = ErrorBody),
        (status = 413, description = "The body is larger than 4 MiB", body = ErrorBody),
        (status = 422, description = "Some devices are not valid, each listed in `errors`; nothing was created", body = ErrorBody),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewDevicesBody>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let bodies = body.into_inner().devices()?;
    let asked = bodies.len();
    let started = Instant::now();
    tracing::info!(devices = asked, "creating devices in bulk");
    let created = create_all(&state, &caller, bodies).await?;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match created {
        Ok(devices) => {
            let companies: BTreeSet<i64> = devices.iter().map(|d| d.company_id).collect();
            let company = companies.first().filter(|_| companies.len() == 1).copied();
            tracing::info!(
                devices = devices.len(),
                companies = companies.len(),
                company.id = company,
                duration_ms,
                "devices created in bulk"
            );
            Ok(HttpResponse::Created().json(DevicesCreated {
                created: devices.len(),
                devices: devices
                    .into_iter()
                    .map(|d| DeviceView::new(d, None))
                    .collect(),
            }))
        }
        Err(refused) => {
            tracing::info!(
                devices = asked,
                refused = refused.len(),
                duration_ms,
                "bulk create refused; nothing created"
            );
            Err(invalid_devices(asked, refused))
        }
    }
}

/// The 422 of a bulk create with refused devices: how many, and the first of them.
fn invalid_devices(asked: usize, refused: Vec<Refused>) -> ApiError {
    let count = refused.len();
    let verb = if count == 1 { "is" } else { "are" };
    let mut message = format!("{count} of {asked} devices {verb} not valid; nothing was created");
    if count > MAX_LISTED_ERRORS {
        message.push_str(&format!("; the first {MAX_LISTED_ERRORS} are listed"));
    }
    let errors = refused
        .into_iter()
        .take(MAX_LISTED_ERRORS)
        .map(|r| ItemError {
            index: r.index,
            code: r.error.code(),
            error: r.error.to_string(),
        })
        .collect();
    ApiError::InvalidItems {
        code: "invalid_devices",
        message,
        errors,
    }
}
