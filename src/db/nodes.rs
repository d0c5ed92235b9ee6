//! Queries on `nodes`: cluster membership. A node's heartbeat advances its own counter
//! and stamps the database's time; the master removes a node only if its counter is
//! still the one it saw, so a node that beat in between stays.

use diesel::prelude::*;

use super::models::{NewNode, Node};
use super::schema::nodes;
use super::DbConn;
use crate::domain::LoadReport;

/// Registers a live process and returns its row (a new id every time).
pub fn register(conn: &mut DbConn, new: &NewNode<'_>) -> QueryResult<Node> {
    diesel::insert_into(nodes::table)
        .values(new)
        .returning(nodes::all_columns)
        .get_result(conn)
}

/// Advances the node's counter, with its load report when it has one; false when its
/// row is gone (it was removed as dead).
pub fn beat(conn: &mut DbConn, id: i64, report: Option<&LoadReport>) -> QueryResult<bool> {
    let advance = (
        nodes::counter.eq(nodes::counter + 1),
        nodes::last_beat_at.eq(diesel::dsl::now),
    );
    let target = diesel::update(nodes::table.find(id));
    let updated = match report {
        Some(report) => target
            .set((
                advance,
                nodes::memory_bytes.eq(report.memory_bytes),
                nodes::cpu_percent.eq(report.cpu_percent),
                nodes::threads.eq(report.threads),
            ))
            .execute(conn)?,
        None => target.set(advance).execute(conn)?,
    };
    Ok(updated == 1)
}

/// Every live node in id order: the first is the master.
pub fn list(conn: &mut DbConn) -> QueryResult<Vec<Node>> {
    nodes::table
        .order(nodes::id)
        .select(Node::as_select())
        .load(conn)
}

/// Removes the node if its counter is still `counter`; true when it was removed.
pub fn remove_if_still(conn: &mut DbConn, id: i64, counter: i64) -> QueryResult<bool> {
    let removed = diesel::delete(
        nodes::table
            .filter(nodes::id.eq(id))
            .filter(nodes::counter.eq(counter)),
    )
    .execute(conn)?;
    Ok(removed == 1)
}

/// Removes a node that is leaving on its own (a clean shutdown).
pub fn leave(conn: &mut DbConn, id: i64) -> QueryResult<()> {
    diesel::delete(nodes::table.find(id))
        .execute(conn)
        .map(|_| ())
}
