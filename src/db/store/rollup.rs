//! Rollups: for every device, per minute and per hour, the count, min, max, sum and
//! last reading of each series (`codec::Aggregate`), one row per device and period.
//! A minute is rolled up from its polls once it has been closed for [`GRACE_MS`] (a
//! poll written later than that stays in the raw tier only); an hour from its sixty
//! minutes once the minutes are made. `rollup_marks` keeps how far each tier is made,
//! so a pass takes up where the last one stopped, on whichever node runs it, and
//! making a period twice writes the same row.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::upsert::excluded;

use super::super::schema::{polls, rollup_marks, rollups};
use super::super::{write_transaction, DbConn};
use super::codec::{self, Aggregate};

/// A minute is rolled up once it has been over this long: the writer's batches of
/// its polls have landed by then.
pub const GRACE_MS: i64 = 120_000;
/// Periods of one tier made per pass at most, so a pass over a long backlog (a
/// database just upgraded) ends and logs its progress.
const PERIODS_PER_PASS: usize = 120;
/// Rows per insert statement.
const ROWS_PER_INSERT: usize = 500;

/// A rollup tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Minute,
    Hour,
}

impl Tier {
    /// Coarsest first.
    pub const COARSEST_FIRST: [Tier; 2] = [Tier::Hour, Tier::Minute];

    pub fn step_ms(self) -> i64 {
        match self {
            Tier::Minute => 60_000,
            Tier::Hour => 3_600_000,
        }
    }

    pub fn code(self) -> i16 {
        match self {
            Tier::Minute => 1,
            Tier::Hour => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Minute => "minute",
            Tier::Hour => "hour",
        }
    }

    /// The tier a history with buckets of `width_ms` reads: the coarsest whose period
    /// fits in a bucket, none (the raw polls) for buckets under a minute.
    pub fn for_width(width_ms: i64) -> Option<Tier> {
        Tier::COARSEST_FIRST
            .into_iter()
            .find(|tier| width_ms >= tier.step_ms())
    }

    /// The next finer tier; none below minutes (the polls).
    pub fn finer(self) -> Option<Tier> {
        match self {
            Tier::Hour => Some(Tier::Minute),
            Tier::Minute => None,
        }
    }
}

/// One stretch of a history and where it is read from: a tier's rows, or the polls
/// (`None`).
pub type Segment = (Option<Tier>, i64, i64);

/// Splits `[from_ms, to_ms)` into stretches each read from one place, so that every
/// reading counts once: the whole periods of `tier` it holds up to where `tier` is
/// made (`made(tier)`), the parts before and after from the next finer tier in the
/// same way, and what no tier covers from the polls.
pub fn cover(
    from_ms: i64,
    to_ms: i64,
    tier: Option<Tier>,
    made: &impl Fn(Tier) -> Option<i64>,
) -> Vec<Segment> {
    let mut segments = Vec::new();
    cover_into(&mut segments, from_ms, to_ms, tier, made);
    segments
}

fn cover_into(
    out: &mut Vec<Segment>,
    from_ms: i64,
    to_ms: i64,
    tier: Option<Tier>,
    made: &impl Fn(Tier) -> Option<i64>,
) {
    if from_ms >= to_ms {
        return;
    }
    let Some(t) = tier else {
        out.push((None, from_ms, to_ms));
        return;
    };
    let step = t.step_ms();
    let first = -(-from_ms).div_euclid(step) * step;
    let end = made(t).map_or(i64::MIN, |made| floor(to_ms, step).min(made));
    if first >= end {
        cover_into(out, from_ms, to_ms, t.finer(), made);
        return;
    }
    cover_into(out, from_ms, first, t.finer(), made);
    out.push((Some(t), first, end));
    cover_into(out, end, to_ms, t.finer(), made);
}

