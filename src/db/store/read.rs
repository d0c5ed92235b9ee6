//! Reading polls back: a device's history downsampled into buckets, its latest poll,
//! and the latest poll of every device.

use std::collections::HashMap;

use diesel::prelude::*;

use super::super::schema::{devices, latest_polls, polls};
use super::super::DbConn;
use super::catalogue::names_of;
use super::codec::{self, Aggregate};
use super::rollup::{self, Tier};
use super::seal;

/// Polls read per query.
const HISTORY_PAGE: i64 = 5_000;

/// One bucket of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub metric: String,
    /// Index of the bucket from the start of the range.
    pub bucket: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub count: i64,
}

/// One stored reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device_id: i64,
    pub at_ms: i64,
    pub metric: String,
    pub value: f64,
}

/// Whether `metric` is one `names` asks for: the exact series, or any series of a bare
/// metric name. No names: every series.
fn wanted(names: &[String], metric: &str) -> bool {
    names.is_empty()
        || names.iter().any(|n| {
            metric == n
                || metric
                    .strip_prefix(n.as_str())
                    .is_some_and(|rest| rest.starts_with('{'))
        })
}

/// Every series' buckets so far, in bucket order. Rows come in time order, so a
/// reading goes in its series' last bucket or a new one after it; and a device's rows
/// mostly name the same series as the row before, so the series are found by
/// position then, not looked up.
#[derive(Default)]
struct Sums {
    slots: HashMap<i64, usize, foldhash::fast::RandomState>,
    series: Vec<(i64, Vec<(i64, Aggregate)>)>,
    /// The name ids of the last row and their series' places.
    row_ids: Vec<i64>,
    row_slots: Vec<usize>,
}

impl Sums {
    fn add_row<T>(&mut self, bucket: i64, row: &[(i64, T)], aggregate: impl Fn(&T) -> Aggregate) {
        let same = self.row_ids.len() == row.len()
            && self.row_ids.iter().zip(row).all(|(a, (b, _))| a == b);
        if !same {
            self.row_ids.clear();
            self.row_slots.clear();
            for (name, _) in row {
                let Sums { slots, series, .. } = self;
                let slot = *slots.entry(*name).or_insert_with(|| {
                    series.push((*name, Vec::new()));
                    series.len() - 1
                });
                self.row_ids.push(*name);
                self.row_slots.push(slot);
            }
        }
        for (slot, (_, value)) in self.row_slots.iter().zip(row) {
            let a = aggregate(value);
            let buckets = &mut self.series[*slot].1;
            match buckets.last_mut() {
                Some((last, sum)) if *last == bucket => sum.merge(&a),
                Some((last, _)) if *last > bucket => {
                    match buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
                        Ok(i) => buckets[i].1.merge(&a),
                        Err(i) => buckets.insert(i, (bucket, a)),
                    }
                }
                _ => buckets.push((bucket, a)),
            }
        }
    }
}

