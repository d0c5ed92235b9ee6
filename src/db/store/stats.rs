//! What the series store holds: series, and per tier (raw polls, minute and hour
//! rollups) rows and readings, the bytes they take on
//! disk (tables with their indexes, as the database counts its pages), bytes per
//! reading, and the oldest and newest poll.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::super::schema::{samples, series, series_names};
use super::super::DbConn;
use super::rollup::Tier;

/// The tables of the raw tier and of the latest polls, with their indexes.
const RAW_TABLES: [&str; 3] = ["polls", "polls_device_at", "polls_at"];
const LATEST_TABLES: [&str; 2] = ["latest_polls", "sqlite_autoindex_latest_polls_1"];
/// Both rollup tiers share one table: its bytes are shared out in proportion to the
/// bytes of each tier's rows.
const ROLLUP_TABLES: [&str; 3] = ["rollups", "sqlite_autoindex_rollups_1", "rollups_tier_at"];
const OLD_LAYOUT_TABLES: [&str; 3] = ["samples", "samples_device_at", "samples_at"];
const CATALOGUE_TABLES: [&str; 5] = [
    "series",
    "sqlite_autoindex_series_1",
    "series_names",
    "sqlite_autoindex_series_names_1",
    "sqlite_sequence",
];

#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    pub series: i64,
    /// Distinct series names (metric and labels) across the fleet.
    pub names: i64,
    pub catalogue_bytes: i64,
    pub raw: TierStats,
    /// The rollups: `polls` counts their rows (one per device and period), `samples`
    /// the readings they sum up.
    pub minutes: TierStats,
    pub hours: TierStats,
    /// Bytes of the newest poll of every device.
    pub latest_bytes: i64,
    /// Rows of the old layout not moved yet (moved at a node's next start).
    pub old_layout_samples: i64,
    pub old_layout_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierStats {
    pub polls: i64,
    pub samples: i64,
    pub bytes: i64,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

impl TierStats {
    pub fn bytes_per_sample(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.bytes as f64 / self.samples as f64)
    }
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = Nullable<BigInt>)]
    n: Option<i64>,
}

/// Bytes on disk of `tables` (and, on PostgreSQL, their indexes and TOAST).
fn bytes_of(conn: &mut DbConn, tables: &[&str]) -> QueryResult<i64> {
    let list = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = match conn {
        // Only the tables: pg_total_relation_size counts their indexes.
        DbConn::Pg(_) => format!(
            "SELECT CAST(SUM(pg_total_relation_size(c.oid)) AS BIGINT) AS n FROM pg_class c \
             WHERE c.relname IN ({list}) AND c.relkind = 'r' \
             AND c.relnamespace = CAST(current_schema() AS regnamespace)"
        ),
        DbConn::Sqlite(_) => {
            format!("SELECT CAST(SUM(pgsize) AS BIGINT) AS n FROM dbstat WHERE name IN ({list})")
        }
    };
    let number: Number = diesel::sql_query(sql).get_result(conn)?;
    Ok(number.n.unwrap_or(0))
}

/// Polls, readings, oldest and newest poll, in one pass over `polls`.
#[derive(QueryableByName)]
struct Raw {
    #[diesel(sql_type = BigInt)]
    polls: i64,
    #[diesel(sql_type = BigInt)]
    samples: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest_ms: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    newest_ms: Option<i64>,
}

/// A rollup tier's rows, readings, oldest and newest period, and its rows' bytes.
#[derive(QueryableByName)]
struct Rollups {
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = BigInt)]
    samples: i64,
    #[diesel(sql_type = BigInt)]
    data_bytes: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest_ms: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    newest_ms: Option<i64>,
}

fn rollup_tiers(conn: &mut DbConn) -> QueryResult<(TierStats, TierStats)> {
    let mut counted = Vec::new();
    for tier in [Tier::Minute, Tier::Hour] {
        let row: Rollups = diesel::sql_query(format!(
            "SELECT COUNT(*) AS rows, CAST(COALESCE(SUM(samples), 0) AS BIGINT) AS samples, \
             CAST(COALESCE(SUM(LENGTH(data)), 0) AS BIGINT) AS data_bytes, \
             MIN(at_ms) AS oldest_ms, MAX(at_ms) AS newest_ms FROM rollups WHERE tier = {}",
            tier.code()
        ))
        .get_result(conn)?;
        counted.push(row);
    }
    let table_bytes = bytes_of(conn, &ROLLUP_TABLES)?;
    let all_data: i64 = counted.iter().map(|r| r.data_bytes).sum();
    let mut tiers = counted.into_iter().map(|r| TierStats {
        polls: r.rows,
        samples: r.samples,
        bytes: if all_data > 0 {
            (table_bytes as f64 * r.data_bytes as f64 / all_data as f64).round() as i64
        } else {
            0
        },
        oldest_ms: r.oldest_ms,
        newest_ms: r.newest_ms,
    });
    let empty = || TierStats {
        polls: 0,
        samples: 0,
        bytes: 0,
        oldest_ms: None,
        newest_ms: None,
    };
    Ok((
        tiers.next().unwrap_or_else(empty),
        tiers.next().unwrap_or_else(empty),
    ))
}

pub fn stats(conn: &mut DbConn) -> QueryResult<StoreStats> {
    let counted: Raw = diesel::sql_query(
        "SELECT COUNT(*) AS polls, CAST(COALESCE(SUM(samples), 0) AS BIGINT) AS samples, \
         MIN(at_ms) AS oldest_ms, MAX(at_ms) AS newest_ms FROM polls",
    )
    .get_result(conn)?;
    let raw = TierStats {
        polls: counted.polls,
        samples: counted.samples,
        bytes: bytes_of(conn, &RAW_TABLES)?,
        oldest_ms: counted.oldest_ms,
        newest_ms: counted.newest_ms,
    };
    let (minutes, hours) = rollup_tiers(conn)?;
    Ok(StoreStats {
        minutes,
        hours,
        series: series::table.count().get_result(conn)?,
        names: series_names::table.count().get_result(conn)?,
        catalogue_bytes: bytes_of(conn, &CATALOGUE_TABLES)?,
        raw,
        latest_bytes: bytes_of(conn, &LATEST_TABLES)?,
        old_layout_samples: samples::table.count().get_result(conn)?,
        old_layout_bytes: bytes_of(conn, &OLD_LAYOUT_TABLES)?,
    })
}