fn floor(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

/// How far `tier` is made: every period before this is rolled up; `None` before the
/// first pass.
pub fn mark(conn: &mut DbConn, tier: Tier) -> QueryResult<Option<i64>> {
    raw_mark(conn, tier.code())
}

fn set_mark(conn: &mut DbConn, tier: Tier, until_ms: i64) -> QueryResult<()> {
    set_raw_mark(conn, tier.code(), until_ms)
}

/// The mark kept under `code` in `rollup_marks` (the tiers' codes, and the store's
/// other marks: see `seal`).
pub(super) fn raw_mark(conn: &mut DbConn, code: i16) -> QueryResult<Option<i64>> {
    rollup_marks::table
        .find(code)
        .select(rollup_marks::until_ms)
        .first(conn)
        .optional()
}

pub(super) fn set_raw_mark(conn: &mut DbConn, code: i16, until_ms: i64) -> QueryResult<()> {
    let row = (
        rollup_marks::tier.eq(code),
        rollup_marks::until_ms.eq(until_ms),
    );
    match conn {
        DbConn::Sqlite(c) => diesel::replace_into(rollup_marks::table)
            .values(row)
            .execute(c)?,
        DbConn::Pg(c) => diesel::insert_into(rollup_marks::table)
            .values(row)
            .on_conflict(rollup_marks::tier)
            .do_update()
            .set(rollup_marks::until_ms.eq(excluded(rollup_marks::until_ms)))
            .execute(c)?,
    };
    Ok(())
}

/// What one pass made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rolled {
    pub minutes: usize,
    pub hours: usize,
    /// Rows written, both tiers.
    pub rows: usize,
    /// Whether periods are left for the next pass.
    pub behind: bool,
}

/// Makes the minutes closed by `now_ms` and the hours those minutes close, up to
/// [`PERIODS_PER_PASS`] of each.
pub fn roll(conn: &mut DbConn, now_ms: i64) -> QueryResult<Rolled> {
    let mut rolled = Rolled::default();
    let minutes_until = floor(now_ms - GRACE_MS, Tier::Minute.step_ms());
    let (made, rows, behind) = roll_tier(conn, Tier::Minute, minutes_until)?;
    rolled.minutes = made;
    rolled.rows += rows;
    rolled.behind |= behind;
    if let Some(minute_mark) = mark(conn, Tier::Minute)? {
        let hours_until = floor(minute_mark, Tier::Hour.step_ms());
        let (made, rows, behind) = roll_tier(conn, Tier::Hour, hours_until)?;
        rolled.hours = made;
        rolled.rows += rows;
        rolled.behind |= behind;
    }
    Ok(rolled)
}

/// The oldest time at or after `from_ms` that `tier` is made from: a poll's for
/// minutes, a minute's for hours.
fn next_source(conn: &mut DbConn, tier: Tier, from_ms: i64) -> QueryResult<Option<i64>> {
    match tier {
        Tier::Minute => polls::table
            .filter(polls::at_ms.ge(from_ms))
            .select(diesel::dsl::min(polls::at_ms))
            .first(conn),
        Tier::Hour => rollups::table
            .filter(rollups::tier.eq(Tier::Minute.code()))
            .filter(rollups::at_ms.ge(from_ms))
            .select(diesel::dsl::min(rollups::at_ms))
            .first(conn),
    }
}

/// Makes the periods of `tier` from its mark up to `until_ms`; answers periods made,
/// rows written and whether any are left.
fn roll_tier(conn: &mut DbConn, tier: Tier, until_ms: i64) -> QueryResult<(usize, usize, bool)> {
    let step = tier.step_ms();
    let mut at = match mark(conn, tier)? {
        Some(at) => at,
        None => match next_source(conn, tier, i64::MIN)? {
            Some(oldest) => floor(oldest, step),
            None => until_ms,
        },
    };
    let (mut made, mut rows) = (0, 0);
    while at < until_ms {
        if made == PERIODS_PER_PASS {
            return Ok((made, rows, true));
        }
        // Nothing to roll up over a stretch (a node stopped for a while): jump it.
        let next = next_source(conn, tier, at)?.map(|ms| floor(ms, step));
        let period = match next {
            Some(next) if next < until_ms => next,
            _ => {
                set_mark(conn, tier, until_ms)?;
                break;
            }
        };
        let aggregates = match tier {
            Tier::Minute => minute_of_polls(conn, period)?,
            Tier::Hour => hour_of_minutes(conn, period)?,
        };
        let written = aggregates.len();
        write_transaction(conn, |conn| {
            put_rows(conn, tier, period, aggregates)?;
            set_mark(conn, tier, period + step)
        })?;
        made += 1;
        rows += written;
        at = period + step;
    }
    Ok((made, rows, false))
}

type PerDevice = HashMap<i64, Vec<(i64, Aggregate)>>;
/// A rollup row: when its period starts, and every series' aggregate.
pub type Period = (i64, Vec<(i64, Aggregate)>);

