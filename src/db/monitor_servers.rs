//! Queries on `monitor_servers`: the replicas the scheduler rotates over.

use diesel::prelude::*;

use super::models::{MonitorServer, NewMonitorServer};
use super::schema::monitor_servers;
use super::{write_transaction, DbConn};

/// Registers a server by address, or returns the row it already has: a restarted
/// server keeps its id and its place in the rotation.
pub fn register(conn: &mut DbConn, host: &str, port: u16) -> QueryResult<MonitorServer> {
    let port = i32::from(port);
    write_transaction(conn, |conn| {
        if let Some(existing) = find_by_address(conn, host, port)? {
            return Ok(existing);
        }
        diesel::insert_into(monitor_servers::table)
            .values(&NewMonitorServer { host, port })
            .returning(monitor_servers::all_columns)
            .get_result(conn)
    })
}

fn find_by_address(conn: &mut DbConn, host: &str, port: i32) -> QueryResult<Option<MonitorServer>> {
    monitor_servers::table
        .filter(monitor_servers::host.eq(host))
        .filter(monitor_servers::port.eq(port))
        .select(MonitorServer::as_select())
        .first(conn)
        .optional()
}

/// Every registered server in id order: the order of the rotation.
pub fn list(conn: &mut DbConn) -> QueryResult<Vec<MonitorServer>> {
    monitor_servers::table
        .order(monitor_servers::id)
        .select(MonitorServer::as_select())
        .load(conn)
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<MonitorServer>> {
    monitor_servers::table
        .find(id)
        .select(MonitorServer::as_select())
        .first(conn)
        .optional()
}

/// Forgets a server: its devices are released (epochs bumped) and its row deleted, in
/// one transaction. Returns how many devices it owned, or `None` if there was no such server.
pub fn forget(conn: &mut DbConn, id: i64) -> QueryResult<Option<usize>> {
    write_transaction(conn, |conn| {
        if get(conn, id)?.is_none() {
            return Ok(None);
        }
        let released = super::assignments::release_all_of_server(conn, id)?;
        diesel::delete(monitor_servers::table.find(id)).execute(conn)?;
        Ok(Some(released))
    })
}
