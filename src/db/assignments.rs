//! Queries on `assignments`: which monitor server owns each device, and the epoch of
//! that ownership. The epoch grows on every change of owner, release included, so a
//! later owner can always be told apart from an earlier one.

use diesel::prelude::*;

use super::models::Assignment;
use super::schema::{assignments, devices};
use super::DbConn;

pub fn get(conn: &mut DbConn, device_id: i64) -> QueryResult<Option<Assignment>> {
    assignments::table
        .find(device_id)
        .select(Assignment::as_select())
        .first(conn)
        .optional()
}

/// The assignments of the given devices (devices never scheduled have none).
pub fn of_devices(conn: &mut DbConn, device_ids: &[i64]) -> QueryResult<Vec<Assignment>> {
    super::in_chunks(device_ids, |chunk| {
        assignments::table
            .filter(assignments::device_id.eq_any(chunk))
            .select(Assignment::as_select())
            .load(conn)
    })
}

/// The epoch the next owner of a device gets, given its assignment (if it has one).
pub fn next_epoch(assignment: Option<&Assignment>) -> i64 {
    assignment.map_or(1, |a| a.epoch.saturating_add(1))
}

/// Records `server_id` as the owner of `device_id` with `epoch`, unless the stored epoch
/// is already at or past it (someone else changed the owner meanwhile). Returns whether
/// this write won. Each statement is atomic on its own, so this runs alone or inside
/// the caller's transaction; the insert runs in a savepoint there, so losing a race to
/// another insert does not abort the caller's transaction on PostgreSQL.
pub fn assign(conn: &mut DbConn, device_id: i64, server_id: i64, epoch: i64) -> QueryResult<bool> {
    let updated = diesel::update(
        assignments::table
            .find(device_id)
            .filter(assignments::epoch.lt(epoch)),
    )
    .set((
        assignments::server_id.eq(server_id),
        assignments::epoch.eq(epoch),
        assignments::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)?;
    if updated == 1 {
        return Ok(true);
    }
    if get(conn, device_id)?.is_some() {
        return Ok(false);
    }
    let inserted = conn.transaction(|conn| {
        diesel::insert_into(assignments::table)
            .values((
                assignments::device_id.eq(device_id),
                assignments::server_id.eq(server_id),
                assignments::epoch.eq(epoch),
            ))
            .execute(conn)
    });
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Marks a device as monitored nowhere, bumping the epoch; a no-op when it already is.
pub fn release(conn: &mut DbConn, device_id: i64) -> QueryResult<()> {
    diesel::update(
        assignments::table
            .find(device_id)
            .filter(assignments::server_id.is_not_null()),
    )
    .set((
        assignments::server_id.eq(None::<i64>),
        assignments::epoch.eq(assignments::epoch + 1),
        assignments::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .map(|_| ())
}

/// Marks every device owned by `server_id` as monitored nowhere (bumping epochs), for a
/// server that is being forgotten. Returns how many devices it owned.
pub fn release_all_of_server(conn: &mut DbConn, server_id: i64) -> QueryResult<usize> {
    diesel::update(assignments::table.filter(assignments::server_id.eq(server_id)))
        .set((
            assignments::server_id.eq(None::<i64>),
            assignments::epoch.eq(assignments::epoch + 1),
            assignments::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
}

/// How many devices of a company are assigned to a server.
pub fn monitored_in_company(conn: &mut DbConn, company_id: i64) -> QueryResult<i64> {
    assignments::table
        .inner_join(devices::table)
        .filter(devices::company_id.eq(company_id))
        .filter(assignments::server_id.is_not_null())
        .count()
        .get_result(conn)
}

/// How many devices are assigned to a monitor server now.
pub fn count_monitored(conn: &mut DbConn) -> QueryResult<i64> {
    assignments::table
        .filter(assignments::server_id.is_not_null())
        .count()
        .get_result(conn)
}
