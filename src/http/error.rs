//! `ApiError`: every error an HTTP handler can answer with, mapped to a status in one
//! place and sent as `{"error": "<sentence>", "code": "<machine_code>"}`. Clients get the
//! sentence; the logs get the cause chain of server-side failures.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::scheduler::SchedulerError;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("device {0} is not being monitored")]
    NotMonitored(i64),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// No credentials, or credentials that are not valid: 401 with `WWW-Authenticate`.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// Valid credentials that do not allow this: 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// Items of a request that carries many were refused: 422, each one listed.
    #[error("{message}")]
    InvalidItems {
        code: &'static str,
        message: String,
        errors: Vec<ItemError>,
    },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    TooManyRequests { code: &'static str, message: String },
    /// Over the caller's request rate: 429 with `Retry-After`.
    #[error("too many requests for this token; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable(#[source] DbError),
    #[error("something went wrong on our side; the server log has the details")]
    Unexpected(#[from] anyhow::Error),
}

/// The JSON error body of DESIGN.md.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: String,
    pub code: &'a str,
    /// Only when items of a request that carries many were refused
    /// (`invalid_devices`): each refused item, in index order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<&'a [ItemError]>,
}

/// One refused item of a request that carries many: where it stands in the request's
/// list (from 0), and its error as it would be answered alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ItemError {
    pub index: usize,
    pub code: &'static str,
    pub error: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::NotMonitored(_) => "not_monitored",
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::InvalidItems { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Unexpected(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) | ApiError::NotMonitored(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unprocessable { .. } | ApiError::InvalidItems { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::DatabaseUnavailable(cause) => {
                tracing::error!(error = %cause, "database unavailable");
            }
            ApiError::Unexpected(cause) => tracing::error!(error = ?cause, "request failed"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized { .. } => {
                response.insert_header(("www-authenticate", "Bearer realm=\"vigil\""));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header(("retry-after", retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: self.to_string(),
            code: self.code(),
            errors: match self {
                ApiError::InvalidItems { errors, .. } => Some(errors),
                _ => None,
            },
        })
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Pool(_) | DbError::Busy(_) | DbError::Connect { .. } => {
                ApiError::DatabaseUnavailable(error)
            }
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection
                | diesel::result::DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => ApiError::DatabaseUnavailable(error),
            other => ApiError::Unexpected(other.into()),
        }
    }
}

impl From<SchedulerError> for ApiError {
    fn from(error: SchedulerError) -> Self {
        match error {
            SchedulerError::Db(db) => db.into(),
            SchedulerError::InvalidConfig(message) => {
                ApiError::bad_request("invalid_config", message)
            }
            stored @ SchedulerError::StoredDevice(..) => ApiError::Unexpected(stored.into()),
        }
    }
}

impl From<crate::auth::IssueError> for ApiError {
    fn from(error: crate::auth::IssueError) -> Self {
        match error {
            crate::auth::IssueError::Db(db) => db.into(),
            random => ApiError::Unexpected(random.into()),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(error: actix::MailboxError) -> Self {
        ApiError::Unexpected(anyhow::anyhow!("actor mailbox: {error}"))
    }
}
