//! Which error type belongs where:
//! - `db::DbError` (wrapping `diesel::QueryResult` errors) in `db`;
//! - `actors::scheduler::SchedulerError` in the scheduler;
//! - `http::error::ApiError` in handlers, mapped to a status and a JSON body;
//! - [`StartupError`] here: what stops a process from starting, printed as one line
//!   with exit code 2.

use std::net::SocketAddr;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
}

impl From<crate::agent::AgentError> for StartupError {
    fn from(error: crate::agent::AgentError) -> Self {
        match error {
            crate::agent::AgentError::Bind { address, source } => {
                StartupError::Bind { address, source }
            }
            crate::agent::AgentError::Server(error) => StartupError::Server(error),
            collector => StartupError::Settings(collector.to_string()),
        }
    }
}

impl From<crate::auth::IssueError> for StartupError {
    fn from(error: crate::auth::IssueError) -> Self {
        match error {
            crate::auth::IssueError::Db(db) => StartupError::Db(db),
            random => StartupError::Settings(random.to_string()),
        }
    }
}
