//! Connections for the r2d2 pool, opened on the backend the URL's scheme names.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};

use super::conn::DbConn;
use super::url::DbUrl;

/// How long SQLite waits for another writer before answering "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Opens one connection and prepares its session.
pub(super) fn connect(url: &DbUrl) -> Result<DbConn, ConnectionError> {
    match url {
        DbUrl::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;"
            ))
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Sqlite(conn))
        }
        DbUrl::Postgres(raw) => {
            let mut conn = PgConnection::establish(raw)?;
            // Timestamps are stored without zone and always mean UTC.
            conn.batch_execute("SET TIME ZONE 'UTC'")
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Pg(conn))
        }
    }
}

/// A connection that has not worked for this long is tested before it is handed out
/// again (a server may drop idle connections without a word).
const TEST_WHEN_IDLE_FOR: Duration = Duration::from_secs(30);

/// A pooled connection, and what the pool knows of its health.
pub struct Pooled {
    pub(super) conn: DbConn,
    /// A query on it failed in a way that may mean the connection itself is gone.
    suspect: bool,
    /// When a query on it last worked.
    worked_at: Instant,
    /// The pool's trouble count when it last worked.
    trouble_seen: u64,
}

impl Pooled {
    /// Notes how a query went. A connection whose query failed for another reason than
    /// the data (a constraint, no row) is not handed out again, and the pool's other
    /// connections are tested at their next checkout: the server may have restarted.
    pub(super) fn used(&mut self, done: Result<(), &diesel::result::Error>, trouble: &AtomicU64) {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match done {
            Ok(()) => {
                self.worked_at = Instant::now();
                self.trouble_seen = trouble.load(Ordering::Relaxed);
            }
            Err(error) => {
                let about_the_data = matches!(
                    error,
                    Error::NotFound
                        | Error::RollbackTransaction
                        | Error::DatabaseError(
                            Kind::UniqueViolation
                                | Kind::ForeignKeyViolation
                                | Kind::NotNullViolation
                                | Kind::CheckViolation
                                | Kind::SerializationFailure,
                            _
                        )
                );
                if !about_the_data {
                    self.suspect = true;
                    trouble.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The r2d2 manager: like diesel's `ConnectionManager`, but it never guesses the
/// backend, and it tests a connection at checkout only when there is reason to doubt
/// it (it has not worked for a while, or another connection failed since it last
/// did), not on every checkout.
pub struct Manager {
    url: DbUrl,
    /// Suspect failures seen on any connection of the pool.
    trouble: Arc<AtomicU64>,
}

impl Manager {
    pub(super) fn new(url: DbUrl, trouble: Arc<AtomicU64>) -> Self {
        Manager { url, trouble }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        let conn = connect(&self.url).map_err(diesel::r2d2::Error::ConnectionError)?;
        Ok(Pooled {
            conn,
            suspect: false,
            worked_at: Instant::now(),
            trouble_seen: self.trouble.load(Ordering::Relaxed),
        })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), Self::Error> {
        let trouble = self.trouble.load(Ordering::Relaxed);
        if pooled.trouble_seen == trouble && pooled.worked_at.elapsed() < TEST_WHEN_IDLE_FOR {
            return Ok(());
        }
        pooled
            .conn
            .ping()
            .map_err(diesel::r2d2::Error::QueryError)?;
        pooled.worked_at = Instant::now();
        pooled.trouble_seen = trouble;
        Ok(())
    }

    /// A connection whose query failed oddly, or left in a broken state (a failed
    /// transaction it could not roll back, a panic while it was out), is dropped
    /// rather than handed out again.
    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        std::thread::panicking() || pooled.suspect || pooled.conn.is_broken()
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Text;
    use diesel::{QueryableByName, RunQueryDsl};

    use super::*;

    #[derive(QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = Text)]
        compile_options: String,
    }

    /// `.cargo/config.toml` builds the bundled SQLite with the query planner stability
    /// guarantee (without it every statement with a bound LIMIT is compiled again at
    /// each execution) and the dbstat table (the store's bytes on disk).
    #[test]
    fn sqlite_is_built_with_the_planner_guarantee_and_dbstat() {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl::Sqlite(dir.path().join("t.db"));
        let DbConn::Sqlite(mut conn) = connect(&url).unwrap() else {
            panic!("not a SQLite connection");
        };
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        for wanted in ["ENABLE_QPSG", "ENABLE_DBSTAT_VTAB"] {
            assert!(
                options.iter().any(|o| o == wanted),
                "SQLite built without SQLITE_{wanted}: {options:?}"
            );
        }
    }
}
