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

/// Claims `device_id` for `server_id` (or for no server: a release) if its epoch is
/// still `expected` (`None`: it has no assignment yet), moving the epoch one on.
/// Answers the new epoch, or `None` when someone else changed the owner meanwhile: the
/// compare-and-set that fences every change of owner. The insert runs in a savepoint,
/// so losing a race to another insert does not abort the caller's transaction on
/// PostgreSQL.
pub fn claim(
    conn: &mut DbConn,
    device_id: i64,
    expected: Option<i64>,
    server_id: Option<i64>,
) -> QueryResult<Option<i64>> {
    let Some(epoch) = expected else {
        let inserted = conn.transaction(|conn| {
            diesel::insert_into(assignments::table)
                .values((
                    assignments::device_id.eq(device_id),
                    assignments::server_id.eq(server_id),
                    assignments::epoch.eq(1_i64),
                ))
                .execute(conn)
        });
        return match inserted {
            Ok(_) => Ok(Some(1)),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(None),
            Err(error) => Err(error),
        };
    };
    let next = epoch.saturating_add(1);
    let updated = diesel::update(
        assignments::table
            .find(device_id)
            .filter(assignments::epoch.eq(epoch)),
    )
    .set((
        assignments::server_id.eq(server_id),
        assignments::epoch.eq(next),
        assignments::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)?;
    Ok((updated == 1).then_some(next))
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

/// An assignment with what its device wants: the record reconciliation holds what
/// runs against.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = assignments)]
pub struct Record {
    pub device_id: i64,
    pub server_id: Option<i64>,
    pub epoch: i64,
    pub updated_at: chrono::NaiveDateTime,
    #[diesel(select_expression = devices::monitoring_wanted)]
    pub wanted: bool,
    #[diesel(select_expression = devices::enabled)]
    pub enabled: bool,
}

/// The records of every device assigned to one of `server_ids`.
pub fn records_on(conn: &mut DbConn, server_ids: &[i64]) -> QueryResult<Vec<Record>> {
    assignments::table
        .inner_join(devices::table)
        .filter(assignments::server_id.eq_any(server_ids))
        .select(Record::as_select())
        .load(conn)
}

/// The records of the devices among `device_ids` (a device that does not exist, or was
/// never placed, has none).
pub fn records_of(conn: &mut DbConn, device_ids: &[i64]) -> QueryResult<Vec<Record>> {
    super::in_chunks(device_ids, |chunk| {
        assignments::table
            .inner_join(devices::table)
            .filter(assignments::device_id.eq_any(chunk))
            .select(Record::as_select())
            .load(conn)
    })
}
