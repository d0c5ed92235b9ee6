//! Queries on `events`: every change of a device's health.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::fenced::{FencedRow, Value};
use super::models::{Event, NewEvent};
use super::schema::events;
use super::DbConn;

/// Stores the state changes judged under their device's current assignment epoch and
/// leaves out stale ones (call inside a transaction to make it one write). Answers how
/// many were stored.
pub fn insert_current(conn: &mut DbConn, rows: &[NewEvent]) -> QueryResult<usize> {
    // 7 parameters a row, well under SQLite's 32766.
    super::fenced::insert(conn, rows, 1000)
}

impl FencedRow for NewEvent {
    const TABLE: &'static str = "events";
    const COLUMNS: &'static [&'static str] = &[
        "device_id",
        "epoch",
        "company_id",
        "from_state",
        "to_state",
        "at",
        "reason",
        "kind",
    ];

    fn values(&self) -> Vec<Value<'_>> {
        vec![
            Value::Int(&self.device_id),
            Value::Int(&self.epoch),
            Value::Int(&self.company_id),
            Value::Text(&self.from_state),
            Value::Text(&self.to_state),
            Value::Time(&self.at),
            Value::Text(&self.reason),
            Value::Text(self.kind),
        ]
    }
}

/// Records monitors moved to other servers (written by the scheduler, not fenced).
pub fn record_moves(conn: &mut DbConn, moves: &[NewEvent]) -> QueryResult<usize> {
    let mut inserted = 0;
    for chunk in moves.chunks(1000) {
        inserted += match conn {
            DbConn::Pg(c) => diesel::insert_into(events::table)
                .values(chunk)
                .execute(c)?,
            DbConn::Sqlite(c) => diesel::insert_into(events::table)
                .values(chunk)
                .execute(c)?,
        };
    }
    Ok(inserted)
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub device_id: Option<i64>,
    pub company_id: Option<i64>,
    /// Only events at or after this time.
    pub since: Option<NaiveDateTime>,
}

/// Events matching `filter`, newest first, one page at a time.
pub fn list(
    conn: &mut DbConn,
    filter: &EventFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<Event>> {
    let mut query = events::table
        .select(Event::as_select())
        .order((events::at.desc(), events::id.desc()))
        .limit(limit)
        .offset(offset)
        .into_boxed();
    if let Some(device_id) = filter.device_id {
        query = query.filter(events::device_id.eq(device_id));
    }
    if let Some(company_id) = filter.company_id {
        query = query.filter(events::company_id.eq(company_id));
    }
    if let Some(since) = filter.since {
        query = query.filter(events::at.ge(since));
    }
    query.load(conn)
}

/// The device's events in `[from, to)`, oldest first, and the last health change
/// before `from` (the state it was in when the range began).
pub fn of_device_between(
    conn: &mut DbConn,
    device_id: i64,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<(Vec<Event>, Option<Event>)> {
    let within = events::table
        .filter(events::device_id.eq(device_id))
        .filter(events::at.ge(from))
        .filter(events::at.lt(to))
        .order((events::at, events::id))
        .select(Event::as_select())
        .load(conn)?;
    let before = events::table
        .filter(events::device_id.eq(device_id))
        .filter(events::kind.eq(crate::db::models::EVENT_STATE))
        .filter(events::at.lt(from))
        .order((events::at.desc(), events::id.desc()))
        .select(Event::as_select())
        .first(conn)
        .optional()?;
    Ok((within, before))
}

/// Deletes every event of a device (when the device is deleted).
pub fn delete_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<usize> {
    diesel::delete(events::table.filter(events::device_id.eq(device_id))).execute(conn)
}

/// Deletes every event of a company's devices (when the company is deleted).
pub fn delete_of_company(conn: &mut DbConn, company_id: i64) -> QueryResult<usize> {
    diesel::delete(events::table.filter(events::company_id.eq(company_id))).execute(conn)
}

/// The device's most recent event: its current state as last recorded.
pub fn latest_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<Option<Event>> {
    events::table
        .filter(events::device_id.eq(device_id))
        .order((events::at.desc(), events::id.desc()))
        .select(Event::as_select())
        .first(conn)
        .optional()
}

/// Deletes up to `limit` events older than `before`; returns how many went.
pub fn delete_older_than(
    conn: &mut DbConn,
    before: NaiveDateTime,
    limit: i64,
) -> QueryResult<usize> {
    let ids: Vec<i64> = events::table
        .filter(events::at.lt(before))
        .select(events::id)
        .order(events::id)
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(events::table.filter(events::id.eq_any(&ids))).execute(conn)
}
