//! Moving a database of the old layout (`samples`, one row per reading) into the
//! series store as a node starts (`startup::open_database`): a chunk of the oldest rows
//! at a time, each chunk in one transaction that stores them as polls and deletes them,
//! with progress logged. The table stays (empty) so rows a node of the previous version
//! writes during a rolling upgrade move at the next start. Rows of one poll were written
//! together and lie together by id, so a poll is cut in two only at a chunk's edge: two
//! rows of the same instant, which the history adds up as one, and of which the latest
//! poll keeps the later.

use std::borrow::Cow;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::super::schema::samples;
use super::super::{write_transaction, DbConn};
use super::catalogue::Catalogue;
use super::write::{write_accepted, NewPoll};

/// Old rows moved per transaction.
const CHUNK: i64 = 50_000;

/// Moves every row of `samples` into the store; answers how many moved.
pub fn move_old_samples(conn: &mut DbConn) -> QueryResult<i64> {
    let total: i64 = samples::table.count().get_result(conn)?;
    if total == 0 {
        return Ok(0);
    }
    tracing::info!(
        samples = total,
        "moving the samples of the old layout into the series store"
    );
    let mut catalogue = Catalogue::default();
    let mut moved = 0;
    loop {
        let n = write_transaction(conn, |conn| move_chunk(conn, &mut catalogue))?;
        if n == 0 {
            break;
        }
        moved += n;
        tracing::info!(moved, of = total, "moving old samples");
    }
    tracing::info!(moved, "old samples moved into the series store");
    Ok(moved)
}

type OldRow = (i64, i64, i64, i64, String, f64);

fn move_chunk(conn: &mut DbConn, catalogue: &mut Catalogue) -> QueryResult<i64> {
    // Nodes starting together on one PostgreSQL take turns, so no chunk moves twice
    // (a SQLite write transaction holds the whole database already).
    if let DbConn::Pg(c) = conn {
        c.batch_execute("LOCK TABLE samples IN EXCLUSIVE MODE")?;
    }
    let rows: Vec<OldRow> = samples::table
        .order(samples::id)
        .limit(CHUNK)
        .select((
            samples::id,
            samples::device_id,
            samples::epoch,
            samples::at_ms,
            samples::metric,
            samples::value,
        ))
        .load(conn)?;
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(0);
    };
    let count = rows.len() as i64;
    let mut polls: Vec<NewPoll> = Vec::new();
    for (_, device_id, epoch, at_ms, metric, value) in rows {
        let same = polls
            .last()
            .is_some_and(|p| (p.device_id, p.epoch, p.at_ms) == (device_id, epoch, at_ms));
        if !same {
            polls.push(NewPoll {
                device_id,
                epoch,
                at_ms,
                readings: Vec::new(),
                shared: None,
            });
        }
        if let Some(poll) = polls.last_mut() {
            poll.readings.push((Cow::Owned(metric), value));
        }
    }
    write_accepted(conn, catalogue, &polls)?;
    diesel::delete(samples::table.filter(samples::id.le(last))).execute(conn)?;
    Ok(count)
}
