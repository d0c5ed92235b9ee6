//! Storing a batch of polls: names and series into the catalogue, each poll as one
//! encoded row in `polls`, and each device's newest poll into `latest_polls`, all
//! fenced by epoch (a monitor whose device moved on stores nothing).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use diesel::QueryResult;

use super::super::fenced::{self, FencedRow, Value};
use super::super::DbConn;
use super::catalogue::{printable, Catalogue};
use super::codec;
use crate::domain::SharedReadings;

/// Polls per `INSERT` statement: 5 parameters each.
const POLLS_PER_INSERT: usize = 1000;

/// The readings of one poll of one device, under its monitor's epoch: named ones, and
/// ones whose names the device's polls share. Names are stored with control characters
/// replaced; values that are not finite are left out; a name given twice keeps its
/// first value (`readings` before `shared`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewPoll<'a> {
    pub device_id: i64,
    pub epoch: i64,
    pub at_ms: i64,
    pub readings: Vec<(Cow<'a, str>, f64)>,
    pub shared: Option<&'a SharedReadings>,
}

impl NewPoll<'_> {
    /// Its readings with a finite value: what storing it would store (a name given
    /// twice counts twice).
    pub fn finite_readings(&self) -> usize {
        let named = self.readings.iter().filter(|(_, v)| v.is_finite()).count();
        named + self.shared.map_or(0, |shared| shared.iter().count())
    }
}

/// What a batch came to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stored {
    pub polls: usize,
    /// Readings in the polls stored.
    pub samples: usize,
    /// Readings (finite ones) of the polls left out: their device has another epoch now,
    /// or no assignment.
    pub refused: usize,
    /// `(device, epoch)` of polls left out because their device has a later epoch now.
    pub stale: Vec<(i64, i64)>,
}

struct PollRow {
    device_id: i64,
    epoch: i64,
    at_ms: i64,
    samples: i64,
    data: Vec<u8>,
}

impl FencedRow for PollRow {
    const TABLE: &'static str = "polls";
    const COLUMNS: &'static [&'static str] = &["device_id", "epoch", "at_ms", "samples", "data"];

    fn values(&self) -> Vec<Value<'_>> {
        vec![
            Value::Int(&self.device_id),
            Value::Int(&self.epoch),
            Value::Int(&self.at_ms),
            Value::Int(&self.samples),
            Value::Bytes(&self.data),
        ]
    }
}

struct LatestRow<'a>(&'a PollRow);

impl FencedRow for LatestRow<'_> {
    const TABLE: &'static str = "latest_polls";
    const COLUMNS: &'static [&'static str] = &["device_id", "epoch", "at_ms", "data"];
    const AFTER: &'static str = " WHERE true ON CONFLICT (device_id) DO UPDATE SET \
         epoch = excluded.epoch, at_ms = excluded.at_ms, data = excluded.data \
         WHERE excluded.at_ms >= latest_polls.at_ms";

    fn values(&self) -> Vec<Value<'_>> {
        vec![
            Value::Int(&self.0.device_id),
            Value::Int(&self.0.epoch),
            Value::Int(&self.0.at_ms),
            Value::Bytes(&self.0.data),
        ]
    }
}

/// `named` (sorted by id, each id once) with the finite readings of `shared`, sorted by
/// id, each id once (a named one first); and the ids of `shared` whose series rows are
/// not known to exist.
fn with_shared(
    catalogue: &Catalogue,
    device: i64,
    named: Vec<(i64, f64)>,
    shared: &SharedReadings,
) -> (Vec<(i64, f64)>, Option<Vec<i64>>) {
    let Some(shape) = catalogue.shape(device, &shared.names) else {
        // Another list of the same device came later in the batch and took its place:
        // this poll's names are looked up one by one (`store` has learnt them).
        let mut readings = named;
        let mut missing = 0;
        readings.extend(shared.iter().filter_map(|(name, value)| {
            let id = catalogue.id(&printable(name));
            missing += usize::from(id.is_none());
            Some((id?, value))
        }));
        if missing > 0 {
            tracing::warn!(
                device.id = device,
                missing,
                "readings left out: their series names have no id"
            );
        }
        readings.sort_by_key(|(id, _)| *id);
        readings.dedup_by_key(|(id, _)| *id);
        let ids = readings.iter().map(|(id, _)| *id).collect();
        return (readings, Some(ids));
    };
    let mut readings = Vec::with_capacity(named.len() + shape.order.len());
    let mut named = named.into_iter().peekable();
    for &(at, id) in &shape.order {
        let value = shared.values.get(at as usize).copied().unwrap_or(f64::NAN);
        while let Some(&(named_id, named_value)) = named.peek() {
            if named_id > id {
                break;
            }
            readings.push((named_id, named_value));
            named.next();
        }
        if value.is_finite() && readings.last().is_none_or(|(last, _)| *last != id) {
            readings.push((id, value));
        }
    }
    readings.extend(named);
    let learn = (!shape.series_known).then(|| shape.order.iter().map(|(_, id)| *id).collect());
    (readings, learn)
}

