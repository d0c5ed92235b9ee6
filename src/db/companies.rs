//! Queries on `companies`.

use diesel::prelude::*;

use super::assignments;
use super::models::{Company, NewCompany};
use super::schema::companies;
use super::{write_transaction, DbConn};

pub fn create(conn: &mut DbConn, name: &str) -> QueryResult<Company> {
    diesel::insert_into(companies::table)
        .values(&NewCompany { name })
        .returning(companies::all_columns)
        .get_result(conn)
}

/// Every company, or only `only` when given.
pub fn list(conn: &mut DbConn, only: Option<i64>) -> QueryResult<Vec<Company>> {
    let mut query = companies::table
        .order(companies::id)
        .select(Company::as_select())
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(companies::id.eq(id));
    }
    query.load(conn)
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<Company>> {
    companies::table
        .find(id)
        .select(Company::as_select())
        .first(conn)
        .optional()
}

/// `company id → name` of the companies among `ids`.
pub fn names_of(
    conn: &mut DbConn,
    ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, String>> {
    let found: Vec<(i64, String)> = super::in_chunks(ids, |chunk| {
        companies::table
            .filter(companies::id.eq_any(chunk))
            .select((companies::id, companies::name))
            .load(conn)
    })?;
    Ok(found.into_iter().collect())
}

pub fn find_by_name(conn: &mut DbConn, name: &str) -> QueryResult<Option<Company>> {
    companies::table
        .filter(companies::name.eq(name))
        .select(Company::as_select())
        .first(conn)
        .optional()
}

/// What [`delete_unless_monitored`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    NotFound,
    /// Refused: this many of its devices are assigned to a monitor server.
    Monitored(i64),
}

/// Deletes a company with its devices, their samples and events, unless one of them is monitored; checked and
/// deleted in one write transaction so a start cannot slip in between.
pub fn delete_unless_monitored(conn: &mut DbConn, id: i64) -> QueryResult<Deletion> {
    write_transaction(conn, |conn| {
        if get(conn, id)?.is_none() {
            return Ok(Deletion::NotFound);
        }
        let monitored = assignments::monitored_in_company(conn, id)?;
        if monitored > 0 {
            return Ok(Deletion::Monitored(monitored));
        }
        let device_ids = super::devices::ids_of_company(conn, id)?;
        for device_id in device_ids {
            super::store::delete_of_device(conn, device_id)?;
        }
        super::events::delete_of_company(conn, id)?;
        diesel::delete(companies::table.find(id)).execute(conn)?;
        Ok(Deletion::Deleted)
    })
}