/// The device's readings in `[from_ms, to_ms)`, grouped per series into buckets of
/// `width_ms` counted from `from_ms`, ordered by series and bucket, at most `limit`
/// buckets. With `names`, only series of those names (exact series, or every series
/// of a bare metric name).
///
/// Buckets of a minute or more are read from the rollups (`Tier::for_width`): the
/// whole periods of the coarsest tier that fits, finer tiers around them and the polls
/// no tier holds (`rollup::cover`), so every reading counts once; a rollup period
/// counts in the bucket where it starts. Narrower buckets read the polls.
pub fn history(
    conn: &mut DbConn,
    device_id: i64,
    range: (i64, i64, i64),
    names: &[String],
    limit: i64,
) -> QueryResult<Vec<Bucket>> {
    let (from_ms, to_ms, width_ms) = range;
    let width_ms = width_ms.max(1);
    let bucket_of = |at_ms: i64| ((at_ms - from_ms) / width_ms).max(0);
    let mut sums = Sums::default();
    let tier = Tier::for_width(width_ms);
    let mut made = [None, None];
    if tier.is_some() {
        for (slot, tier) in made.iter_mut().zip(Tier::COARSEST_FIRST) {
            *slot = rollup::mark(conn, tier)?;
        }
    }
    let made = |tier: Tier| made[usize::from(tier == Tier::Minute)];
    for (tier, from, to) in rollup::cover(from_ms, to_ms, tier, &made) {
        match tier {
            Some(tier) => {
                for (at_ms, aggregates) in rollup::rows_of(conn, tier, device_id, from, to)? {
                    sums.add_row(bucket_of(at_ms), &aggregates, |a| *a);
                }
            }
            None => add_polls(conn, device_id, (from, to), &bucket_of, &mut sums)?,
        }
    }
    let ids: Vec<i64> = sums.series.iter().map(|(id, _)| *id).collect();
    let mut names_by_id = names_of(conn, &ids)?;
    let mut named: Vec<(String, Vec<(i64, Aggregate)>)> = sums
        .series
        .into_iter()
        .filter_map(|(id, buckets)| Some((names_by_id.remove(&id)?, buckets)))
        .filter(|(metric, _)| wanted(names, metric))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut buckets = Vec::new();
    for (metric, by_bucket) in named {
        for (bucket, sum) in by_bucket {
            if buckets.len() >= limit {
                return Ok(buckets);
            }
            buckets.push(Bucket {
                metric: metric.clone(),
                bucket,
                min: sum.min,
                avg: sum.sum / sum.count as f64,
                max: sum.max,
                count: sum.count,
            });
        }
    }
    Ok(buckets)
}

