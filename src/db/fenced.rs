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
use diesel::sql_types::{BigInt, Double, HasSqlType, Text, Timestamp};

use super::DbConn;

/// One value of a row, as it is bound.
pub(super) enum Value<'a> {
    Int(&'a i64),
    Text(&'a str),
    Float(&'a f64),
    Time(&'a NaiveDateTime),
}

/// A row reported under an epoch: a sample reading or a state change.
pub(super) trait FencedRow {
    const TABLE: &'static str;
    /// Its columns; the first two are `device_id` and `epoch`.
    const COLUMNS: &'static [&'static str];

    /// Its values, in the order of `COLUMNS`.
    fn values(&self) -> Vec<Value<'_>>;
}

/// One fenced `INSERT` of `rows` (callers keep it within the backend's bind limit).
struct FencedInsert<'a, R>(&'a [R]);

impl<R: FencedRow, DB> QueryFragment<DB> for FencedInsert<'_, R>
where
    DB: Backend
        + HasSqlType<BigInt>
        + HasSqlType<Text>
        + HasSqlType<Double>
        + HasSqlType<Timestamp>,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
    f64: ToSql<Double, DB>,
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
                    Value::Float(v) => out.push_bind_param::<Double, _>(v)?,
                    Value::Time(v) => out.push_bind_param::<Timestamp, _>(v)?,
                }
            }
            out.push_sql(")");
        }
        out.push_sql(&format!(
            ") INSERT INTO {table} ({columns}) SELECT {selected} FROM v \
             JOIN assignments a ON a.device_id = v.device_id AND a.epoch = v.epoch",
            table = R::TABLE,
            selected = selected.join(", "),
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
    let mut stored = 0;
    for chunk in rows.chunks(rows_per_statement.max(1)) {
        let statement = FencedInsert(chunk);
        stored += match conn {
            DbConn::Pg(c) => statement.execute(c)?,
            DbConn::Sqlite(c) => statement.execute(c)?,
        };
    }
    Ok(stored)
}
