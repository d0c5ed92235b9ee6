//! Sealing: the polls of every closed hour move into blocks (`block`), one per device
//! and hour, once the hour's minutes are rolled up; then the days whose blocks hold
//! few polls (a device polled every minute has 60 an hour) are merged into one block
//! per device and day, since a column of a few dozen numbers compresses less well
//! than one of a thousand. The master does both, a bounded amount per pass; a pass
//! takes up where the last one stopped, on whichever node runs it.
//!
//! A poll written after its hour was sealed (a writer that held it through an outage)
//! is sealed at the next pass into a block of its own; a block never spans two days,
//! so the raw tier's retention deletes whole blocks.

use diesel::prelude::*;

use super::super::conn::MAX_IDS_PER_QUERY;
use super::super::schema::{blocks, polls};
use super::super::{write_transaction, DbConn};
use super::block::{self, Columns};
use super::codec;
use super::rollup::{self, Tier, GRACE_MS};

/// Polls are sealed an hour at a time.
pub const WINDOW_MS: i64 = 3_600_000;
/// Blocks are merged a day at a time; no block spans two days.
pub const DAY_MS: i64 = 86_400_000;
/// Polls in one block at most: an hour with more is split, and blocks are merged only
/// while they stay within it (an hour of a node_exporter polled every second is a
/// block of 3,600 polls of 512 series).
pub const MAX_BLOCK_POLLS: usize = 4096;
/// Device-hours sealed, and device-days merged, per pass at most.
const PER_PASS: usize = 1000;
/// The mark (in `rollup_marks`) of how far the days of blocks are merged.
const MERGED_MARK: i16 = 3;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Blocks written by sealing.
    pub blocks: usize,
    /// Polls moved into them.
    pub polls: usize,
    /// Blocks merged away (into fewer).
    pub merged: usize,
    /// Whether work is left for the next pass.
    pub behind: bool,
}

/// Seals the polls of the hours closed by `now_ms` whose minutes are rolled up, then
/// merges the days sealed whole; [`PER_PASS`] of each at most.
pub fn seal(conn: &mut DbConn, now_ms: i64) -> QueryResult<Sealed> {
    let mut sealed = Sealed::default();
    // Nothing is sealed before its minutes are rolled up: rollups are made from polls.
    let Some(minutes) = rollup::mark(conn, Tier::Minute)? else {
        return Ok(sealed);
    };
    let until = floor(minutes.min(now_ms - GRACE_MS), WINDOW_MS);
    let mut oldest = oldest_poll(conn)?;
    let mut done = 0;
    while let Some((device, at_ms)) = oldest.filter(|(_, at_ms)| *at_ms < until) {
        if done == PER_PASS {
            sealed.behind = true;
            break;
        }
        let hour = floor(at_ms, WINDOW_MS);
        let (blocks, polls) = write_transaction(conn, |conn| {
            seal_device(conn, device, (hour, hour + WINDOW_MS))
        })?;
        sealed.blocks += blocks;
        sealed.polls += polls;
        done += 1;
        oldest = oldest_poll(conn)?;
    }
    // Every hour before this is sealed: the oldest poll left is in a later one.
    let sealed_until = oldest.map_or(until, |(_, at_ms)| until.min(floor(at_ms, WINDOW_MS)));
    let (merged, behind) = merge_days(conn, sealed_until)?;
    sealed.merged = merged;
    sealed.behind |= behind;
    Ok(sealed)
}

