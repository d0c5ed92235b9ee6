//! Embedded migrations, one tree per backend, run at start.

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::conn::DbConn;

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any constant shared by every node; serialises migrations of processes that start together.
const PG_MIGRATION_LOCK: i64 = 0x7669_6769_6c00;

/// Applies every pending migration. Processes starting at the same moment take turns:
/// an advisory lock on PostgreSQL, the write lock on SQLite.
pub(super) fn run(conn: &mut DbConn) -> Result<(), String> {
    match conn {
        DbConn::Sqlite(inner) => inner
            .immediate_transaction(|c| {
                c.run_pending_migrations(SQLITE)
                    .map(|_| ())
                    .map_err(|e| MigrationError(e.to_string()))
            })
            .map_err(|e: MigrationError| e.0),
        DbConn::Pg(inner) => {
            inner
                .batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
                .map_err(|e| e.to_string())?;
            let outcome = inner
                .run_pending_migrations(POSTGRES)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let unlock = inner
                .batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
                .map_err(|e| e.to_string());
            outcome.and(unlock)
        }
    }
}

/// A migration failure carried out of diesel's transaction closure.
struct MigrationError(String);

impl From<diesel::result::Error> for MigrationError {
    fn from(e: diesel::result::Error) -> Self {
        MigrationError(e.to_string())
    }
}
