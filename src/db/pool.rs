//! Connections for the r2d2 pool, opened on the backend the URL's scheme names.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
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

/// The r2d2 manager: like diesel's `ConnectionManager`, but it never guesses the backend.
pub struct Manager {
    url: DbUrl,
}

impl Manager {
    pub(super) fn new(url: DbUrl) -> Self {
        Manager { url }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        connect(&self.url).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    /// A connection left in a broken state (a failed transaction it could not roll
    /// back, a panic while it was out) is dropped rather than handed out again.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}
