//! Queries on `samples`: batch inserts from the metrics writer, history downsampled
//! into buckets, the latest reading of a device, and retention.
//!
//! Times are `at_ms`, milliseconds since the Unix epoch, so both backends bucket them
//! with the same integer arithmetic. Grouping by a computed bucket is beyond diesel's
//! query builder, so those two queries are SQL, written once per backend's placeholder
//! style.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};

use super::fenced::{FencedRow, Value};
use super::models::NewSample;
use super::schema::samples;
use super::DbConn;

/// Rows per INSERT statement: 5 parameters each, well under SQLite's 32766.
const ROWS_PER_INSERT: usize = 1000;

/// Stores the readings taken under their device's current assignment epoch and leaves
/// out stale ones, several statements if need be (call inside a transaction to make
/// them one write). Answers how many were stored.
pub fn insert_current(conn: &mut DbConn, rows: &[NewSample]) -> QueryResult<usize> {
    super::fenced::insert(conn, rows, ROWS_PER_INSERT)
}

impl FencedRow for NewSample {
    const TABLE: &'static str = "samples";
    const COLUMNS: &'static [&'static str] = &["device_id", "epoch", "at_ms", "metric", "value"];

    fn values(&self) -> Vec<Value<'_>> {
        vec![
            Value::Int(&self.device_id),
            Value::Int(&self.epoch),
            Value::Int(&self.at_ms),
            Value::Text(&self.metric),
            Value::Float(&self.value),
        ]
    }
}

/// One bucket of one series.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Bucket {
    #[diesel(sql_type = Text)]
    pub metric: String,
    /// Index of the bucket from the start of the range.
    #[diesel(sql_type = BigInt)]
    pub bucket: i64,
    #[diesel(sql_type = Double)]
    pub min: f64,
    #[diesel(sql_type = Double)]
    pub avg: f64,
    #[diesel(sql_type = Double)]
    pub max: f64,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// The history query for one backend: `$n` (PostgreSQL) or `?n` (SQLite) placeholders,
/// 1 = from, 2 = width, 3 = device, 4 = to, 5 = limit, then two per filtered name (the
/// exact series, and a LIKE pattern for every series of a bare name).
fn history_sql(mark: char, names: usize) -> String {
    let p = |n: usize| format!("{mark}{n}");
    let mut sql = format!(
        "SELECT metric, (at_ms - {from}) / {width} AS bucket, \
         min(value) AS min, avg(value) AS avg, max(value) AS max, count(*) AS count \
         FROM samples WHERE device_id = {device} AND at_ms >= {from} AND at_ms < {to}",
        from = p(1),
        width = p(2),
        device = p(3),
        to = p(4),
    );
    if names > 0 {
        let alternatives: Vec<String> = (0..names)
            .map(|i| format!("metric = {} OR metric LIKE {}", p(6 + 2 * i), p(7 + 2 * i)))
            .collect();
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    sql.push_str(&format!(
        " GROUP BY metric, bucket ORDER BY metric, bucket LIMIT {}",
        p(5)
    ));
    sql
}

/// The device's samples in `[from_ms, to_ms)`, grouped per series into buckets of
/// `width_ms` counted from `from_ms`, ordered by series and bucket, at most `limit`
/// buckets. With `names`, only series of those names (exact series, or every series
/// of a bare metric name; the LIKE may let through a few more, callers filter exactly).
pub fn history(
    conn: &mut DbConn,
    device_id: i64,
    range: (i64, i64, i64),
    names: &[String],
    limit: i64,
) -> QueryResult<Vec<Bucket>> {
    let (from_ms, to_ms, width_ms) = range;
    let width_ms = width_ms.max(1);
    macro_rules! run {
        ($conn:expr, $backend:ty, $mark:expr) => {{
            let mut query = diesel::sql_query(history_sql($mark, names.len()))
                .into_boxed::<$backend>()
                .bind::<BigInt, _>(from_ms)
                .bind::<BigInt, _>(width_ms)
                .bind::<BigInt, _>(device_id)
                .bind::<BigInt, _>(to_ms)
                .bind::<BigInt, _>(limit);
            for name in names {
                query = query
                    .bind::<Text, _>(name.clone())
                    .bind::<Text, _>(format!("{name}{{%"));
            }
            query.load($conn)
        }};
    }
    match conn {
        DbConn::Pg(c) => run!(c, diesel::pg::Pg, '$'),
        DbConn::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, '?'),
    }
}

/// One stored reading.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName)]
pub struct Reading {
    #[diesel(sql_type = BigInt)]
    pub device_id: i64,
    #[diesel(sql_type = BigInt)]
    pub at_ms: i64,
    #[diesel(sql_type = Text)]
    pub metric: String,
    #[diesel(sql_type = Double)]
    pub value: f64,
}

/// The device's most recent poll: every series written at its latest `at_ms`.
pub fn latest(conn: &mut DbConn, device_id: i64) -> QueryResult<Vec<Reading>> {
    let newest: Option<i64> = samples::table
        .filter(samples::device_id.eq(device_id))
        .select(diesel::dsl::max(samples::at_ms))
        .first(conn)?;
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    samples::table
        .filter(samples::device_id.eq(device_id))
        .filter(samples::at_ms.eq(newest))
        .order(samples::metric)
        .select((
            samples::device_id,
            samples::at_ms,
            samples::metric,
            samples::value,
        ))
        .load(conn)
}

const LATEST_ALL_PG: &str = "SELECT s.device_id, s.at_ms, s.metric, s.value FROM samples s \
     JOIN (SELECT device_id, max(at_ms) AS at_ms FROM samples WHERE at_ms >= $1 \
           GROUP BY device_id) l ON s.device_id = l.device_id AND s.at_ms = l.at_ms \
     ORDER BY s.device_id, s.metric";

const LATEST_ALL_SQLITE: &str = "SELECT s.device_id, s.at_ms, s.metric, s.value FROM samples s \
     JOIN (SELECT device_id, max(at_ms) AS at_ms FROM samples WHERE at_ms >= ?1 \
           GROUP BY device_id) l ON s.device_id = l.device_id AND s.at_ms = l.at_ms \
     ORDER BY s.device_id, s.metric";

/// The latest poll of every device that wrote one since `since_ms`, ordered by device
/// and series.
pub fn latest_of_all(conn: &mut DbConn, since_ms: i64) -> QueryResult<Vec<Reading>> {
    match conn {
        DbConn::Pg(c) => diesel::sql_query(LATEST_ALL_PG)
            .bind::<BigInt, _>(since_ms)
            .load(c),
        DbConn::Sqlite(c) => diesel::sql_query(LATEST_ALL_SQLITE)
            .bind::<BigInt, _>(since_ms)
            .load(c),
    }
}

/// Deletes up to `limit` samples older than `before_ms`; returns how many went. Callers
/// repeat until it returns less than `limit`, so no one statement holds locks for long.
pub fn delete_older_than(conn: &mut DbConn, before_ms: i64, limit: i64) -> QueryResult<usize> {
    let oldest = samples::table
        .filter(samples::at_ms.lt(before_ms))
        .select(samples::id)
        .order(samples::id)
        .limit(limit);
    let ids: Vec<i64> = oldest.load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(samples::table.filter(samples::id.eq_any(&ids))).execute(conn)
}

/// Deletes every sample of a device (when the device is deleted).
pub fn delete_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<usize> {
    diesel::delete(samples::table.filter(samples::device_id.eq(device_id))).execute(conn)
}

/// How many samples are stored (for tests and benchmarks).
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    samples::table.count().get_result(conn)
}
