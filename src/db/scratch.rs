//! Throwaway databases for tests and benchmarks: a SQLite file in the temp directory,
//! or a fresh schema in a PostgreSQL database, removed again on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;

use super::DbUrl;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A database that exists for as long as this value does.
pub struct ScratchDb {
    url: DbUrl,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(PathBuf),
    PgSchema { base_url: String, schema: String },
}

/// A name no other scratch database of any process uses at the same time.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "vigil_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

impl ScratchDb {
    /// A new, empty SQLite file in the temp directory.
    pub fn sqlite() -> ScratchDb {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
        ScratchDb {
            url: DbUrl::Sqlite(path.clone()),
            cleanup: Cleanup::SqliteFile(path),
        }
    }

    /// A new, empty schema in the PostgreSQL database at `base_url`; connections made
    /// through [`ScratchDb::url`] see only that schema.
    pub fn postgres(base_url: &str) -> Result<ScratchDb, String> {
        let schema = unique_name();
        let mut admin = PgConnection::establish(base_url).map_err(|e| e.to_string())?;
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .map_err(|e| e.to_string())?;
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{separator}options=-csearch_path%3D{schema}");
        Ok(ScratchDb {
            url: DbUrl::Postgres(url),
            cleanup: Cleanup::PgSchema {
                base_url: base_url.to_string(),
                schema,
            },
        })
    }

    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// The URL as a `--db` argument for a child process.
    pub fn url_arg(&self) -> String {
        match &self.url {
            DbUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DbUrl::Postgres(raw) => raw.clone(),
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm", ".admin-token", ".cluster-token"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::PgSchema { base_url, schema } => {
                if let Ok(mut admin) = PgConnection::establish(base_url) {
                    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}