fn floor(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

/// The oldest poll: its device and time.
fn oldest_poll(conn: &mut DbConn) -> QueryResult<Option<(i64, i64)>> {
    polls::table
        .order(polls::at_ms)
        .select((polls::device_id, polls::at_ms))
        .first(conn)
        .optional()
}

/// Moves the polls of `device` in `[from_ms, to_ms)` into blocks; answers blocks
/// written and polls moved.
fn seal_device(
    conn: &mut DbConn,
    device: i64,
    (from_ms, to_ms): (i64, i64),
) -> QueryResult<(usize, usize)> {
    let rows: Vec<(i64, i64, Vec<u8>)> = polls::table
        .filter(polls::device_id.eq(device))
        .filter(polls::at_ms.ge(from_ms))
        .filter(polls::at_ms.lt(to_ms))
        .order((polls::at_ms, polls::id))
        .select((polls::id, polls::at_ms, polls::data))
        .load(conn)?;
    let mut decoded = Vec::with_capacity(rows.len());
    for (_, at_ms, data) in &rows {
        decoded.push((*at_ms, codec::decode(data).map_err(codec::corrupt)?));
    }
    let mut blocks = 0;
    for chunk in decoded.chunks(MAX_BLOCK_POLLS) {
        let columns = Columns::of_polls(chunk.iter().map(|(at, r)| (*at, r.as_slice())));
        put_block(conn, device, &columns)?;
        blocks += 1;
    }
    let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
    for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
        diesel::delete(polls::table.filter(polls::id.eq_any(chunk))).execute(conn)?;
    }
    Ok((blocks, rows.len()))
}

