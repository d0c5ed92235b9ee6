//! What the scheduler's operations share: their error, and the sentence that sums a
//! report up.

use crate::db::DbError;

/// What went wrong in the scheduler itself (not on a monitor server: those go in reports).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    InvalidConfig(String),
    /// A stored device the monitors cannot take (the API refuses such devices, so this
    /// means the database was changed behind Vigil's back).
    #[error("device {0} is stored with {1}")]
    StoredDevice(i64, crate::domain::UnknownKind),
}

/// `"{verb} {done} of {requested} monitors"`, then every other count that is not zero.
pub(super) fn summary(
    verb: &str,
    done: usize,
    requested: usize,
    others: &[(usize, &str)],
) -> String {
    let mut message = format!("{verb} {done} of {requested} monitors");
    for (count, label) in others.iter().filter(|(count, _)| *count > 0) {
        message.push_str(&format!(", {count} {label}"));
    }
    message
}
