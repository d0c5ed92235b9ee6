//! Queries on `devices`.

use std::collections::{BTreeSet, HashSet};

use diesel::prelude::*;

use super::models::{Device, DeviceChanges, NewDevice};
use super::schema::devices;
use super::DbConn;

/// Bind parameters one SQLite statement takes at most (`SQLITE_MAX_VARIABLE_NUMBER`).
const SQLITE_MAX_BINDS: usize = 32_766;
/// Bind parameters one PostgreSQL statement takes at most (a 16-bit count).
const PG_MAX_BINDS: usize = 65_535;
/// The columns a [`NewDevice`] binds: one parameter each per row.
const NEW_DEVICE_COLUMNS: usize = 6;

pub fn create(conn: &mut DbConn, new: &NewDevice<'_>) -> QueryResult<Device> {
    diesel::insert_into(devices::table)
        .values(new)
        .returning(devices::all_columns)
        .get_result(conn)
}

/// Inserts every device of `new` with multi-row INSERTs, as many rows a statement as
/// the backend's bind limit allows, and answers the stored rows in no particular order
/// (SQLite does not promise RETURNING's). Call inside a transaction to make it one write.
pub fn create_many(conn: &mut DbConn, new: &[NewDevice<'_>]) -> QueryResult<Vec<Device>> {
    // `MultiConnection` cannot build a multi-row INSERT: each backend's connection does.
    let rows_per_statement = match conn {
        DbConn::Pg(_) => PG_MAX_BINDS / NEW_DEVICE_COLUMNS,
        DbConn::Sqlite(_) => SQLITE_MAX_BINDS / NEW_DEVICE_COLUMNS,
    };
    let mut created = Vec::with_capacity(new.len());
    for chunk in new.chunks(rows_per_statement) {
        // The returning clause's type names the backend: one statement per arm.
        let insert = diesel::insert_into(devices::table).values(chunk);
        created.extend(match conn {
            DbConn::Pg(pg) => insert.returning(Device::as_returning()).get_results(pg)?,
            DbConn::Sqlite(sqlite) => insert
                .returning(Device::as_returning())
                .get_results(sqlite)?,
        });
    }
    Ok(created)
}

/// The `(company id, name)` pairs among `wanted` that a stored device has already.
pub fn taken_names(
    conn: &mut DbConn,
    wanted: &[(i64, &str)],
) -> QueryResult<HashSet<(i64, String)>> {
    let mut taken = HashSet::new();
    // Each statement binds a chunk's names and its companies: at most two lists of
    // half the usual length, so no more parameters than any other chunked query.
    for chunk in wanted.chunks(super::MAX_IDS_PER_QUERY / 2) {
        let companies: BTreeSet<i64> = chunk.iter().map(|(company, _)| *company).collect();
        let names: BTreeSet<&str> = chunk.iter().map(|(_, name)| *name).collect();
        let pairs: HashSet<(i64, &str)> = chunk.iter().copied().collect();
        let found: Vec<(i64, String)> = devices::table
            .filter(devices::company_id.eq_any(companies))
            .filter(devices::name.eq_any(names))
            .select((devices::company_id, devices::name))
            .load(conn)?;
        // Both lists match a name of one company stored in another: keep exact pairs.
        taken.extend(
            found
                .into_iter()
                .filter(|(company, name)| pairs.contains(&(*company, name.as_str()))),
        );
    }
    Ok(taken)
}

/// A device's assignment: its server (`None` once released) and epoch.
pub type Assigned = (Option<i64>, i64);

/// Devices ordered by id, optionally of one company, one page at a time; each with its
/// assignment's server and epoch (`None` when it never had one), read in the same
/// statement.
pub fn list_with_owners(
    conn: &mut DbConn,
    company_id: Option<i64>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<(Device, Option<Assigned>)>> {
    use super::schema::assignments;
    // Two queries rather than one boxed: diesel caches the prepared statement of each.
    let page = devices::table
        .left_join(assignments::table)
        .select((
            Device::as_select(),
            (assignments::server_id, assignments::epoch).nullable(),
        ))
        .order(devices::id)
        .limit(limit)
        .offset(offset);
    match company_id {
        Some(company_id) => page.filter(devices::company_id.eq(company_id)).load(conn),
        None => page.load(conn),
    }
}

/// The ids of a company's enabled devices: what a company-wide start asks for.
pub fn enabled_ids_of_company(conn: &mut DbConn, company_id: i64) -> QueryResult<Vec<i64>> {
    devices::table
        .filter(devices::company_id.eq(company_id))
        .filter(devices::enabled.eq(true))
        .order(devices::id)
        .select(devices::id)
        .load(conn)
}

/// The devices among `ids` that exist, in id order.
pub fn of_ids(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<Device>> {
    let mut found = super::in_chunks(ids, |chunk| {
        devices::table
            .filter(devices::id.eq_any(chunk))
            .select(Device::as_select())
            .load(conn)
    })?;
    found.sort_by_key(|d| d.id);
    Ok(found)
}

/// Every device id of a company, enabled or not (a company-wide stop asks for all).
pub fn ids_of_company(conn: &mut DbConn, company_id: i64) -> QueryResult<Vec<i64>> {
    devices::table
        .filter(devices::company_id.eq(company_id))
        .order(devices::id)
        .select(devices::id)
        .load(conn)
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<Device>> {
    devices::table
        .find(id)
        .select(Device::as_select())
        .first(conn)
        .optional()
}

/// The device, if it exists and (when `company_id` is given) belongs to that company.
pub fn get_in(conn: &mut DbConn, id: i64, company_id: Option<i64>) -> QueryResult<Option<Device>> {
    let mut query = devices::table
        .filter(devices::id.eq(id))
        .select(Device::as_select())
        .into_boxed();
    if let Some(company_id) = company_id {
        query = query.filter(devices::company_id.eq(company_id));
    }
    query.first(conn).optional()
}

pub fn find_by_name(conn: &mut DbConn, company_id: i64, name: &str) -> QueryResult<Option<Device>> {
    devices::table
        .filter(devices::company_id.eq(company_id))
        .filter(devices::name.eq(name))
        .select(Device::as_select())
        .first(conn)
        .optional()
}

/// Applies `changes` and stamps `updated_at`; `None` when the device does not exist.
pub fn update(conn: &mut DbConn, id: i64, changes: &DeviceChanges) -> QueryResult<Option<Device>> {
    diesel::update(devices::table.find(id))
        .set((changes, devices::updated_at.eq(diesel::dsl::now)))
        .returning(devices::all_columns)
        .get_result(conn)
        .optional()
}

/// Deletes a device with its samples and events (its assignment goes by cascade);
/// false when there was none.
pub fn delete(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    super::write_transaction(conn, |conn| {
        super::store::delete_of_device(conn, id)?;
        super::events::delete_of_device(conn, id)?;
        Ok(diesel::delete(devices::table.find(id)).execute(conn)? > 0)
    })
}

/// `(device id, device name, company name)` of the devices among `ids`.
pub fn names_of(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<(i64, String, String)>> {
    use super::schema::companies;
    super::in_chunks(ids, |chunk| {
        devices::table
            .inner_join(companies::table)
            .filter(devices::id.eq_any(chunk))
            .select((devices::id, devices::name, companies::name))
            .load(conn)
    })
}

/// How many devices exist.
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    devices::table.count().get_result(conn)
}

/// How many devices `company_id` has.
pub fn count_of_company(conn: &mut DbConn, company_id: i64) -> QueryResult<i64> {
    devices::table
        .filter(devices::company_id.eq(company_id))
        .count()
        .get_result(conn)
}

/// The devices among `ids` that are meant to be monitored, their rows locked until the
/// caller's transaction ends (PostgreSQL; a SQLite write transaction holds the whole
/// database already), so that a stop cannot slip in between this read and a claim.
pub fn lock_wanted(conn: &mut DbConn, ids: &[i64]) -> QueryResult<HashSet<i64>> {
    let mut wanted = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(super::MAX_IDS_PER_QUERY) {
        let query = devices::table
            .filter(devices::id.eq_any(chunk))
            .filter(devices::monitoring_wanted.eq(true))
            .select(devices::id);
        let found: Vec<i64> = match conn {
            DbConn::Pg(pg) => query.for_update().load(pg)?,
            DbConn::Sqlite(sqlite) => query.load(sqlite)?,
        };
        wanted.extend(found);
    }
    Ok(wanted)
}

/// Records whether the devices among `ids` are meant to be monitored.
pub fn set_wanted(conn: &mut DbConn, ids: &[i64], wanted: bool) -> QueryResult<()> {
    for chunk in ids.chunks(super::MAX_IDS_PER_QUERY) {
        diesel::update(devices::table.filter(devices::id.eq_any(chunk)))
            .set(devices::monitoring_wanted.eq(wanted))
            .execute(conn)?;
    }
    Ok(())
}

/// Enabled devices meant to be monitored that no member of the cluster owns: their
/// server's node was removed as dead, their server released them (fenced, forgotten),
/// or no server had room for them yet. What failover starts, with the server each was
/// on (`None` once released, or never placed).
pub fn orphaned(conn: &mut DbConn) -> QueryResult<Vec<(i64, Option<i64>)>> {
    use super::schema::{assignments, nodes};
    let members = nodes::table
        .filter(nodes::server_id.is_not_null())
        .select(nodes::server_id.assume_not_null());
    devices::table
        .left_join(assignments::table)
        .filter(devices::monitoring_wanted.eq(true))
        .filter(devices::enabled.eq(true))
        .filter(
            assignments::server_id
                .is_null()
                .or(assignments::server_id.assume_not_null().ne_all(members)),
        )
        .order(devices::id)
        .select((devices::id, assignments::server_id.nullable()))
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Devices with and without an expected status: on SQLite diesel writes a batch as
    /// one statement only when no row leaves a column to its default.
    #[test]
    fn new_devices_go_in_as_one_multi_row_statement_on_sqlite() {
        let row = |name, expected_status| NewDevice {
            company_id: 1,
            name,
            address: "127.0.0.1:22",
            kind: "tcp",
            enabled: true,
            expected_status,
        };
        let rows = [row("a", None), row("b", Some(204)), row("c", None)];
        // (diesel shows a batch without its RETURNING; the split does not depend on it.)
        let insert = diesel::insert_into(devices::table).values(&rows[..]);
        let sql = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&insert).to_string();
        assert!(!sql.contains("BEGIN"), "one statement per row: {sql}");
        assert_eq!(sql.matches("INSERT").count(), 1, "{sql}");
        assert_eq!(sql.matches("), (").count(), rows.len() - 1, "{sql}");
    }
}
