//! The series catalogue: every series name (metric name and labels) once for the whole
//! fleet in `series_names`, every series of a device once in `series`, each with a
//! numeric id. [`Catalogue`] is what one writer remembers of it, so a batch asks the
//! database only about names and series it has not met; it is a cache, and forgetting
//! it (when it grows past its bounds) costs a few lookups, never a wrong id. What it
//! learns inside a transaction is only true once that commits: a caller whose
//! transaction fails calls [`Catalogue::forget`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use foldhash::fast::RandomState;

use super::super::schema::{series, series_names};
use super::super::{values_list, DbConn};

/// Names remembered at most; a fleet whose label values never repeat would otherwise
/// grow the writer without end.
const MAX_NAMES: usize = 200_000;
/// Series (device, name) remembered at most.
const MAX_SERIES: usize = 5_000_000;
/// Names in the shared lists remembered, at most (a node_exporter's list is about 500
/// names, 40–50 KB): past it they are all forgotten, and learnt again at their
/// device's next poll.
const MAX_SHAPE_NAMES: usize = 2_000_000;
/// Rows per `INSERT` of names or series.
const ROWS_PER_INSERT: usize = 1000;

/// Looked up for every reading a writer stores: a fast hash (names come from devices,
/// but a collision costs time, not correctness, and the cache is bounded).
#[derive(Debug, Default)]
pub struct Catalogue {
    names: HashMap<Box<str>, i64, RandomState>,
    /// Per device, the name ids known to have their `series` row, sorted.
    series: HashMap<i64, Vec<i64>, RandomState>,
    series_count: usize,
    /// Per device, the last shared name list it stored, with its ids: the readings of
    /// the next poll with the same list need no lookup at all.
    shapes: HashMap<i64, Shape, RandomState>,
    /// Names in `shapes`' lists.
    shape_names: usize,
}

/// A shared name list of a device (see `domain::SharedReadings`) with its ids.
#[derive(Debug)]
pub struct Shape {
    /// Held, so no other list can take its address while it is remembered.
    names: Arc<[Box<str>]>,
    /// `(index in names, name id)`, sorted by id, each id once (its first name: two
    /// names may be the same once made printable).
    pub order: Vec<(u32, i64)>,
    /// Every id has its `series` row for the device.
    pub series_known: bool,
}

impl Catalogue {
    /// What this catalogue knows of `names` as `device`'s shared list.
    pub fn shape(&self, device: i64, names: &Arc<[Box<str>]>) -> Option<&Shape> {
        self.shapes
            .get(&device)
            .filter(|shape| Arc::ptr_eq(&shape.names, names))
    }

    /// Remembers `names` as `device`'s shared list, with the ids of the names this
    /// catalogue has met (call [`Catalogue::learn_names`] with them first).
    pub fn remember_shape(&mut self, device: i64, names: &Arc<[Box<str>]>) {
        let mut order: Vec<(u32, i64)> = names
            .iter()
            .enumerate()
            .filter_map(|(at, name)| Some((at as u32, self.id(&printable(name))?)))
            .collect();
        // Stable: the first name of an id comes first and is the one kept.
        order.sort_by_key(|(_, id)| *id);
        order.dedup_by_key(|(_, id)| *id);
        if self.shape_names + names.len() > MAX_SHAPE_NAMES {
            self.shapes.clear();
            self.shape_names = 0;
        }
        self.shape_names += names.len();
        let replaced = self.shapes.insert(
            device,
            Shape {
                names: Arc::clone(names),
                order,
                series_known: false,
            },
        );
        if let Some(replaced) = replaced {
            self.shape_names -= replaced.names.len();
        }
    }

    /// Notes that every series of `device`'s remembered list has its row.
    pub fn shape_series_known(&mut self, device: i64) {
        if let Some(shape) = self.shapes.get_mut(&device) {
            shape.series_known = true;
        }
    }

    /// Forgets the names, as a full names cache does, keeping the lists remembered.
    #[cfg(test)]
    pub fn forget_names(&mut self) {
        self.names.clear();
    }

    /// The id of `name`, if this catalogue has met it.
    pub fn id(&self, name: &str) -> Option<i64> {
        self.names.get(name).copied()
    }

