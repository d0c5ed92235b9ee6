//! The coordinator's OpenAPI 3 document, generated from the handlers' annotations and
//! the types they take and answer, served at `GET /api/v1/openapi.json`. Every
//! operation needs a bearer token unless it says otherwise, and lists the error
//! answers the API gives, each with the JSON error body.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{
    companies, devices, events, exposition, history, monitor_servers, queue, settings, tokens,
};
use crate::http::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil",
        description = "The coordinator of a Vigil cluster: companies, devices, their monitoring, metrics and events, the cluster, and API tokens."
    ),
    paths(
        super::meta::index,
        crate::http::healthz,
        crate::http::healthz_head,
        document,
        super::meta::debug_actors,
        super::cluster::cluster,
        exposition::metrics,
        tokens::create,
        tokens::list,
        tokens::get,
        tokens::revoke,
        companies::create,
        companies::list,
        companies::get,
        companies::delete,
        companies::start,
        companies::stop,
        devices::create,
        devices::bulk::create,
        devices::list,
        devices::get,
        devices::update,
        devices::delete,
        devices::start,
        devices::stop,
        history::history,
        history::latest,
        events::list,
        super::store::stats,
        settings::get,
        settings::update,
        monitor_servers::list,
        monitor_servers::get,
        monitor_servers::delete,
        queue::create,
        queue::list,
        queue::get,
        queue::update,
        queue::delete,
        queue::run,
        queue::queue,
        queue::configure,
        queue::pause,
        queue::resume,
        queue::jobs,
        queue::job,
        queue::remove,
        queue::move_job,
        queue::force,
        queue::stop,
        queue::report,
        queue::export,
        queue::output,
    ),
    components(schemas(ErrorBody)),
    security(("bearer" = [])),
    modifiers(&Security, &ErrorAnswers),
)]
struct ApiDoc;

/// The bearer scheme every operation uses unless it says `security(())`.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("vgl_ and 64 hex digits")
                    .description(Some(
                        "An API token: admin, or operator or viewer of one company",
                    ))
                    .build(),
            ),
        );
    }
}

/// The errors every guarded operation may answer, each a JSON error body; open ones
/// (security `[{}]`) may answer all but 401, 403 and 429.
struct ErrorAnswers;

const ERRORS: &[(&str, &str, bool)] = &[
    ("400", "A malformed path, query or body", false),
    ("401", "No token, or not a valid one", true),
    ("403", "The token's role does not allow this", true),
    ("404", "No such object (or another company's)", false),
    ("405", "The path does not take this method", false),
    ("409", "In conflict with what is stored", false),
    ("413", "The body is larger than 64 KiB", false),
    ("415", "The body is not sent as JSON", false),
    (
        "422",
        "Refers to something that does not exist, or is refused",
        false,
    ),
    ("429", "Over this token's rate; see Retry-After", true),
    ("500", "Something went wrong on the server's side", false),
    (
        "503",
        "The database or a monitor server could not be reached",
        false,
    ),
];

fn error_answer(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

impl Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 6] = [
                &mut item.get,
                &mut item.head,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let open = operation
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
                for (code, description, needs_token) in ERRORS {
                    if open && *needs_token {
                        continue;
                    }
                    operation
                        .responses
                        .responses
                        .entry((*code).to_string())
                        .or_insert_with(|| error_answer(description));
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi().to_json().unwrap_or_else(|e| {
            format!("{{\"error\": \"the document could not be written: {e}\"}}")
        })
    })
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, operation_id = "openapi", path = "/api/v1/openapi.json", tag = "meta", security(()), responses((status = 200, description = "This document", body = Object)))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json())
}
