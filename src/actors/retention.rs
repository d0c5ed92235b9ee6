//! `Retention`: the series store's upkeep, a master-only task (with a membership, only
//! the master does it). Every [`ROLL_EVERY`] it makes the rollups of the minutes and
//! hours that have closed (`db::store::rollup`), and every [`SEAL_EVERY`] it seals
//! the polls of the closed hours into blocks and merges the days of small blocks
//! (`db::store::seal`), each sooner again while a backlog is left; at start and then
//! every few minutes it deletes what each tier keeps no longer: polls, blocks (whole,
//! once their newest poll is past) and events older than `config.retention_hours`,
//! minute rollups older than `minute_retention_days`, hour rollups older than
//! `hour_retention_days`, a bounded chunk per statement so no delete holds locks for
//! long.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use super::membership::{IsMaster, Membership};
use super::registry::{ActorRegistry, ActorStats, Tracked};
use crate::db::store::rollup::{self, Rolled, Tier};
use crate::db::store::seal::{self, Sealed};
use crate::db::{self, Db, DbConn};

/// The kind under which the retention task appears in the actor registry.
pub const KIND: &str = "Retention";

/// How often old polls and events are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// How often closed minutes and hours are rolled up.
pub const ROLL_EVERY: Duration = Duration::from_secs(30);
/// How often the polls of closed hours are sealed into blocks.
pub const SEAL_EVERY: Duration = Duration::from_secs(60);
/// Blocks deleted per statement.
const BLOCK_CHUNK: i64 = 1_000;
/// Polls (and events) deleted per statement.
const CHUNK: i64 = 10_000;
/// Rollup periods (every device's row of each) deleted per statement.
const ROLLUP_PERIODS: i64 = 60;

pub struct Retention {
    db: Db,
    every: Duration,
    roll_every: Duration,
    registered: Option<Arc<ActorStats>>,
    /// When set, pruning waits for this node to be the master.
    membership: Option<Tracked<Membership>>,
}

impl Retention {
    pub fn new(db: Db, every: Duration) -> Self {
        Retention {
            db,
            every,
            roll_every: ROLL_EVERY,
            registered: None,
            membership: None,
        }
    }

    /// Prunes only while `membership` says this node is the master.
    pub fn on_master_of(mut self, membership: Tracked<Membership>) -> Self {
        self.membership = Some(membership);
        self
    }

    /// Starts the task, listed in `registry`.
    pub fn launch(mut self, registry: &ActorRegistry) -> Tracked<Retention> {
        let stats = registry.register(KIND, "this node");
        self.registered = Some(Arc::clone(&stats));
        Tracked::new(self.start(), stats)
    }
}

/// Deletes what is past retention now; answers what went.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Pruned, String>")]
pub struct Prune;

/// What one prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub polls: usize,
    pub blocks: usize,
    pub events: usize,
    /// Rollup rows, both tiers.
    pub rollups: usize,
}

/// Rolls up the minutes and hours closed by now; answers what was made.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Rolled, String>")]
pub struct Roll;

/// Seals the polls of the hours closed and rolled up by now into blocks, and merges
/// the days sealed whole; answers what was done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Sealed, String>")]
pub struct Seal;

/// Runs `delete` (a chunk at a time) until a chunk comes back short of `full`.
fn in_chunks(
    what: &str,
    full: usize,
    mut delete: impl FnMut() -> diesel::QueryResult<usize>,
) -> diesel::QueryResult<usize> {
    let mut deleted = 0;
    loop {
        let n = delete()?;
        deleted += n;
        if n < full {
            return Ok(deleted);
        }
        tracing::info!(deleted, "retention: deleting old {what}");
    }
}

/// Deletes polls, events and rollups older than their tier's retention.
fn prune(conn: &mut DbConn) -> diesel::QueryResult<(Pruned, i32)> {
    let config = db::config::get(conn)?;
    let hours = config.retention_hours.max(1);
    let now = Utc::now();
    let cutoff = now - chrono::Duration::hours(i64::from(hours));
    let polls = in_chunks("polls", CHUNK as usize, || {
        db::store::delete_older_than(conn, cutoff.timestamp_millis(), CHUNK)
    })?;
    let blocks = in_chunks("blocks", BLOCK_CHUNK as usize, || {
        seal::delete_older_than(conn, cutoff.timestamp_millis(), BLOCK_CHUNK)
    })?;
    let events = in_chunks("events", CHUNK as usize, || {
        db::events::delete_older_than(conn, cutoff.naive_utc(), CHUNK)
    })?;
    let mut rollups = 0;
    for (tier, days) in [
        (Tier::Minute, config.minute_retention_days),
        (Tier::Hour, config.hour_retention_days),
    ] {
        let before = (now - chrono::Duration::days(i64::from(days.max(1)))).timestamp_millis();
        // A chunk is some periods' rows, however many: done when one deletes none.
        rollups += in_chunks(&format!("{} rollups", tier.name()), 1, || {
            rollup::delete_older_than(conn, tier, before, ROLLUP_PERIODS)
        })?;
    }
    Ok((
        Pruned {
            polls,
            blocks,
            events,
            rollups,
        },
        hours,
    ))
}

