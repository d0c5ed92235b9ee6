//! Storing a batch of polls: names and series into the catalogue, each poll as one
//! encoded row in `polls`, and each device's newest poll into `latest_polls`, all
//! fenced by epoch (a monitor whose device moved on stores nothing).

use std::borrow::Cow;
use std::collections::HashMap;

use diesel::QueryResult;

use super::super::fenced::{self, FencedRow, Value};
use super::super::DbConn;
use super::catalogue::Catalogue;
use super::codec;

/// Polls per `INSERT` statement: 5 parameters each.
const POLLS_PER_INSERT: usize = 1000;

/// The readings of one poll of one device, under its monitor's epoch. Values should be
/// finite; a name given twice keeps its first value.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPoll<'a> {
    pub device_id: i64,
    pub epoch: i64,
    pub at_ms: i64,
    pub readings: Vec<(Cow<'a, str>, f64)>,
}

/// What a batch came to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stored {
    pub polls: usize,
    /// Readings in the polls stored.
    pub samples: usize,
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
    let kept: Vec<&NewPoll> = polls
        .iter()
        .filter(|p| match current.get(&p.device_id) {
            Some(&epoch) if epoch == p.epoch => true,
            Some(&epoch) if epoch > p.epoch => {
                stale.push((p.device_id, p.epoch));
                false
            }
            _ => false,
        })
        .collect();
    stale.sort_unstable();
    stale.dedup();
    let mut stored = store(conn, catalogue, &kept, true)?;
    stored.stale = stale;
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
    // Each name is looked up once; the ones this catalogue has not met are learnt
    // together and then added.
    let mut found: Vec<Vec<(i64, f64)>> = Vec::with_capacity(kept.len());
    let mut unknown: Vec<(usize, &str, f64)> = Vec::new();
    for (n, poll) in kept.iter().enumerate() {
        let mut readings = Vec::with_capacity(poll.readings.len());
        for (name, value) in &poll.readings {
            match catalogue.id(name) {
                Some(id) => readings.push((id, *value)),
                None => unknown.push((n, name.as_ref(), *value)),
            }
        }
        found.push(readings);
    }
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|(_, name, _)| *name).collect();
        catalogue.learn_names(conn, &names)?;
        for (n, name, value) in unknown {
            if let (Some(id), Some(readings)) = (catalogue.id(name), found.get_mut(n)) {
                readings.push((id, value));
            }
        }
    }
    let mut series = Vec::new();
    let rows: Vec<PollRow> = kept
        .iter()
        .zip(found)
        .map(|(poll, mut readings)| {
            readings.sort_by_key(|(id, _)| *id);
            readings.dedup_by_key(|(id, _)| *id);
            series.extend(readings.iter().map(|(id, _)| (poll.device_id, *id)));
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
        stale: Vec::new(),
    })
}
