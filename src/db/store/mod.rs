//! The series store: what polls read, kept as a series catalogue (every series name
//! once for the fleet, every series of a device once, each with a numeric id) and one
//! row per poll holding its readings encoded together (`codec`), beside the newest
//! poll of every device (`latest_polls`), which the fleet-wide readers take without a
//! scan. On disk, with the row's own bytes and its indexes, that is 11–15 bytes a
//! reading of an agent's poll (`vigil bench ingest`), where the old layout (`samples`,
//! one row per reading with its name as text) took 94–142; `upgrade` moves a database
//! of that layout over. Once an hour has closed, `seal` moves its polls into blocks of
//! compressed columns (`block`), about 1.6 bytes a reading; `rollup` keeps minutes and
//! hours beside them.

pub mod block;
pub mod catalogue;
pub mod codec;
mod read;
pub mod rollup;
pub mod seal;
pub mod stats;
pub mod upgrade;
mod write;

use diesel::prelude::*;

use super::schema::{latest_polls, polls, series};
use super::DbConn;

pub use self::catalogue::Catalogue;
pub use self::read::{each_reading, history, latest, latest_of_all, Bucket, Reading};
pub use self::write::{write, NewPoll, Stored};

/// Stores polls whatever their device's epoch: readings a collection job took itself,
/// not a monitor under an assignment.
pub fn write_unfenced(
    conn: &mut DbConn,
    catalogue: &mut Catalogue,
    polls: &[NewPoll<'_>],
) -> QueryResult<Stored> {
    write::write_accepted(conn, catalogue, polls)
}

/// Deletes up to `limit` polls older than `before_ms` (and, with the last chunk, the
/// latest poll of devices last polled before then); answers how many polls went.
/// Callers repeat until it answers less than `limit`, so no one statement holds locks
/// for long.
pub fn delete_older_than(conn: &mut DbConn, before_ms: i64, limit: i64) -> QueryResult<usize> {
    let ids: Vec<i64> = polls::table
        .filter(polls::at_ms.lt(before_ms))
        .select(polls::id)
        .order(polls::id)
        .limit(limit)
        .load(conn)?;
    let deleted = if ids.is_empty() {
        0
    } else {
        diesel::delete(polls::table.filter(polls::id.eq_any(&ids))).execute(conn)?
    };
    if (deleted as i64) < limit {
        diesel::delete(latest_polls::table.filter(latest_polls::at_ms.lt(before_ms)))
            .execute(conn)?;
    }
    Ok(deleted)
}

/// Deletes everything stored of a device: its polls and blocks, its latest poll, its
/// series and its rollups; answers the polls and blocks deleted.
pub fn delete_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<usize> {
    let polls = diesel::delete(polls::table.filter(polls::device_id.eq(device_id)))
        .execute(conn)?
        + seal::delete_of_device(conn, device_id)?;
    diesel::delete(latest_polls::table.filter(latest_polls::device_id.eq(device_id)))
        .execute(conn)?;
    diesel::delete(series::table.filter(series::device_id.eq(device_id))).execute(conn)?;
    rollup::delete_of_device(conn, device_id)?;
    Ok(polls)
}

/// How many readings are stored, in polls and in blocks.
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let total: Total = diesel::sql_query(
        "SELECT CAST((SELECT COALESCE(SUM(samples), 0) FROM polls) \
         + (SELECT COALESCE(SUM(samples), 0) FROM blocks) AS BIGINT) AS n",
    )
    .get_result(conn)?;
    Ok(total.n)
}