fn put_block(conn: &mut DbConn, device: i64, columns: &Columns) -> QueryResult<()> {
    let (Some(first), Some(last)) = (columns.times.iter().min(), columns.times.iter().max()) else {
        return Ok(());
    };
    diesel::insert_into(blocks::table)
        .values((
            blocks::device_id.eq(device),
            blocks::at_ms.eq(first),
            blocks::end_ms.eq(last),
            blocks::polls.eq(columns.polls() as i64),
            blocks::samples.eq(columns.samples() as i64),
            blocks::data.eq(block::encode(columns)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Merges, day by day from its mark, the blocks of each device in a day whose polls
/// fit in one block, for the days wholly before `sealed_until`; answers blocks merged
/// away and whether days are left.
fn merge_days(conn: &mut DbConn, sealed_until: i64) -> QueryResult<(usize, bool)> {
    let mut day = match merge_mark(conn)? {
        Some(day) => day,
        None => {
            let first: Option<i64> = blocks::table
                .select(diesel::dsl::min(blocks::at_ms))
                .first(conn)?;
            match first {
                Some(first) => floor(first, DAY_MS),
                None => return Ok((0, false)),
            }
        }
    };
    let (mut merged, mut done) = (0, 0);
    while day + DAY_MS <= sealed_until {
        if done >= PER_PASS {
            return Ok((merged, true));
        }
        let of_day: Vec<(i64, i64, i64)> = blocks::table
            .filter(blocks::at_ms.ge(day))
            .filter(blocks::at_ms.lt(day + DAY_MS))
            .order((blocks::device_id, blocks::at_ms))
            .select((blocks::device_id, blocks::id, blocks::polls))
            .load(conn)?;
        for group in groups(&of_day) {
            merged += write_transaction(conn, |conn| merge(conn, group.0, &group.1))?;
            done += 1;
        }
        day += DAY_MS;
        set_merge_mark(conn, day)?;
    }
    Ok((merged, false))
}

/// Of a day's blocks `(device, id, polls)` in device and time order, the runs of two or
/// more consecutive blocks of one device whose polls fit in one block.
fn groups(blocks: &[(i64, i64, i64)]) -> Vec<(i64, Vec<i64>)> {
    let mut groups = Vec::new();
    let mut run: Option<(i64, Vec<i64>, i64)> = None;
    for &(device, id, polls) in blocks {
        match &mut run {
            Some((d, ids, total)) if *d == device && *total + polls <= MAX_BLOCK_POLLS as i64 => {
                ids.push(id);
                *total += polls;
            }
            _ => {
                if let Some((d, ids, _)) = run.take() {
                    if ids.len() > 1 {
                        groups.push((d, ids));
                    }
                }
                run = Some((device, vec![id], polls));
            }
        }
    }
    if let Some((d, ids, _)) = run {
        if ids.len() > 1 {
            groups.push((d, ids));
        }
    }
    groups
}

/// Replaces the blocks `ids` of `device` by one holding all their polls in time
/// order; answers how many fewer blocks there are.
fn merge(conn: &mut DbConn, device: i64, ids: &[i64]) -> QueryResult<usize> {
    let datas: Vec<Vec<u8>> = blocks::table
        .filter(blocks::id.eq_any(ids))
        .select(blocks::data)
        .load(conn)?;
    let mut polls: Vec<(i64, Vec<(i64, f64)>)> = Vec::new();
    for data in &datas {
        let columns = block::decode(data).map_err(codec::corrupt)?;
        columns.each_poll(|at_ms, row| {
            polls.push((at_ms, row.to_vec()));
            Ok::<_, diesel::result::Error>(())
        })?;
    }
    polls.sort_by_key(|(at_ms, _)| *at_ms);
    let columns = Columns::of_polls(polls.iter().map(|(at, r)| (*at, r.as_slice())));
    put_block(conn, device, &columns)?;
    diesel::delete(blocks::table.filter(blocks::id.eq_any(ids))).execute(conn)?;
    Ok(datas.len().saturating_sub(1))
}

fn merge_mark(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    rollup::raw_mark(conn, MERGED_MARK)
}

fn set_merge_mark(conn: &mut DbConn, until_ms: i64) -> QueryResult<()> {
    rollup::set_raw_mark(conn, MERGED_MARK, until_ms)
}

/// The blocks of `device` with polls in `[from_ms, to_ms)`, decoded, oldest first.
pub fn blocks_of(
    conn: &mut DbConn,
    device: i64,
    (from_ms, to_ms): (i64, i64),
) -> QueryResult<Vec<Columns>> {
    if from_ms >= to_ms {
        return Ok(Vec::new());
    }
    let datas: Vec<Vec<u8>> = blocks::table
        .filter(blocks::device_id.eq(device))
        // A block spans a day at most.
        .filter(blocks::at_ms.gt(from_ms.saturating_sub(DAY_MS)))
        .filter(blocks::at_ms.lt(to_ms))
        .filter(blocks::end_ms.ge(from_ms))
        .order(blocks::at_ms)
        .select(blocks::data)
        .load(conn)?;
    datas
        .iter()
        .map(|data| block::decode(data).map_err(codec::corrupt))
        .collect()
}

/// Deletes up to `limit` blocks whose every poll is older than `before_ms`; answers
/// how many went. Callers repeat until it answers less than `limit`.
pub fn delete_older_than(conn: &mut DbConn, before_ms: i64, limit: i64) -> QueryResult<usize> {
    let ids: Vec<i64> = blocks::table
        .filter(blocks::at_ms.lt(before_ms))
        .filter(blocks::end_ms.lt(before_ms))
        .select(blocks::id)
        .order(blocks::id)
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(blocks::table.filter(blocks::id.eq_any(&ids))).execute(conn)
}

/// Deletes every block of a device.
pub fn delete_of_device(conn: &mut DbConn, device_id: i64) -> QueryResult<usize> {
    diesel::delete(blocks::table.filter(blocks::device_id.eq(device_id))).execute(conn)
}

const _: () = assert!(MAX_BLOCK_POLLS <= block::MAX_POLLS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_blocks_are_merged_in_runs_that_fit_one_block() {
        let max = MAX_BLOCK_POLLS as i64;
        let day = [
            // Device 1: 24 hours of 60 polls: all in one.
            (1, 10, 60),
            (1, 11, 60),
            (1, 12, 60),
            // Device 2: one block alone: nothing to merge.
            (2, 20, 60),
            // Device 3: full hours, then small ones.
            (3, 30, max),
            (3, 31, max - 10),
            (3, 32, 5),
            (3, 33, 5),
            (3, 34, 1),
        ];
        assert_eq!(
            groups(&day),
            vec![(1, vec![10, 11, 12]), (3, vec![31, 32, 33]),]
        );
        assert!(groups(&[]).is_empty());
    }
}