/// Calls `each(device, at_ms, data)` for every poll in `[from_ms, to_ms)` (of `device`
/// only, when given) in time order, reading a page at a time: a week of a
/// node_exporter body a second would not fit in memory at once.
pub(super) fn each_poll(
    conn: &mut DbConn,
    device: Option<i64>,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(i64, i64, &[u8]) -> QueryResult<()>,
) -> QueryResult<()> {
    if from_ms >= to_ms {
        return Ok(());
    }
    let mut after: Option<(i64, i64)> = None;
    loop {
        let mut page = polls::table
            .filter(polls::at_ms.lt(to_ms))
            .order((polls::at_ms, polls::id))
            .select((polls::id, polls::device_id, polls::at_ms, polls::data))
            .limit(HISTORY_PAGE)
            .into_boxed();
        if let Some(device) = device {
            page = page.filter(polls::device_id.eq(device));
        }
        // The next page starts after the last poll read, `(at_ms, id)`; its time is
        // also given alone, as the lower bound of the index range scanned, so a page
        // does not scan again the polls of the pages before it.
        page = match after {
            None => page.filter(polls::at_ms.ge(from_ms)),
            Some((at_ms, id)) => page
                .filter(polls::at_ms.ge(at_ms))
                .filter(polls::at_ms.gt(at_ms).or(polls::id.gt(id))),
        };
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = page.load(conn)?;
        let full = rows.len() as i64 == HISTORY_PAGE;
        for (id, device_id, at_ms, data) in rows {
            after = Some((at_ms, id));
            each(device_id, at_ms, &data)?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Adds the device's polls in `[from_ms, to_ms)` to `sums`: those sealed in blocks,
/// then those of the hours still open.
fn add_polls(
    conn: &mut DbConn,
    device_id: i64,
    range: (i64, i64),
    bucket_of: &impl Fn(i64) -> i64,
    sums: &mut Sums,
) -> QueryResult<()> {
    let (from_ms, to_ms) = range;
    for columns in seal::blocks_of(conn, device_id, range)? {
        columns.each_poll(|at_ms, readings| {
            if (from_ms..to_ms).contains(&at_ms) {
                sums.add_row(bucket_of(at_ms), readings, |value| Aggregate::of(*value));
            }
            Ok::<_, diesel::result::Error>(())
        })?;
    }
    each_poll(conn, Some(device_id), range, |_, at_ms, data| {
        let bucket = bucket_of(at_ms);
        let readings = codec::decode(data).map_err(codec::corrupt)?;
        sums.add_row(bucket, &readings, |value| Aggregate::of(*value));
        Ok(())
    })
}

/// Calls `each(at_ms, name, value)` for every reading of `device` in `[from_ms, to_ms)`
/// whose series `wanted` keeps (given its name), from blocks and polls alike; the
/// polls come in time order, blocks before polls.
pub fn each_reading(
    conn: &mut DbConn,
    device_id: i64,
    (from_ms, to_ms): (i64, i64),
    wanted: impl Fn(&str) -> bool,
    mut each: impl FnMut(i64, &str, f64),
) -> QueryResult<()> {
    let mut rows: Vec<(i64, Vec<(i64, f64)>)> = Vec::new();
    for columns in seal::blocks_of(conn, device_id, (from_ms, to_ms))? {
        columns.each_poll(|at_ms, readings| {
            if (from_ms..to_ms).contains(&at_ms) {
                rows.push((at_ms, readings.to_vec()));
            }
            Ok::<_, diesel::result::Error>(())
        })?;
    }
    each_poll(conn, Some(device_id), (from_ms, to_ms), |_, at_ms, data| {
        rows.push((at_ms, codec::decode(data).map_err(codec::corrupt)?));
        Ok(())
    })?;
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|(_, readings)| readings.iter().map(|(id, _)| *id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names: HashMap<i64, String> = names_of(conn, &ids)?
        .into_iter()
        .filter(|(_, name)| wanted(name))
        .collect();
    for (at_ms, readings) in &rows {
        for (id, value) in readings {
            if let Some(name) = names.get(id) {
                each(*at_ms, name, *value);
            }
        }
    }
    Ok(())
}

/// The readings of stored polls `(device, at_ms, data)`, named, ordered by device and
/// series.
fn readings_of(conn: &mut DbConn, polls: Vec<(i64, i64, Vec<u8>)>) -> QueryResult<Vec<Reading>> {
    let mut decoded = Vec::with_capacity(polls.len());
    let mut ids = Vec::new();
    for (device_id, at_ms, data) in polls {
        let readings = codec::decode(&data).map_err(codec::corrupt)?;
        ids.extend(readings.iter().map(|(id, _)| *id));
        decoded.push((device_id, at_ms, readings));
    }
    ids.sort_unstable();
    ids.dedup();
    let names = names_of(conn, &ids)?;
    let mut out = Vec::new();
    for (device_id, at_ms, readings) in decoded {
        let first = out.len();
        out.extend(readings.into_iter().filter_map(|(id, value)| {
            Some(Reading {
                device_id,
                at_ms,
                metric: names.get(&id)?.clone(),
                value,
            })
        }));
        out[first..].sort_by(|a, b| a.metric.cmp(&b.metric));
    }
    Ok(out)
}

/// The device's most recent poll, ordered by series.
pub fn latest(conn: &mut DbConn, device_id: i64) -> QueryResult<Vec<Reading>> {
    let newest: Vec<(i64, i64, Vec<u8>)> = latest_polls::table
        .filter(latest_polls::device_id.eq(device_id))
        .select((
            latest_polls::device_id,
            latest_polls::at_ms,
            latest_polls::data,
        ))
        .load(conn)?;
    readings_of(conn, newest)
}

/// The latest poll of every device (of `company` only, when given) polled since
/// `since_ms`, ordered by device and series.
pub fn latest_of_all(
    conn: &mut DbConn,
    since_ms: i64,
    company: Option<i64>,
) -> QueryResult<Vec<Reading>> {
    let mut query = latest_polls::table
        .filter(latest_polls::at_ms.ge(since_ms))
        .order(latest_polls::device_id)
        .select((
            latest_polls::device_id,
            latest_polls::at_ms,
            latest_polls::data,
        ))
        .into_boxed();
    if let Some(company) = company {
        query = query.filter(
            latest_polls::device_id.eq_any(
                devices::table
                    .filter(devices::company_id.eq(company))
                    .select(devices::id),
            ),
        );
    }
    let newest = query.load(conn)?;
    readings_of(conn, newest)
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn a_name_asks_for_its_exact_series_or_every_series_of_a_bare_name() {
        let names = vec!["cpu".to_string(), "disk{mount=\"/\"}".to_string()];
        assert!(wanted(&names, "cpu"));
        assert!(wanted(&names, "cpu{core=\"0\"}"));
        assert!(!wanted(&names, "cpu_seconds"));
        assert!(wanted(&names, "disk{mount=\"/\"}"));
        assert!(!wanted(&names, "disk{mount=\"/boot\"}"));
        assert!(wanted(&[], "anything"));
    }
}
