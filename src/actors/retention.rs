//! `Retention`: deletes samples older than `config.retention_hours`, at start and then
//! every few minutes, a bounded chunk per statement so no delete holds locks for long.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use crate::db::{self, Db};

/// How often old samples are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Samples deleted per statement.
const CHUNK: i64 = 10_000;

pub struct Retention {
    db: Db,
    every: Duration,
    running: bool,
}

impl Retention {
    pub fn new(db: Db, every: Duration) -> Self {
        Retention {
            db,
            every,
            running: false,
        }
    }
}

/// Deletes what is past retention now; answers how many samples went.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize, String>")]
pub struct Prune;

/// Deletes samples older than the configured retention, chunk by chunk.
fn prune(conn: &mut db::DbConn) -> diesel::QueryResult<(usize, i32)> {
    let hours = db::config::get(conn)?.retention_hours.max(1);
    let cutoff_ms = Utc::now().timestamp_millis() - i64::from(hours) * 3_600_000;
    let mut deleted = 0;
    loop {
        let n = db::samples::delete_older_than(conn, cutoff_ms, CHUNK)?;
        deleted += n;
        if n < CHUNK as usize {
            return Ok((deleted, hours));
        }
        tracing::info!(deleted, "retention: deleting old samples");
    }
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Prune);
        ctx.run_interval(self.every, |_act, ctx| ctx.notify(Prune));
    }
}

impl Handler<Prune> for Retention {
    type Result = ResponseActFuture<Self, Result<usize, String>>;

    fn handle(&mut self, _: Prune, _ctx: &mut Context<Self>) -> Self::Result {
        if self.running {
            return Box::pin(fut::ready(Ok(0)));
        }
        self.running = true;
        let db = self.db.clone();
        Box::pin(
            async move { db.run(prune).await }
                .into_actor(self)
                .map(|outcome, act, _ctx| {
                    act.running = false;
                    match outcome {
                        Ok((deleted, hours)) => {
                            if deleted > 0 {
                                tracing::info!(
                                    deleted,
                                    retention_hours = hours,
                                    "retention: old samples deleted"
                                );
                            }
                            Ok(deleted)
                        }
                        Err(error) => {
                            tracing::warn!(%error, "retention: could not delete old samples");
                            Err(error.to_string())
                        }
                    }
                }),
        )
    }
}
