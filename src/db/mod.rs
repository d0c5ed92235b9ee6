//! The database layer: one connection type over PostgreSQL and SQLite, a pool,
//! embedded migrations, and query functions grouped by table.
//!
//! Query functions are synchronous, take `&mut DbConn` and return
//! `diesel::QueryResult`, so the same function runs alone or inside a transaction.
//! Async callers reach them through [`Db::run`], which moves the work off the event
//! loop onto tokio's blocking pool. Nothing here knows about HTTP or actors.

pub mod assignments;
pub mod companies;
pub mod config;
pub mod devices;
pub mod events;
mod fenced;
mod migrate;
pub mod models;
pub mod monitor_servers;
pub mod nodes;
mod pool;
pub mod samples;
pub mod schema;
pub mod scratch;
pub mod tokens;
pub mod url;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::QueryResult;

pub use self::url::{DbUrl, DbUrlError};

/// A connection to whichever backend the `--db` URL named.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Most ids in one `IN (…)` list; SQLite binds at most 32766 parameters per statement.
const MAX_IDS_PER_QUERY: usize = 10_000;

/// How long a caller waits for a free pooled connection before giving up.
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot migrate the database at {url}: {reason}")]
    Migrate { url: String, reason: String },
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database task did not finish: {0}")]
    Task(String),
}

/// A handle on the pool; cheap to clone, shared by every actor and handler.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<pool::Manager>,
    url: Arc<DbUrl>,
}

impl Db {
    /// Connects, runs pending migrations and builds the pool, off the event loop.
    pub async fn open(url: DbUrl, pool_size: u32) -> Result<Db, DbError> {
        tokio::task::spawn_blocking(move || Db::open_blocking(url, pool_size))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }

    fn open_blocking(url: DbUrl, pool_size: u32) -> Result<Db, DbError> {
        // One direct connection first: r2d2 would hide the real reason behind a timeout.
        let mut first = pool::connect(&url).map_err(|reason| DbError::Connect {
            url: url.to_string(),
            reason: reason.to_string(),
        })?;
        migrate::run(&mut first).map_err(|reason| DbError::Migrate {
            url: url.to_string(),
            reason,
        })?;
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(POOL_CHECKOUT_TIMEOUT)
            .build(pool::Manager::new(url.clone()))?;
        Ok(Db {
            pool,
            url: Arc::new(url),
        })
    }

    /// The URL this pool connects to (password redacted when displayed).
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// A connection of its own, outside the pool (blocking: call it off the event
    /// loop). Heartbeats use one, so a pool exhausted by API traffic never makes a
    /// healthy node look dead.
    pub fn dedicated_connection(&self) -> Result<DbConn, diesel::ConnectionError> {
        pool::connect(&self.url)
    }

    /// Runs `f` with a pooled connection on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConn) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            Ok(f(&mut conn)?)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

impl DbError {
    /// A unique constraint refused the write (a duplicate name, a raced insert).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Runs `load` over `ids` a chunk at a time, so no statement binds more parameters than a
/// backend takes, and concatenates what the chunks return.
fn in_chunks<T>(
    ids: &[i64],
    mut load: impl FnMut(&[i64]) -> QueryResult<Vec<T>>,
) -> QueryResult<Vec<T>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
        found.extend(load(chunk)?);
    }
    Ok(found)
}

/// Runs `f` in a transaction that takes the write lock up front.
///
/// On SQLite a plain `BEGIN` that later writes can fail with "database is locked"
/// without waiting for the busy timeout; `BEGIN IMMEDIATE` waits its turn instead.
/// On PostgreSQL this is an ordinary transaction.
pub fn write_transaction<T, F>(conn: &mut DbConn, f: F) -> QueryResult<T>
where
    F: FnOnce(&mut DbConn) -> QueryResult<T>,
{
    match conn {
        DbConn::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?
        }
        DbConn::Pg(_) => {
            <DbConn as Connection>::TransactionManager::begin_transaction(conn)?;
        }
    }
    match f(conn) {
        Ok(value) => match <DbConn as Connection>::TransactionManager::commit_transaction(conn) {
            Ok(()) => Ok(value),
            Err(commit_error) => {
                let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(conn);
                Err(commit_error)
            }
        },
        Err(error) => {
            <DbConn as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_id_lists_are_queried_in_chunks_and_joined() {
        let ids: Vec<i64> = (0..25_000).collect();
        let mut sizes = Vec::new();
        let found = in_chunks(&ids, |chunk| {
            sizes.push(chunk.len());
            Ok(chunk.to_vec())
        })
        .unwrap();
        assert_eq!(sizes, vec![MAX_IDS_PER_QUERY, MAX_IDS_PER_QUERY, 5_000]);
        assert_eq!(found, ids);
        let failing = in_chunks(&ids, |_| {
            Err::<Vec<i64>, _>(diesel::result::Error::NotFound)
        });
        assert!(failing.is_err());
    }
}
