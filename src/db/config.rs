//! Queries on the one-row `config` table.

use diesel::prelude::*;

use super::models::{ConfigChanges, ConfigRow};
use super::schema::config;
use super::DbConn;

/// The id of the only row; the migrations insert it and a CHECK keeps it alone.
const ROW: i64 = 1;

pub fn get(conn: &mut DbConn) -> QueryResult<ConfigRow> {
    config::table
        .find(ROW)
        .select(ConfigRow::as_select())
        .first(conn)
}

/// Applies a partial update and returns the row as stored.
pub fn update(conn: &mut DbConn, changes: &ConfigChanges) -> QueryResult<ConfigRow> {
    diesel::update(config::table.find(ROW))
        .set((changes, config::updated_at.eq(diesel::dsl::now)))
        .execute(conn)?;
    get(conn)
}

/// Moves the scheduler's rotating index (`monitor_server_current`) up to `index`; an
/// index already past it (another scheduler got further) is left: it never goes back.
pub fn advance_rotation(conn: &mut DbConn, index: i64) -> QueryResult<()> {
    diesel::update(
        config::table
            .find(ROW)
            .filter(config::monitor_server_current.lt(index)),
    )
    .set(config::monitor_server_current.eq(index))
    .execute(conn)
    .map(|_| ())
}
