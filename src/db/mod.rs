//! The database layer: one connection type over PostgreSQL and SQLite, a pool,
//! embedded migrations, and query functions grouped by table.
//!
//! Query functions are synchronous, take `&mut DbConn` and return
//! `diesel::QueryResult`, so the same function runs alone or inside a transaction.
//! Async callers reach them through [`Db::run`], which moves the work off the event
//! loop onto tokio's blocking pool. Nothing here knows about HTTP or actors.

pub mod assignments;
pub mod claims;
pub mod companies;
pub mod config;
mod conn;
pub mod devices;
pub mod events;
mod fenced;
mod migrate;
pub mod models;
pub mod monitor_servers;
pub mod nodes;
mod pool;
pub mod queue;
pub mod schema;
pub mod scratch;
pub mod store;
pub mod stored_time;
pub mod tokens;
pub mod url;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use diesel::QueryResult;
use tokio::sync::Semaphore;

use self::conn::{in_chunks, MAX_IDS_PER_QUERY};
pub use self::conn::{values_list, write_transaction, DbConn};
pub use self::url::{DbUrl, DbUrlError};

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
    #[error("no database connection became free within {} s", .0.as_secs())]
    Busy(Duration),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database task did not finish: {0}")]
    Task(String),
}

/// A handle on the pool; cheap to clone, shared by every actor and handler.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<pool::Manager>,
    /// One permit per pooled connection: work waits here, on the event loop's side,
    /// for a connection to be free, instead of parking a blocking thread per caller
    /// inside the pool's checkout.
    permits: Arc<Semaphore>,
    /// Suspect query failures on any pooled connection (see `pool::Pooled::used`).
    trouble: Arc<AtomicU64>,
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
        let size = pool_size.max(1);
        // Checkouts test a connection only when there is reason to doubt it (see
        // `pool::Manager`), not with a query on every checkout.
        let trouble = Arc::new(AtomicU64::new(0));
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(POOL_CHECKOUT_TIMEOUT)
            .build(pool::Manager::new(url.clone(), Arc::clone(&trouble)))?;
        Ok(Db {
            pool,
            trouble,
            permits: Arc::new(Semaphore::new(size as usize)),
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

    /// Runs `f` with a pooled connection on tokio's blocking pool, once one of the
    /// pool's connections is free (waiting at most the checkout timeout for it).
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConn) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        // The wait for a permit and the checkout share one timeout.
        let deadline = std::time::Instant::now() + POOL_CHECKOUT_TIMEOUT;
        let permit = tokio::time::timeout(
            POOL_CHECKOUT_TIMEOUT,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        .map_err(|_| DbError::Busy(POOL_CHECKOUT_TIMEOUT))?
        .map_err(|e| DbError::Task(e.to_string()))?;
        let (pool, trouble) = (self.pool.clone(), Arc::clone(&self.trouble));
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut pooled = pool.get_timeout(left.max(Duration::from_millis(1)))?;
            let done = f(&mut pooled.conn);
            pooled.used(done.as_ref().map(|_| ()), &trouble);
            Ok(done?)
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