/// Adds `items`, sorted by name id, into `into`, sorted by name id: in place when the
/// ids are the same as the period's so far (the usual case: a device answers the same
/// series at every poll), by a merge otherwise.
fn add_sorted<T: Copy>(
    into: &mut Vec<(i64, Aggregate)>,
    items: &[(i64, T)],
    first: impl Fn(T) -> Aggregate,
    later: impl Fn(&mut Aggregate, T),
) {
    if into.len() == items.len() && into.iter().zip(items).all(|(a, b)| a.0 == b.0) {
        for (a, b) in into.iter_mut().zip(items) {
            later(&mut a.1, b.1);
        }
        return;
    }
    let mut merged = Vec::with_capacity(into.len().max(items.len()));
    let (mut i, mut j) = (0, 0);
    while i < into.len() || j < items.len() {
        match (into.get(i), items.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                let mut aggregate = a.1;
                later(&mut aggregate, b.1);
                merged.push((a.0, aggregate));
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                merged.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                merged.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                merged.push((b.0, first(b.1)));
                j += 1;
            }
            (None, None) => break,
        }
    }
    *into = merged;
}

/// Every device's aggregates over the polls of the minute starting at `at_ms`.
fn minute_of_polls(conn: &mut DbConn, at_ms: i64) -> QueryResult<PerDevice> {
    let mut per_device = PerDevice::new();
    let minute = (at_ms, at_ms + Tier::Minute.step_ms());
    super::read::each_poll(conn, None, minute, |device_id, _, data| {
        let readings = codec::decode(data).map_err(codec::corrupt)?;
        add_sorted(
            per_device.entry(device_id).or_default(),
            &readings,
            Aggregate::of,
            Aggregate::add,
        );
        Ok(())
    })?;
    Ok(per_device)
}

/// Every device's aggregates over the minutes of the hour starting at `at_ms`.
fn hour_of_minutes(conn: &mut DbConn, at_ms: i64) -> QueryResult<PerDevice> {
    let end = at_ms + Tier::Hour.step_ms();
    let minutes: Vec<(i64, Vec<u8>)> = rollups::table
        .filter(rollups::tier.eq(Tier::Minute.code()))
        .filter(rollups::at_ms.ge(at_ms))
        .filter(rollups::at_ms.lt(end))
        .order(rollups::at_ms)
        .select((rollups::device_id, rollups::data))
        .load(conn)?;
    let mut per_device = PerDevice::new();
    for (device_id, data) in minutes {
        let aggregates = codec::decode_aggregates(&data).map_err(codec::corrupt)?;
        add_sorted(
            per_device.entry(device_id).or_default(),
            &aggregates,
            |a| a,
            |into, a| into.merge(&a),
        );
    }
    Ok(per_device)
}

