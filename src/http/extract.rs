//! Extractor settings shared by every server: body limits, and JSON errors (never
//! actix's plain-text ones) for malformed bodies, paths and queries, unknown routes and
//! wrong methods.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};

use serde::{Deserialize, Deserializer};

use super::error::ApiError;

/// An id in a path: a positive integer (a malformed or non-positive one is 400
/// `invalid_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        if value > 0 {
            Ok(Id(value))
        } else {
            Err(serde::de::Error::custom(format!(
                "ids are positive integers (got {value})"
            )))
        }
    }
}

/// Largest JSON body an endpoint takes, unless its route says otherwise (see
/// [`json_config_up_to`]).
pub const MAX_JSON_BYTES: usize = 64 * 1024;

pub fn json_config() -> web::JsonConfig {
    json_config_up_to(MAX_JSON_BYTES)
}

/// The JSON settings with another body limit, for a route that takes larger bodies;
/// the same JSON errors, and the same parser with its nesting limit.
pub fn json_config_up_to(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _req| json_error(error).into())
}

fn json_error(error: JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(
            format!("the body is {length} bytes; at most {limit} are accepted"),
        ),
        JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge(format!(
            "the body is larger than the {limit} bytes accepted"
        )),
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "send the body as JSON with the header Content-Type: application/json".into(),
        ),
        JsonPayloadError::Deserialize(cause) if cause.is_data() => {
            ApiError::bad_request("invalid_body", format!("the body does not fit: {cause}"))
        }
        JsonPayloadError::Deserialize(cause) => ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {cause}"),
        ),
        other => ApiError::bad_request(
            "invalid_body",
            format!("the body could not be read: {other}"),
        ),
    }
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error: PathError, req: &HttpRequest| {
        ApiError::bad_request(
            "invalid_path",
            format!("{} has a malformed id: {error}", req.path()),
        )
        .into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _req| {
        ApiError::bad_request(
            "invalid_query",
            format!("the query string does not fit: {error}"),
        )
        .into()
    })
}

/// The answer for a path no route serves.
pub async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// The answer for a known path asked with a method it does not serve.
pub async fn wrong_method(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} does not take {}",
        req.path(),
        req.method()
    )))
}

/// A resource whose unserved methods answer 405 with a JSON body.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(wrong_method))
}

/// Installs the extractor settings on an app.
pub fn install(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(path_config())
        .app_data(query_config());
}
