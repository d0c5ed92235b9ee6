//! Database URLs: which backend a `--db` value names, chosen by its scheme.
//!
//! `MultiConnection::establish` would try every backend in turn, and SQLite takes any
//! string as a file name, so a mistyped PostgreSQL URL would silently become a file.
//! We decide from the scheme and refuse anything else.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `--db` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite://PATH`; relative paths are relative to the working directory.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, passed to libpq unchanged.
    Postgres(String),
}

/// Why a `--db` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DbUrlError {
    #[error("database URL must start with sqlite:// or postgres:// (got {0:?})")]
    UnknownScheme(String),
    #[error("sqlite URL names no file: use sqlite://PATH, e.g. sqlite://vigil.db")]
    EmptySqlitePath,
    #[error("in-memory SQLite cannot be shared between connections: use sqlite://PATH")]
    InMemorySqlite,
    #[error("malformed postgres URL: {0}")]
    MalformedPostgres(String),
}

impl FromStr for DbUrl {
    type Err = DbUrlError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbUrlError::EmptySqlitePath);
            }
            if path == ":memory:" || path.starts_with("file::memory:") {
                return Err(DbUrlError::InMemorySqlite);
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let parsed =
                url::Url::parse(raw).map_err(|e| DbUrlError::MalformedPostgres(e.to_string()))?;
            if parsed.host_str().is_none_or(str::is_empty) && !raw.contains("host=") {
                return Err(DbUrlError::MalformedPostgres("no host".into()));
            }
            return Ok(DbUrl::Postgres(raw.to_string()));
        }
        let scheme = raw.split("://").next().unwrap_or(raw);
        Err(DbUrlError::UnknownScheme(redact(scheme)))
    }
}

impl fmt::Display for DbUrl {
    /// Shows the URL with any password replaced, so it can go into logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DbUrl::Postgres(raw) => f.write_str(&redact(raw)),
        }
    }
}

/// Replaces the password of a URL with `***`; leaves anything unparsable as it is.
fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot have credentials,
            // and this one just reported a password.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_path() {
        assert_eq!(
            "sqlite://vigil.db".parse::<DbUrl>(),
            Ok(DbUrl::Sqlite("vigil.db".into()))
        );
        assert_eq!(
            "sqlite:///var/lib/vigil.db".parse::<DbUrl>(),
            Ok(DbUrl::Sqlite("/var/lib/vigil.db".into()))
        );
        assert_eq!(
            "sqlite://".parse::<DbUrl>(),
            Err(DbUrlError::EmptySqlitePath)
        );
        assert_eq!(
            "sqlite://:memory:".parse::<DbUrl>(),
            Err(DbUrlError::InMemorySqlite)
        );
    }

    #[test]
    fn postgres_urls_are_kept_whole_and_shown_redacted() {
        let url: DbUrl = "postgres://vigil:secret@db:5432/vigil".parse().unwrap();
        assert_eq!(
            url,
            DbUrl::Postgres("postgres://vigil:secret@db:5432/vigil".into())
        );
        assert_eq!(url.to_string(), "postgres://vigil:***@db:5432/vigil");
        assert!("postgresql://localhost/test".parse::<DbUrl>().is_ok());
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        let err = "mysql://root@localhost/x".parse::<DbUrl>().unwrap_err();
        assert_eq!(err, DbUrlError::UnknownScheme("mysql".into()));
        assert!("vigil.db".parse::<DbUrl>().is_err());
        assert!("postgres://".parse::<DbUrl>().is_err());
    }
}