/// Writes one row per device for the period at `at_ms`, replacing a row made before.
fn put_rows(conn: &mut DbConn, tier: Tier, at_ms: i64, per_device: PerDevice) -> QueryResult<()> {
    let rows: Vec<_> = per_device
        .into_iter()
        .map(|(device_id, aggregates)| {
            (
                rollups::tier.eq(tier.code()),
                rollups::device_id.eq(device_id),
                rollups::at_ms.eq(at_ms),
                rollups::samples.eq(aggregates.iter().map(|(_, a)| a.count).sum::<i64>()),
                rollups::data.eq(codec::encode_aggregates(&aggregates)),
            )
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        match conn {
            DbConn::Sqlite(c) => diesel::replace_into(rollups::table)
                .values(chunk)
                .execute(c)?,
            DbConn::Pg(c) => diesel::insert_into(rollups::table)
                .values(chunk)
                .on_conflict((rollups::tier, rollups::device_id, rollups::at_ms))
                .do_update()
                .set((
                    rollups::samples.eq(excluded(rollups::samples)),
                    rollups::data.eq(excluded(rollups::data)),
                ))
                .execute(c)?,
        };
    }
    Ok(())
}

/// A device's rollup rows of `tier` in `[from_ms, until_ms)`, `(at_ms, aggregates)`
/// in time order.
pub fn rows_of(
    conn: &mut DbConn,
    tier: Tier,
    device_id: i64,
    from_ms: i64,
    until_ms: i64,
) -> QueryResult<Vec<Period>> {
    let rows: Vec<(i64, Vec<u8>)> = rollups::table
        .filter(rollups::tier.eq(tier.code()))
        .filter(rollups::device_id.eq(device_id))
        .filter(rollups::at_ms.ge(from_ms))
        .filter(rollups::at_ms.lt(until_ms))
        .order(rollups::at_ms)
        .select((rollups::at_ms, rollups::data))
        .load(conn)?;
    rows.into_iter()
        .map(|(at, data)| {
            codec::decode_aggregates(&data)
                .map(|a| (at, a))
                .map_err(codec::corrupt)
        })
        .collect()
}

/// Deletes the rows of `tier` older than `before_ms`, up to `periods` periods per
/// statement (every device's row of a period goes together); answers rows deleted.
/// Callers repeat until it answers 0.
pub fn delete_older_than(
    conn: &mut DbConn,
    tier: Tier,
    before_ms: i64,
    periods: i64,
) -> QueryResult<usize> {
    let oldest: Option<i64> = rollups::table
        .filter(rollups::tier.eq(tier.code()))
        .select(diesel::dsl::min(rollups::at_ms))
        .first(conn)?;
    let Some(oldest) = oldest.filter(|oldest| *oldest < before_ms) else {
        return Ok(0);
    };
    let until = before_ms.min(oldest + periods * tier.step_ms());
    diesel::delete(
        rollups::table
            .filter(rollups::tier.eq(tier.code()))
            .filter(rollups::at_ms.lt(until)),
    )
    .execute(conn)
}

/// Deletes every rollup row of a device.
pub fn delete_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<usize> {
    let tiers: Vec<i16> = Tier::COARSEST_FIRST.iter().map(|t| t.code()).collect();
    diesel::delete(
        rollups::table
            .filter(rollups::tier.eq_any(tiers))
            .filter(rollups::device_id.eq(device_id)),
    )
    .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_the_coarsest_tier_whose_period_fits_a_bucket() {
        assert_eq!(Tier::for_width(59_999), None);
        assert_eq!(Tier::for_width(60_000), Some(Tier::Minute));
        // A week at 300 points: buckets of 33.6 minutes.
        assert_eq!(Tier::for_width(7 * 86_400_000 / 300), Some(Tier::Minute));
        // 90 days at 300 points: 7.2 hours.
        assert_eq!(Tier::for_width(90 * 86_400_000 / 300), Some(Tier::Hour));
    }

    #[test]
    fn a_range_is_covered_once_by_whole_periods_and_polls_around_them() {
        const M: i64 = 60_000;
        const H: i64 = 3_600_000;
        let made = |tier: Tier| match tier {
            Tier::Hour => Some(5 * H),
            Tier::Minute => Some(5 * H + 30 * M),
        };
        // From mid-minute of the second hour to past the minutes made.
        let from = H + 90 * 1000;
        let to = 5 * H + 40 * M;
        assert_eq!(
            cover(from, to, Some(Tier::Hour), &made),
            vec![
                (None, from, H + 2 * M),
                (Some(Tier::Minute), H + 2 * M, 2 * H),
                (Some(Tier::Hour), 2 * H, 5 * H),
                (Some(Tier::Minute), 5 * H, 5 * H + 30 * M),
                (None, 5 * H + 30 * M, to),
            ]
        );
        // Nothing made yet: the polls.
        assert_eq!(
            cover(from, to, Some(Tier::Hour), &|_| None),
            vec![(None, from, to)]
        );
        // A range within one minute.
        assert_eq!(
            cover(M + 1, M + 2, Some(Tier::Minute), &made),
            vec![(None, M + 1, M + 2)]
        );
    }

    #[test]
    fn series_are_added_in_place_or_merged_by_name_id() {
        let mut into = Vec::new();
        add_sorted(
            &mut into,
            &[(1, 2.0), (3, 5.0)],
            Aggregate::of,
            Aggregate::add,
        );
        add_sorted(
            &mut into,
            &[(1, 4.0), (3, 1.0)],
            Aggregate::of,
            Aggregate::add,
        );
        add_sorted(
            &mut into,
            &[(2, 7.0), (3, 3.0)],
            Aggregate::of,
            Aggregate::add,
        );
        let ids: Vec<i64> = into.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            into[0].1,
            Aggregate {
                count: 2,
                min: 2.0,
                max: 4.0,
                sum: 6.0,
                last: 4.0
            }
        );
        assert_eq!(into[1].1, Aggregate::of(7.0));
        assert_eq!(
            into[2].1,
            Aggregate {
                count: 3,
                min: 1.0,
                max: 5.0,
                sum: 9.0,
                last: 3.0
            }
        );
    }
}
