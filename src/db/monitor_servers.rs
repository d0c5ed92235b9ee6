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
