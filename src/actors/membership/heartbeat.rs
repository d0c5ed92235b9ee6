//! The heartbeat thread of a node: its own database connection (never the pool's, so
//! slow API work cannot hold it up), one counter advance per `heartbeat_ms`, and
//! jittered retries no longer than a beat while the database is away.
//!
//! On a monitor server the thread also watches the supervisor: a node whose supervisor
//! is gone, or has not answered for [`SUPERVISOR_ANSWER_WITHIN`], monitors nothing
//! while its counter would keep it alive. It leaves the cluster instead (its row goes
//! and its devices are released, so the master re-homes them at once), and the actor
//! rejoins once the supervisor answers and has stopped every monitor.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::load::LoadReader;
use crate::actors::backoff::Backoff;
use crate::actors::messages::Ping;
use crate::actors::registry::TrackedRecipient;
use crate::db::{self, Db, DbConn};

/// What the heartbeat thread and the actor share.
#[derive(Debug)]
pub(super) struct Shared {
    /// This node's id; 0 while it is not a member (between removal and rejoin).
    pub(super) node_id: AtomicI64,
    pub(super) heartbeat_ms: AtomicU64,
    pub(super) stop: AtomicBool,
}

/// A supervisor that has not taken a ping for this long is taken as hung.
pub const SUPERVISOR_ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// The supervisor the heartbeat watches, and the server whose devices it releases
/// when the supervisor does not answer.
pub(super) struct Watched {
    pub(super) ping: TrackedRecipient<Ping>,
    pub(super) server_id: Option<i64>,
}

/// Pings in flight to a watched supervisor.
struct Watch {
    watched: Watched,
    answered: Arc<AtomicU64>,
    sent: u64,
    waiting_since: Instant,
    /// The node id the pings were sent as; a new membership starts afresh.
    node: i64,
}

impl Watch {
    fn new(watched: Watched) -> Self {
        Watch {
            watched,
            answered: Arc::new(AtomicU64::new(0)),
            sent: 0,
            waiting_since: Instant::now(),
            node: 0,
        }
    }

    /// Why the supervisor is taken as dead, or `None` while it answers: the last ping
    /// was taken (a new one goes out), or it has not been out for long.
    fn check(&mut self, node: i64) -> Option<String> {
        if node != self.node {
            self.node = node;
            self.sent = self.answered.load(Ordering::SeqCst);
        }
        if !self.watched.ping.connected() {
            return Some("the supervisor of its monitors is gone".into());
        }
        if self.answered.load(Ordering::SeqCst) >= self.sent {
            self.sent += 1;
            self.waiting_since = Instant::now();
            self.watched.ping.do_send(Ping {
                seq: self.sent,
                answered: Arc::clone(&self.answered),
            });
            return None;
        }
        let waited = self.waiting_since.elapsed();
        (waited > SUPERVISOR_ANSWER_WITHIN).then(|| {
            format!(
                "the supervisor of its monitors has not answered for {} ms",
                waited.as_millis()
            )
        })
    }
}

/// Advances this node's counter every `heartbeat_ms` on a connection of its own, until
/// told to stop or `membership_runs` says the membership actor is gone (its system
/// ended). A row found gone is reported with `removed(id)`, and the actor rejoins; so
/// is a row this thread removed itself because the `watched` supervisor stopped
/// answering.
pub(super) fn run(
    db: Db,
    shared: Arc<Shared>,
    watched: Option<Watched>,
    membership_runs: impl Fn() -> bool,
    removed: impl Fn(i64),
) {
    let mut watch = watched.map(Watch::new);
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
        if let Some(why) = watch.as_mut().and_then(|w| w.check(id)) {
            let server_id = watch.as_ref().and_then(|w| w.watched.server_id);
            if leave(&db, &mut conn, id, server_id, &why)
                && shared
                    .node_id
                    .compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                removed(id);
            }
            // Not beating either way: a node that could not leave is judged dead.
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

/// Leaves the cluster for a supervisor that does not answer: the node's row goes and
/// the server's devices are released, in one transaction, so the master re-homes them
/// at its next look. True when it left.
fn leave(db: &Db, conn: &mut Option<DbConn>, id: i64, server_id: Option<i64>, why: &str) -> bool {
    if conn.is_none() {
        *conn = db.dedicated_connection().ok();
    }
    let Some(c) = conn.as_mut() else {
        return false;
    };
    let left = db::write_transaction(c, |c| {
        db::nodes::leave(c, id)?;
        match server_id {
            Some(server_id) => db::assignments::release_all_of_server(c, server_id),
            None => Ok(0),
        }
    });
    match left {
        Ok(released) => {
            tracing::error!(
                node.id = id,
                server.id = server_id,
                released,
                "{why}: this node leaves the cluster and its devices go to the other servers"
            );
            true
        }
        Err(error) => {
            tracing::error!(node.id = id, server.id = server_id, %error, "{why}, and this node could not leave the cluster; it stops beating");
            *conn = None;
            false
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