/// Stores the polls taken under their device's current epoch and leaves out the rest
/// (call inside a transaction to make it one write).
pub fn write(
    conn: &mut DbConn,
    catalogue: &mut Catalogue,
    polls: &[NewPoll<'_>],
) -> QueryResult<Stored> {
    let mut devices: Vec<i64> = polls.iter().map(|p| p.device_id).collect();
    devices.sort_unstable();
    devices.dedup();
    let current: HashMap<i64, i64> = super::super::assignments::of_devices(conn, &devices)?
        .into_iter()
        .map(|a| (a.device_id, a.epoch))
        .collect();
    let mut stale = Vec::new();
    let mut refused = 0;
    let kept: Vec<&NewPoll> = polls
        .iter()
        .filter(|p| {
            let kept = match current.get(&p.device_id) {
                Some(&epoch) if epoch == p.epoch => true,
                Some(&epoch) if epoch > p.epoch => {
                    stale.push((p.device_id, p.epoch));
                    false
                }
                _ => false,
            };
            if !kept {
                refused += p.finite_readings();
            }
            kept
        })
        .collect();
    stale.sort_unstable();
    stale.dedup();
    let mut stored = store(conn, catalogue, &kept, true)?;
    stored.stale = stale;
    stored.refused = refused;
    Ok(stored)
}

/// Stores the polls whatever their epoch: polls accepted once already, under the old
/// layout (`upgrade`).
pub(super) fn write_accepted(
    conn: &mut DbConn,
    catalogue: &mut Catalogue,
    polls: &[NewPoll<'_>],
) -> QueryResult<Stored> {
    let all: Vec<&NewPoll> = polls.iter().collect();
    store(conn, catalogue, &all, false)
}

fn store(
    conn: &mut DbConn,
    catalogue: &mut Catalogue,
    kept: &[&NewPoll],
    fenced: bool,
) -> QueryResult<Stored> {
    // Each named reading's name is looked up once, and each shared list once for as
    // long as its device keeps it; the names this catalogue has not met are learnt
    // together and then added.
    let mut found: Vec<Vec<(i64, f64)>> = Vec::with_capacity(kept.len());
    let mut unknown: Vec<(usize, Cow<str>, f64)> = Vec::new();
    // Every shared list of the batch, once per device, in the batch's order.
    let mut lists: Vec<(i64, &Arc<[Box<str>]>)> = Vec::new();
    for (n, poll) in kept.iter().enumerate() {
        let mut readings = Vec::with_capacity(poll.readings.len());
        for (name, value) in &poll.readings {
            if !value.is_finite() {
                continue;
            }
            let name = printable(name);
            match catalogue.id(&name) {
                Some(id) => readings.push((id, *value)),
                None => unknown.push((n, name, *value)),
            }
        }
        found.push(readings);
        if let Some(shared) = poll.shared {
            let device = poll.device_id;
            let seen = |(d, names): &(i64, &Arc<[Box<str>]>)| {
                *d == device && Arc::ptr_eq(names, &shared.names)
            };
            if !lists.iter().any(seen) {
                lists.push((device, &shared.names));
            }
        }
    }
    // A list not remembered yet is learnt and remembered (the last of a device's
    // lists is the one kept); a device with several lists in the batch has some read
    // name by name, so their names must be known too, whatever the names cache forgot.
    let mut new_shapes: Vec<(i64, &Arc<[Box<str>]>)> = Vec::new();
    let mut shape_names: Vec<Cow<str>> = Vec::new();
    for &(device, names) in &lists {
        let known = catalogue.shape(device, names).is_some();
        let several = lists.iter().filter(|(d, _)| *d == device).count() > 1;
        if !known {
            new_shapes.push((device, names));
        }
        if !known || several {
            shape_names.extend(names.iter().map(|name| printable(name)));
        }
    }
    if !unknown.is_empty() || !shape_names.is_empty() {
        let names: Vec<&str> = unknown
            .iter()
            .map(|(_, name, _)| name.as_ref())
            .chain(shape_names.iter().map(AsRef::as_ref))
            .collect();
        catalogue.learn_names(conn, &names)?;
        for (n, name, value) in unknown {
            if let (Some(id), Some(readings)) = (catalogue.id(&name), found.get_mut(n)) {
                readings.push((id, value));
            }
        }
    }
    for (device, names) in new_shapes {
        catalogue.remember_shape(device, names);
    }
    let mut series = Vec::new();
    let mut shapes_learnt = Vec::new();
    let rows: Vec<PollRow> = kept
        .iter()
        .zip(found)
        .map(|(poll, mut readings)| {
            readings.sort_by_key(|(id, _)| *id);
            readings.dedup_by_key(|(id, _)| *id);
            series.extend(readings.iter().map(|(id, _)| (poll.device_id, *id)));
            if let Some(shared) = poll.shared {
                let device = poll.device_id;
                let (merged, learn) = with_shared(catalogue, device, readings, shared);
                readings = merged;
                if let Some(learn) = learn {
                    series.extend(learn.into_iter().map(|id| (device, id)));
                    shapes_learnt.push(device);
                }
            }
            PollRow {
                device_id: poll.device_id,
                epoch: poll.epoch,
                at_ms: poll.at_ms,
                samples: readings.len() as i64,
                data: codec::encode(&readings),
            }
        })
        .collect();
    catalogue.learn_series(conn, &series)?;
    for device in shapes_learnt {
        catalogue.shape_series_known(device);
    }
    let stored = fenced::insert_with(conn, &rows, POLLS_PER_INSERT, fenced)?;
    // One upsert per device: PostgreSQL refuses a statement that updates a row twice.
    let mut newest: HashMap<i64, &PollRow> = HashMap::new();
    for row in &rows {
        let entry = newest.entry(row.device_id).or_insert(row);
        if row.at_ms >= entry.at_ms {
            *entry = row;
        }
    }
    let mut latest: Vec<LatestRow> = newest.into_values().map(LatestRow).collect();
    latest.sort_by_key(|l| l.0.device_id);
    fenced::insert_with(conn, &latest, POLLS_PER_INSERT, fenced)?;
    Ok(Stored {
        polls: stored,
        // (A device moved on between the epoch check and the insert, on PostgreSQL,
        // leaves its poll out too; the count of samples then includes it.)
        samples: rows.iter().map(|r| r.samples as usize).sum(),
        refused: 0,
        stale: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{scratch::ScratchDb, Db};
    use crate::domain::SharedReadings;

    fn list(names: &[&str]) -> Arc<[Box<str>]> {
        names.iter().map(|n| Box::<str>::from(*n)).collect()
    }

    fn poll(at_ms: i64, shared: &SharedReadings) -> NewPoll<'_> {
        NewPoll {
            device_id: 7,
            epoch: 1,
            at_ms,
            readings: vec![("up".into(), 1.0)],
            shared: Some(shared),
        }
    }

    /// The series of the poll stored at `at_ms`, by name.
    fn stored(conn: &mut DbConn, at_ms: i64) -> Vec<String> {
        use crate::db::schema::polls;
        use diesel::prelude::*;
        let data: Vec<u8> = polls::table
            .filter(polls::at_ms.eq(at_ms))
            .select(polls::data)
            .first(conn)
            .unwrap();
        let ids: Vec<i64> = codec::decode(&data)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        let mut names: Vec<String> = super::super::catalogue::names_of(conn, &ids)
            .unwrap()
            .into_values()
            .collect();
        names.sort();
        names
    }

    #[actix_rt::test]
    async fn a_list_a_later_one_replaced_in_its_batch_keeps_every_reading() {
        let scratch = ScratchDb::sqlite();
        let db = Db::open(scratch.url().clone(), 1).await.unwrap();
        let (before, after) = (list(&["a", "b", "z"]), list(&["a", "b", "c"]));
        let (first, second) = (
            SharedReadings {
                names: Arc::clone(&before),
                values: vec![1.0, 2.0, 26.0],
            },
            SharedReadings {
                names: Arc::clone(&after),
                values: vec![1.0, 2.0, 3.0],
            },
        );
        let names = db
            .run(move |conn| {
                let mut catalogue = Catalogue::default();
                write_accepted(conn, &mut catalogue, &[poll(1, &first)])?;
                // The names cache filled up and started over; the list is remembered.
                catalogue.forget_names();
                // The device's series change between two polls of one batch.
                let batch = [poll(2, &first), poll(3, &second)];
                write_accepted(conn, &mut catalogue, &batch)?;
                Ok((stored(conn, 2), stored(conn, 3)))
            })
            .await
            .unwrap();
        assert_eq!(names.0, ["a", "b", "up", "z"]);
        assert_eq!(names.1, ["a", "b", "c", "up"]);
    }
}
