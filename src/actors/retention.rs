//! `Retention`: deletes polls and events older than `config.retention_hours`, at start
//! and then every few minutes, a bounded chunk per statement so no delete holds locks
//! for long. A master-only task: with a membership, only the master prunes.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use super::membership::{IsMaster, Membership};
use super::registry::{ActorRegistry, ActorStats, Tracked};
use crate::db::{self, Db};

/// The kind under which the retention task appears in the actor registry.
pub const KIND: &str = "Retention";

/// How often old polls and events are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Polls (and events) deleted per statement.
const CHUNK: i64 = 10_000;

pub struct Retention {
    db: Db,
    every: Duration,
    running: bool,
    registered: Option<Arc<ActorStats>>,
    /// When set, pruning waits for this node to be the master.
    membership: Option<Tracked<Membership>>,
}

impl Retention {
    pub fn new(db: Db, every: Duration) -> Self {
        Retention {
            db,
            every,
            running: false,
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
    pub events: usize,
}

/// Runs `delete` (a chunk at a time) until a chunk comes back short.
fn in_chunks(
    what: &str,
    mut delete: impl FnMut() -> diesel::QueryResult<usize>,
) -> diesel::QueryResult<usize> {
    let mut deleted = 0;
    loop {
        let n = delete()?;
        deleted += n;
        if n < CHUNK as usize {
            return Ok(deleted);
        }
        tracing::info!(deleted, "retention: deleting old {what}");
    }
}

/// Deletes polls and events older than the configured retention.
fn prune(conn: &mut db::DbConn) -> diesel::QueryResult<(Pruned, i32)> {
    let hours = db::config::get(conn)?.retention_hours.max(1);
    let cutoff = Utc::now() - chrono::Duration::hours(i64::from(hours));
    let polls = in_chunks("polls", || {
        db::store::delete_older_than(conn, cutoff.timestamp_millis(), CHUNK)
    })?;
    let events = in_chunks("events", || {
        db::events::delete_older_than(conn, cutoff.naive_utc(), CHUNK)
    })?;
    Ok((Pruned { polls, events }, hours))
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Prune);
        ctx.run_interval(self.every, |_act, ctx| ctx.notify(Prune));
    }
}

impl Handler<Prune> for Retention {
    type Result = ResponseActFuture<Self, Result<Pruned, String>>;

    fn handle(&mut self, _: Prune, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(stats) = &self.registered {
            stats.record::<Prune>();
        }
        if self.running {
            return Box::pin(fut::ready(Ok(Pruned::default())));
        }
        self.running = true;
        let db = self.db.clone();
        let membership = self.membership.clone();
        Box::pin(
            async move {
                if let Some(membership) = membership {
                    if !membership.send(IsMaster).await.unwrap_or(false) {
                        tracing::debug!("retention: not the master; leaving it to the master");
                        return Ok((Pruned::default(), 0));
                    }
                }
                db.run(prune).await
            }
            .into_actor(self)
            .map(|outcome, act, _ctx| {
                act.running = false;
                match outcome {
                    Ok((pruned, hours)) => {
                        if pruned != Pruned::default() {
                            tracing::info!(
                                polls = pruned.polls,
                                events = pruned.events,
                                retention_hours = hours,
                                "retention: old polls and events deleted"
                            );
                        }
                        Ok(pruned)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "retention: could not delete old polls and events");
                        Err(error.to_string())
                    }
                }
            }),
        )
    }
}
