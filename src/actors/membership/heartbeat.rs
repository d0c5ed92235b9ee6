//! The heartbeat thread of a node: its own database connection (never the pool's, so
//! slow API work cannot hold it up), one counter advance per `heartbeat_ms`, and
//! jittered retries no longer than a beat while the database is away.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::load::LoadReader;
use crate::actors::backoff::Backoff;
use crate::db::{self, Db, DbConn};

/// What the heartbeat thread and the actor share.
#[derive(Debug)]
pub(super) struct Shared {
    /// This node's id; 0 while it is not a member (between removal and rejoin).
    pub(super) node_id: AtomicI64,
    pub(super) heartbeat_ms: AtomicU64,
    pub(super) stop: AtomicBool,
}

/// Advances this node's counter every `heartbeat_ms` on a connection of its own, until
/// told to stop or `membership_runs` says the membership actor is gone (its system
/// ended). A row found gone is reported with `removed(id)`, and the actor rejoins.
pub(super) fn run(
    db: Db,
    shared: Arc<Shared>,
    membership_runs: impl Fn() -> bool,
    removed: impl Fn(i64),
) {
    let mut conn: Option<DbConn> = None;
    // Failing: the next try comes after a jittered wait from a quarter beat up to one
    // beat, never longer, so a node whose database came back beats before anyone
    // judges it.
    let mut failing: Option<Backoff> = None;
    // The load each beat reports, for the balancing methods that read it.
    let mut load = LoadReader::new();
    if load.is_none() {
        tracing::warn!("this node cannot read its own load; it will beat without reports");
    }
    let mut pause = Duration::from_millis(shared.heartbeat_ms.load(Ordering::Relaxed).max(1));
    while !shared.stop.load(Ordering::SeqCst) && membership_runs() {
        std::thread::sleep(pause);
        let beat = Duration::from_millis(shared.heartbeat_ms.load(Ordering::Relaxed).max(1));
        pause = beat;
        let id = shared.node_id.load(Ordering::SeqCst);
        if id == 0 || shared.stop.load(Ordering::SeqCst) {
            continue;
        }
        let beaten = match conn.as_mut() {
            Some(c) => beat_once(c, id, &mut load, &shared),
            None => match db.dedicated_connection() {
                Ok(mut fresh) => {
                    let beaten = beat_once(&mut fresh, id, &mut load, &shared);
                    conn = Some(fresh);
                    beaten
                }
                Err(error) => Err(error.to_string()),
            },
        };
        match beaten {
            Ok(alive) => {
                if let Some(backoff) = failing.take() {
                    let failures = backoff.failures();
                    tracing::info!(
                        node.id = id,
                        failures,
                        "heartbeat reaches the database again"
                    );
                }
                // Judged dead while we were away: no longer a member until we rejoin.
                if !alive
                    && shared
                        .node_id
                        .compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    removed(id);
                }
            }
            Err(error) => {
                let backoff = failing.get_or_insert_with(|| Backoff::new(beat / 4, beat));
                pause = backoff.failed();
                tracing::warn!(
                    node.id = id,
                    %error,
                    failures = backoff.failures(),
                    retry_in_ms = pause.as_millis() as u64,
                    "heartbeat failed"
                );
                conn = None;
            }
        }
    }
}

/// One beat: advances the counter with the load report and takes a new rate from the
/// config. `Ok(false)` when the row is gone (this node was judged dead).
fn beat_once(
    conn: &mut DbConn,
    id: i64,
    load: &mut Option<LoadReader>,
    shared: &Shared,
) -> Result<bool, String> {
    let report = load.as_mut().and_then(LoadReader::read);
    let alive = db::nodes::beat(conn, id, report.as_ref()).map_err(|e| e.to_string())?;
    if alive {
        // A new rate takes effect at the next beat, not at the next look.
        if let Ok(config) = db::config::get(conn) {
            if let Ok(ms) = u64::try_from(config.heartbeat_ms) {
                shared.heartbeat_ms.store(ms, Ordering::Relaxed);
            }
        }
    }
    Ok(alive)
}
