//! What the series store holds: series, and per tier (the polls of the hours still
//! open, the blocks the closed ones are sealed in, minute and hour rollups) rows and
//! readings, the bytes they take on disk (tables with their indexes, as the database
//! counts its pages), bytes per reading, and the oldest and newest poll.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::super::schema::{samples, series, series_names};
use super::super::DbConn;
use super::rollup::Tier;

/// The tables of the raw tier and of the latest polls, with their indexes.
const RAW_TABLES: [&str; 3] = ["polls", "polls_device_at", "polls_at"];
const BLOCK_TABLES: [&str; 3] = ["blocks", "blocks_device_at", "blocks_at"];
const LATEST_TABLES: [&str; 2] = ["latest_polls", "sqlite_autoindex_latest_polls_1"];
/// Both rollup tiers share one table: its bytes are shared out in proportion to the
/// bytes of each tier's rows.
/// (On SQLite the table is kept in its key's order: its key is the table.)
const ROLLUP_TABLES: [&str; 2] = ["rollups", "rollups_tier_at"];
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
    /// The polls of the hours not sealed yet, one row each.
    pub raw: TierStats,
    /// The polls sealed in blocks: `polls` counts the polls they hold.
    pub blocks: TierStats,
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

/// A tier's rows, readings, bytes of its rows' data, and oldest and newest time, in
/// one pass over its rows.
#[derive(QueryableByName)]
struct Counted {
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

impl Counted {
    /// The rows of `table` that `filter` keeps; their data's bytes only when
    /// `data_bytes` (0 otherwise, sparing the length of every row).
    fn of(conn: &mut DbConn, table: &str, filter: &str, data_bytes: bool) -> QueryResult<Counted> {
        let data = if data_bytes {
            "CAST(COALESCE(SUM(LENGTH(data)), 0) AS BIGINT)"
        } else {
            "CAST(0 AS BIGINT)"
        };
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS rows, CAST(COALESCE(SUM(samples), 0) AS BIGINT) AS samples, \
             {data} AS data_bytes, MIN(at_ms) AS oldest_ms, MAX(at_ms) AS newest_ms \
             FROM {table} WHERE {filter}"
        ))
        .get_result(conn)
    }

    fn tier(&self, bytes: i64) -> TierStats {
        TierStats {
            polls: self.rows,
            samples: self.samples,
            bytes,
            oldest_ms: self.oldest_ms,
            newest_ms: self.newest_ms,
        }
    }
}

/// The minute and hour tiers, the rollups table's bytes shared out between them by
/// the bytes of their rows.
fn rollup_tiers(conn: &mut DbConn) -> QueryResult<(TierStats, TierStats)> {
    let minute_filter = format!("tier = {}", Tier::Minute.code());
    let hour_filter = format!("tier = {}", Tier::Hour.code());
    let minutes = Counted::of(conn, "rollups", &minute_filter, true)?;
    let hours = Counted::of(conn, "rollups", &hour_filter, true)?;
    let table_bytes = bytes_of(conn, &ROLLUP_TABLES)? as f64;
    let all_data = (minutes.data_bytes + hours.data_bytes) as f64;
    let share = |c: &Counted| {
        if all_data > 0.0 {
            (table_bytes * c.data_bytes as f64 / all_data).round() as i64
        } else {
            0
        }
    };
    Ok((minutes.tier(share(&minutes)), hours.tier(share(&hours))))
}

/// The blocks: the polls and readings they hold, oldest and newest poll.
fn block_tier(conn: &mut DbConn) -> QueryResult<TierStats> {
    let counted: Counted = diesel::sql_query(
        "SELECT CAST(COALESCE(SUM(polls), 0) AS BIGINT) AS rows, \
         CAST(COALESCE(SUM(samples), 0) AS BIGINT) AS samples, CAST(0 AS BIGINT) AS data_bytes, \
         MIN(at_ms) AS oldest_ms, MAX(end_ms) AS newest_ms FROM blocks",
    )
    .get_result(conn)?;
    Ok(counted.tier(bytes_of(conn, &BLOCK_TABLES)?))
}

pub fn stats(conn: &mut DbConn) -> QueryResult<StoreStats> {
    let raw = Counted::of(conn, "polls", "true", false)?.tier(bytes_of(conn, &RAW_TABLES)?);
    let blocks = block_tier(conn)?;
    let (minutes, hours) = rollup_tiers(conn)?;
    Ok(StoreStats {
        minutes,
        hours,
        series: series::table.count().get_result(conn)?,
        names: series_names::table.count().get_result(conn)?,
        catalogue_bytes: bytes_of(conn, &CATALOGUE_TABLES)?,
        raw,
        blocks,
        latest_bytes: bytes_of(conn, &LATEST_TABLES)?,
        old_layout_samples: samples::table.count().get_result(conn)?,
        old_layout_bytes: bytes_of(conn, &OLD_LAYOUT_TABLES)?,
    })
}