/// Runs `work` on a pooled connection if this node is the master (or has no
/// membership); `None` otherwise.
async fn on_master<T: Send + 'static>(
    db: Db,
    membership: Option<Tracked<Membership>>,
    work: fn(&mut DbConn) -> diesel::QueryResult<T>,
) -> Option<Result<T, db::DbError>> {
    if let Some(membership) = membership {
        if !membership.send(IsMaster).await.unwrap_or(false) {
            tracing::debug!("store upkeep: not the master; leaving it to the master");
            return None;
        }
    }
    Some(db.run(work).await)
}

fn roll_now(conn: &mut DbConn) -> diesel::QueryResult<Rolled> {
    rollup::roll(conn, Utc::now().timestamp_millis())
}

fn seal_now(conn: &mut DbConn) -> diesel::QueryResult<Sealed> {
    seal::seal(conn, Utc::now().timestamp_millis())
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Prune);
        ctx.run_interval(self.every, |_act, ctx| ctx.notify(Prune));
        ctx.run_interval(self.roll_every, |_act, ctx| ctx.notify(Roll));
        ctx.run_interval(SEAL_EVERY, |_act, ctx| ctx.notify(Seal));
    }
}

// Prunes and rolls run one at a time (`AtomicResponse`): one that comes while the
// other runs waits for it, so neither deletes under the other nor is skipped.
impl Handler<Prune> for Retention {
    type Result = AtomicResponse<Self, Result<Pruned, String>>;

    fn handle(&mut self, _: Prune, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(stats) = &self.registered {
            stats.record::<Prune>();
        }
        let work = on_master(self.db.clone(), self.membership.clone(), prune);
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |outcome, _act, _ctx| match outcome {
                None => Ok(Pruned::default()),
                Some(Ok((pruned, hours))) => {
                    if pruned != Pruned::default() {
                        tracing::info!(
                            polls = pruned.polls,
                            blocks = pruned.blocks,
                            events = pruned.events,
                            rollups = pruned.rollups,
                            retention_hours = hours,
                            "retention: old polls, blocks, events and rollups deleted"
                        );
                    }
                    Ok(pruned)
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "retention: could not delete old polls and events");
                    Err(error.to_string())
                }
            },
        )))
    }
}

/// What a pass of the upkeep answers: whether work is left, and what it did, logged.
trait Pass: Default + Send + 'static {
    fn behind(&self) -> bool;
    fn log(&self);
}

impl Pass for Rolled {
    fn behind(&self) -> bool {
        self.behind
    }

    fn log(&self) {
        if self.behind {
            // A backlog (a database just upgraded, a master just taken over): the
            // next pass at once, with progress in the log.
            tracing::info!(
                minutes = self.minutes,
                hours = self.hours,
                rows = self.rows,
                "rollups: catching up"
            );
        } else if self.rows > 0 {
            tracing::debug!(
                minutes = self.minutes,
                hours = self.hours,
                rows = self.rows,
                "rollups made"
            );
        }
    }
}

impl Pass for Sealed {
    fn behind(&self) -> bool {
        self.behind
    }

    fn log(&self) {
        if self.behind || self.blocks > 0 || self.merged > 0 {
            tracing::info!(
                blocks = self.blocks,
                polls = self.polls,
                merged = self.merged,
                behind = self.behind,
                "closed hours sealed into blocks"
            );
        }
    }
}

impl Retention {
    /// Runs `work` on the master, and `again` at once while it is behind.
    fn pass<T: Pass, M>(
        &self,
        work: fn(&mut DbConn) -> diesel::QueryResult<T>,
        again: M,
        failed: &'static str,
    ) -> AtomicResponse<Self, Result<T, String>>
    where
        M: Message + Send + 'static,
        Self: Handler<M>,
    {
        let work = on_master(self.db.clone(), self.membership.clone(), work);
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |outcome, _act, ctx| match outcome {
                None => Ok(T::default()),
                Some(Ok(done)) => {
                    done.log();
                    if done.behind() {
                        ctx.notify(again);
                    }
                    Ok(done)
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "{failed}");
                    Err(error.to_string())
                }
            },
        )))
    }
}

impl Handler<Roll> for Retention {
    type Result = AtomicResponse<Self, Result<Rolled, String>>;

    fn handle(&mut self, _: Roll, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(stats) = &self.registered {
            stats.record::<Roll>();
        }
        self.pass(roll_now, Roll, "rollups: could not roll up closed minutes")
    }
}

impl Handler<Seal> for Retention {
    type Result = AtomicResponse<Self, Result<Sealed, String>>;

    fn handle(&mut self, _: Seal, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(stats) = &self.registered {
            stats.record::<Seal>();
        }
        self.pass(seal_now, Seal, "blocks: could not seal closed hours")
    }
}