    /// Makes sure every one of `names` has an id, in the database and here.
    pub fn learn_names(&mut self, conn: &mut DbConn, names: &[&str]) -> QueryResult<()> {
        let mut missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.names.contains_key(*n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.names.len() + missing.len() > MAX_NAMES {
            // Start over with what this batch needs.
            self.names.clear();
            missing = names.to_vec();
        }
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(ROWS_PER_INSERT) {
            insert_names(conn, chunk)?;
            let found: Vec<(i64, String)> = series_names::table
                .filter(series_names::name.eq_any(chunk))
                .select((series_names::id, series_names::name))
                .load(conn)?;
            for (id, name) in found {
                self.names.insert(name.into_boxed_str(), id);
            }
        }
        Ok(())
    }

    /// Forgets everything: after a transaction that learnt names or series was rolled
    /// back, the ids it learnt are gone from the database (and may be given again to
    /// other names), so none of it may be used.
    pub fn forget(&mut self) {
        *self = Catalogue::default();
    }

    /// Makes sure each `(device, name id)` has its `series` row.
    pub fn learn_series(&mut self, conn: &mut DbConn, wanted: &[(i64, i64)]) -> QueryResult<()> {
        let mut missing: Vec<(i64, i64)> = wanted
            .iter()
            .copied()
            .filter(|(device, name)| {
                self.series
                    .get(device)
                    .is_none_or(|known| known.binary_search(name).is_err())
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // In one order, so two writers inserting the same rows wait rather than deadlock.
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(ROWS_PER_INSERT) {
            insert_series(conn, chunk)?;
        }
        if self.series_count + missing.len() > MAX_SERIES {
            self.series.clear();
            self.series_count = 0;
        }
        for (device, name) in missing {
            let known = self.series.entry(device).or_default();
            if let Err(at) = known.binary_search(&name) {
                known.insert(at, name);
                self.series_count += 1;
            }
        }
        Ok(())
    }
}

/// `text` with every control character (which PostgreSQL refuses in text) replaced
/// by `?`: what a name a device reported is stored as.
pub fn printable(text: &str) -> Cow<'_, str> {
    // Printable ASCII, as nearly every name is, is seen byte by byte.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(text);
    }
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// Inserts the names not stored yet.
fn insert_names(conn: &mut DbConn, names: &[&str]) -> QueryResult<usize> {
    let sql = |mark: char| {
        format!(
            "INSERT INTO series_names (name) VALUES {} ON CONFLICT (name) DO NOTHING",
            values_list(mark, names.len(), 1)
        )
    };
    macro_rules! run {
        ($conn:expr, $backend:ty, $mark:expr) => {{
            let mut query = diesel::sql_query(sql($mark)).into_boxed::<$backend>();
            for name in names {
                query = query.bind::<Text, _>(*name);
            }
            query.execute($conn)
        }};
    }
    match conn {
        DbConn::Pg(c) => run!(c, diesel::pg::Pg, '$'),
        DbConn::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, '?'),
    }
}

/// Inserts the `(device, name id)` series not stored yet.
fn insert_series(conn: &mut DbConn, wanted: &[(i64, i64)]) -> QueryResult<usize> {
    let sql = |mark: char| {
        format!(
            "INSERT INTO series (device_id, name_id) VALUES {} \
             ON CONFLICT (device_id, name_id) DO NOTHING",
            values_list(mark, wanted.len(), 2)
        )
    };
    macro_rules! run {
        ($conn:expr, $backend:ty, $mark:expr) => {{
            let mut query = diesel::sql_query(sql($mark)).into_boxed::<$backend>();
            for (device, name) in wanted {
                query = query.bind::<BigInt, _>(*device).bind::<BigInt, _>(*name);
            }
            query.execute($conn)
        }};
    }
    match conn {
        DbConn::Pg(c) => run!(c, diesel::pg::Pg, '$'),
        DbConn::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, '?'),
    }
}

/// The names of `ids`, for reading polls back.
pub fn names_of(conn: &mut DbConn, ids: &[i64]) -> QueryResult<HashMap<i64, String>> {
    let rows = super::super::in_chunks(ids, |chunk| {
        series_names::table
            .filter(series_names::id.eq_any(chunk))
            .select((series_names::id, series_names::name))
            .load::<(i64, String)>(conn)
    })?;
    Ok(rows.into_iter().collect())
}

/// How many series the catalogue holds.
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    series::table.count().get_result(conn)
}

/// Deletes `device`'s series.
pub fn delete_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<usize> {
    diesel::delete(series::table.filter(series::device_id.eq(device_id))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_without_control_characters() {
        assert_eq!(printable("fine"), "fine");
        assert!(matches!(printable("fine{a=\"b\"}"), Cow::Borrowed(_)));
        assert!(matches!(
            printable("température{sonde=\"é\"}"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("rx{interface=\"eth\u{0}\n\"}"),
            "rx{interface=\"eth??\"}"
        );
        assert_eq!(printable("a\u{85}b"), "a?b");
    }
}
