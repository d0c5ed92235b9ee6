//! Fenced inserts: rows a monitor reports are stored only while the monitor's epoch is
//! still the epoch of its device's assignment. The check is part of the `INSERT`
//! statement itself (the rows are joined with `assignments` on device and epoch), so a
//! monitor that lost its device to another server cannot store anything, whatever its
//! process believes.
//!
//! ```sql
//! WITH v(device_id, epoch, …) AS (VALUES ($1, $2, …), …)
//! INSERT INTO samples (device_id, epoch, …)
//! SELECT v.device_id, v.epoch, … FROM v
//! JOIN assignments a ON a.device_id = v.device_id AND a.epoch = v.epoch
//! ```
//!
//! The statement answers how many rows it stored; the rest were stale.

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Binary, HasSqlType, Text, Timestamp};

use super::DbConn;

/// One value of a row, as it is bound.
pub(super) enum Value<'a> {
    Int(&'a i64),
    Text(&'a str),
    Time(&'a NaiveDateTime),
    Bytes(&'a [u8]),
}

/// A row reported under an epoch: a sample reading or a state change.
pub(super) trait FencedRow {
    const TABLE: &'static str;
    /// Its columns; the first two are `device_id` and `epoch`.
    const COLUMNS: &'static [&'static str];

    /// What follows the insert's `SELECT` (an upsert's `ON CONFLICT` clause); SQLite
    /// needs a `WHERE` before it to tell it from the join's `ON`.
    const AFTER: &'static str = "";

    /// Its values, in the order of `COLUMNS`.
    fn values(&self) -> Vec<Value<'_>>;
}

/// One `INSERT` of `rows` (callers keep it within the backend's bind limit), fenced
/// unless the flag is false.
struct FencedInsert<'a, R>(&'a [R], bool);

impl<R: FencedRow, DB> QueryFragment<DB> for FencedInsert<'_, R>
where
    DB: Backend
        + HasSqlType<BigInt>
        + HasSqlType<Text>
        + HasSqlType<Timestamp>
        + HasSqlType<Binary>,
    i64: ToSql<BigInt, DB>,
    [u8]: ToSql<Binary, DB>,
    str: ToSql<Text, DB>,
    NaiveDateTime: ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let columns = R::COLUMNS.join(", ");
        let selected: Vec<String> = R::COLUMNS.iter().map(|c| format!("v.{c}")).collect();
        out.push_sql(&format!("WITH v({columns}) AS (VALUES "));
        for (i, row) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            for (n, value) in row.values().into_iter().enumerate() {
                if n > 0 {
                    out.push_sql(", ");
                }
                match value {
                    Value::Int(v) => out.push_bind_param::<BigInt, _>(v)?,
                    Value::Text(v) => out.push_bind_param::<Text, _>(v)?,
                    Value::Time(v) => out.push_bind_param::<Timestamp, _>(v)?,
                    Value::Bytes(v) => out.push_bind_param::<Binary, _>(v)?,
                }
            }
            out.push_sql(")");
        }
        let fence = if self.1 {
            " JOIN assignments a ON a.device_id = v.device_id AND a.epoch = v.epoch"
        } else {
            ""
        };
        out.push_sql(&format!(
            ") INSERT INTO {table} ({columns}) SELECT {selected} FROM v{fence}{after}",
            table = R::TABLE,
            selected = selected.join(", "),
            after = R::AFTER,
        ));
        Ok(())
    }
}

impl<R> QueryId for FencedInsert<'_, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<R, Conn> RunQueryDsl<Conn> for FencedInsert<'_, R> {}

/// Stores the rows whose epoch is their device's current one, `rows_per_statement` at
/// a time (call inside a transaction to make it one write); answers how many were stored.
pub(super) fn insert<R: FencedRow>(
    conn: &mut DbConn,
    rows: &[R],
    rows_per_statement: usize,
) -> QueryResult<usize> {
    insert_with(conn, rows, rows_per_statement, true)
}

/// As [`insert`] when `fenced`; otherwise stores the rows whatever their epoch, for
/// rows accepted once already (the old layout's samples moving to the series store).
pub(super) fn insert_with<R: FencedRow>(
    conn: &mut DbConn,
    rows: &[R],
    rows_per_statement: usize,
    fenced: bool,
) -> QueryResult<usize> {
    let mut stored = 0;
    for chunk in rows.chunks(rows_per_statement.max(1)) {
        let statement = FencedInsert(chunk, fenced);
        stored += match conn {
            DbConn::Pg(c) => statement.execute(c)?,
            DbConn::Sqlite(c) => statement.execute(c)?,
        };
    }
    Ok(stored)
}
