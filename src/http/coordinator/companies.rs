//! `/api/v1/companies`: create, list, read, delete; start and stop all of a company's devices.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::input;
use super::state::AppState;
use super::views::{CompanyView, Deleted};
use crate::actors::scheduler::{StartDevices, StartReason, StartReport, StopDevices, StopReport};
use crate::db::companies::Deletion;
use crate::db::models::Company;
use crate::db::{self, Db};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Id;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompanyBody {
    name: String,
}

#[utoipa::path(post, operation_id = "create_company", path = "/api/v1/companies", tag = "companies", request_body = NewCompanyBody, responses((status = 201, description = "Created", body = CompanyView)))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewCompanyBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("create companies")?;
    let name = input::name("name", &body.name)?;
    let stored_name = name.clone();
    let company = state
        .db
        .run(move |conn| db::companies::create(conn, &stored_name))
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict(
                    "company_exists",
                    format!("a company named {name:?} already exists"),
                )
            } else {
                e.into()
            }
        })?;
    tracing::info!(company.id = company.id, "company created");
    Ok(HttpResponse::Created().json(CompanyView::from(company)))
}

/// Every company for an admin; a scoped token's own company for the others.
#[utoipa::path(get, operation_id = "list_companies", path = "/api/v1/companies", tag = "companies", responses((status = 200, description = "The companies the token sees", body = Vec<CompanyView>)))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope();
    let companies = state
        .db
        .run(move |conn| db::companies::list(conn, scope))
        .await?;
    let views: Vec<CompanyView> = companies.into_iter().map(CompanyView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("company {id} does not exist"))
}

/// The company, or the 404 every company route answers for a missing one and for
/// another tenant's.
pub async fn existing(db: &Db, caller: &Caller, id: i64) -> Result<Company, ApiError> {
    if !caller.sees(id) {
        return Err(not_found(id));
    }
    db.run(move |conn| db::companies::get(conn, id))
        .await?
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(get, operation_id = "get_company", path = "/api/v1/companies/{id}", tag = "companies", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The company", body = CompanyView)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let company = existing(&state.db, &caller, id.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(CompanyView::from(company)))
}

#[utoipa::path(delete, operation_id = "delete_company", path = "/api/v1/companies/{id}", tag = "companies", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Deleted with its devices, samples, events and tokens", body = Deleted)))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("delete companies")?;
    let id = id.into_inner().0;
    match state
        .db
        .run(move |conn| db::companies::delete_unless_monitored(conn, id))
        .await?
    {
        Deletion::Deleted => {
            state.tokens.forget_company(id);
            tracing::info!(company.id = id, "company deleted");
            Ok(HttpResponse::Ok().json(Deleted { id, deleted: true }))
        }
        Deletion::NotFound => Err(not_found(id)),
        Deletion::Monitored(count) => Err(ApiError::conflict(
            "company_monitored",
            format!(
                "company {id} has {count} monitored device(s); stop them first (POST /api/v1/companies/{id}/stop)"
            ),
        )),
    }
}

#[utoipa::path(post, operation_id = "start_company", path = "/api/v1/companies/{id}/start", tag = "companies", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Every enabled device is monitored", body = StartReport), (status = 503, description = "Some could not be placed", body = StartReport)))]
pub async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    existing(&state.db, &caller, id).await?;
    let device_ids = state
        .db
        .run(move |conn| db::devices::enabled_ids_of_company(conn, id))
        .await?;
    tracing::info!(
        company.id = id,
        devices = device_ids.len(),
        "company start requested"
    );
    let report = state
        .scheduler
        .send(StartDevices {
            device_ids,
            reason: StartReason::Asked,
        })
        .await??;
    Ok(super::views::report_response(
        report.all_monitored(),
        &report,
    ))
}

#[utoipa::path(post, operation_id = "stop_company", path = "/api/v1/companies/{id}/stop", tag = "companies", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Every monitor stopped", body = StopReport), (status = 503, description = "Some could not be stopped", body = StopReport)))]
pub async fn stop(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    existing(&state.db, &caller, id).await?;
    let device_ids = state
        .db
        .run(move |conn| db::devices::ids_of_company(conn, id))
        .await?;
    tracing::info!(
        company.id = id,
        devices = device_ids.len(),
        "company stop requested"
    );
    let report = state.scheduler.send(StopDevices { device_ids }).await??;
    Ok(super::views::report_response(report.failed == 0, &report))
}
