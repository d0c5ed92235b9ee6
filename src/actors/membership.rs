//! `Membership`: this process as a node of the cluster (seed 003).
//!
//! At start the node registers a row in `nodes` and gets an id. A heartbeat thread,
//! with a database connection of its own, advances the row's counter every
//! `heartbeat_ms`. Every `validate_ms` each node reads every row and notes whose
//! counter did not move since its previous look: a node missing `missed_checks`
//! looks in a row is dead. Counters, not clocks, decide: a node with a skewed clock is
//! as alive as its counter says, and the only time stored is the database's.
//!
//! A change of `heartbeat_ms` reaches each heartbeat at its next beat; a node that sees
//! the settings change judges no one for two heartbeats and a validation, so a node
//! still beating at the old rate is not taken for dead.
//!
//! The master is the live node with the lowest id. Only the master removes dead
//! nodes (a conditional delete: a node that beat in between stays); if the master
//! itself dies, the next lowest sees its counter stop, becomes master at that
//! validation and removes it. A node whose heartbeat finds its own row gone was
//! judged dead: it stops being a member and registers again under a new id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

mod heartbeat;
pub mod load;

use self::heartbeat::Shared;

use super::messages::{Fence, Ping};
use super::registry::{ActorRegistry, ActorStats, Tracked, TrackedRecipient};
use crate::actors::backoff::Backoff;
use crate::db::models::{NewNode, Node};
use crate::db::{self, Db, DbConn};

/// The version of Vigil this node runs, as it registers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The kind under which the membership actor appears in the actor registry.
pub const KIND: &str = "Membership";

/// How long a node whose registration failed waits before trying again: from the first
/// wait, doubling (jittered) up to the last.
const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(500);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(10);
/// Timing until the first look reads the config.
const DEFAULT_HEARTBEAT_MS: u64 = 1000;
const DEFAULT_VALIDATE_MS: i64 = 3000;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    MonitorServer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::MonitorServer => "monitor_server",
        }
    }
}

/// A monitor server's supervisor, as membership sees it: what to stop before
/// rejoining, and whom the heartbeat asks whether it still takes messages.
#[derive(Clone)]
pub struct Supervisor {
    pub fence: TrackedRecipient<Fence>,
    pub ping: TrackedRecipient<Ping>,
}

/// Who this node is, as it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub role: Role,
    /// Where other nodes reach it.
    pub address: String,
    /// For a monitor server: its row in `monitor_servers`.
    pub server_id: Option<i64>,
}

/// How often to look, and how many missed looks make a node dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timing {
    validate: Duration,
    missed_checks: u32,
}

/// What this node saw of another at its last look.
#[derive(Debug, Clone, Copy)]
struct Seen {
    counter: i64,
    /// Looks in a row the counter stayed put.
    misses: u32,
}

pub struct Membership {
    db: Db,
    identity: Identity,
    shared: Arc<Shared>,
    timing: Timing,
    seen: HashMap<i64, Seen>,
    /// The nodes as read at the last look, in id order.
    nodes: Vec<Node>,
    master: Option<i64>,
    validating: bool,
    registering: bool,
    /// No node is judged dead before this: settings just changed.
    judge_after: Instant,
    /// What this node runs, to stop before rejoining after a removal and to watch from
    /// the heartbeat (a monitor server's supervisor).
    work: Option<Supervisor>,
    /// `heartbeat_ms` as of the last look.
    heartbeat_seen: u64,
    /// The last look could not read the cluster (the database was away).
    lost_database: bool,
    register_retry: Backoff,
    stats: Arc<ActorStats>,
}

impl Membership {
    /// Starts the node's membership on the current arbiter: it registers at once (and
    /// again whenever it finds itself removed), heartbeats and validates.
    pub fn launch(db: Db, identity: Identity, registry: &ActorRegistry) -> Tracked<Membership> {
        Membership::launch_fenced(db, identity, None, registry)
    }

    /// [`Membership::launch`] for a node that runs monitors under a supervisor (`work`):
    /// it stops them before it rejoins after a removal, so a device is never monitored
    /// by two servers for longer than it takes the removed one to notice; and the
    /// heartbeat beats only while the supervisor answers, so a node whose supervisor
    /// died or hangs leaves the cluster instead of looking alive.
    pub fn launch_fenced(
        db: Db,
        identity: Identity,
        work: Option<Supervisor>,
        registry: &ActorRegistry,
    ) -> Tracked<Membership> {
        let stats = registry.register(KIND, identity.role.as_str());
        let membership = Membership {
            db,
            identity,
            shared: Arc::new(Shared {
                node_id: AtomicI64::new(0),
                heartbeat_ms: AtomicU64::new(DEFAULT_HEARTBEAT_MS),
                stop: AtomicBool::new(false),
            }),
            timing: timing_of(DEFAULT_VALIDATE_MS, 1),
            seen: HashMap::new(),
            nodes: Vec::new(),
            master: None,
            validating: false,
            registering: false,
            judge_after: Instant::now(),
            work,
            heartbeat_seen: DEFAULT_HEARTBEAT_MS,
            lost_database: false,
            register_retry: Backoff::new(REGISTER_RETRY_FIRST, REGISTER_RETRY_MAX),
            stats: Arc::clone(&stats),
        };
        Tracked::new(membership.start(), stats)
    }

    fn node_id(&self) -> i64 {
        self.shared.node_id.load(Ordering::SeqCst)
    }

    fn schedule_validation(&self, ctx: &mut Context<Self>) {
        ctx.run_later(self.timing.validate, |act, ctx| {
            act.validate(ctx);
            act.schedule_validation(ctx);
        });
    }

    /// Reads every node, updates what this node has seen, works out the master, and
    /// (as master) removes the dead.
    fn validate(&mut self, ctx: &mut Context<Self>) {
        if self.validating {
            return;
        }
        self.validating = true;
        let read = self.db.clone();
        let look = async move {
            read.run(|conn| Ok((db::config::get(conn)?, db::nodes::list(conn)?)))
                .await
        };
        ctx.spawn(look.into_actor(self).map(|outcome, act, ctx| {
            act.validating = false;
            let (config, nodes) = match outcome {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(node.id = act.node_id(), %error, "could not read the cluster");
                    act.lost_database = true;
                    return;
                }
            };
            let heartbeat_ms = u64::try_from(config.heartbeat_ms).unwrap_or(DEFAULT_HEARTBEAT_MS);
            act.shared
                .heartbeat_ms
                .store(heartbeat_ms, Ordering::Relaxed);
            // The rate this actor last looked with (the heartbeat thread may have
            // taken the new one already).
            let old_heartbeat_ms = std::mem::replace(&mut act.heartbeat_seen, heartbeat_ms);
            let timing = timing_of(config.validate_ms, config.missed_checks);
            if timing != act.timing || heartbeat_ms != old_heartbeat_ms {
                // Other nodes take new settings at their own pace: judge no one until
                // every node beats at the new rate, from fresh baselines.
                let slowest = Duration::from_millis(heartbeat_ms.max(old_heartbeat_ms));
                act.judge_after = Instant::now() + slowest * 2 + timing.validate;
                act.seen.clear();
                act.timing = timing;
            }
            if std::mem::take(&mut act.lost_database) {
                // Every node lost the database too: judge no one until each has had
                // time to beat again, from fresh baselines.
                let beat = Duration::from_millis(heartbeat_ms);
                act.judge_after = Instant::now() + beat * 2 + act.timing.validate;
                act.seen.clear();
                tracing::info!(
                    node.id = act.node_id(),
                    "the cluster is readable again; judging no node until every one has beaten"
                );
            }
            act.look(nodes, ctx);
        }));
    }

    fn look(&mut self, nodes: Vec<Node>, ctx: &mut Context<Self>) {
        let me = self.node_id();
        let judging = Instant::now() >= self.judge_after;
        let mut seen = HashMap::with_capacity(nodes.len());
        for node in &nodes {
            let misses = match self.seen.get(&node.id) {
                Some(before) if before.counter == node.counter && node.id != me && judging => {
                    before.misses + 1
                }
                _ => 0,
            };
            seen.insert(
                node.id,
                Seen {
                    counter: node.counter,
                    misses,
                },
            );
        }
        self.seen = seen;
        let missed_checks = self.timing.missed_checks;
        let live = |node: &Node| {
            self.seen
                .get(&node.id)
                .is_some_and(|s| s.misses < missed_checks)
        };
        let master = nodes.iter().find(|n| live(n)).map(|n| n.id);
        if master != self.master && me != 0 {
            if master == Some(me) {
                tracing::info!(node.id = me, "this node is now the master");
            } else if self.master == Some(me) {
                tracing::info!(node.id = me, master = ?master, "this node is no longer the master");
            }
        }
        self.master = master;
        let dead: Vec<(i64, i64, String)> = if me != 0 && master == Some(me) {
            nodes
                .iter()
                .filter(|n| n.id != me && !live(n))
                .map(|n| (n.id, n.counter, format!("{} at {}", n.role, n.address)))
                .collect()
        } else {
            Vec::new()
        };
        self.nodes = nodes;
        if !dead.is_empty() {
            self.remove(dead, ctx);
        }
    }

    /// Removes nodes whose counters stayed put, unless they beat meanwhile.
    fn remove(&mut self, dead: Vec<(i64, i64, String)>, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let me = self.node_id();
        let checks = self.timing.missed_checks;
        let removal = async move {
            db.run(move |conn| {
                let mut removed = Vec::new();
                for (id, counter, what) in dead {
                    if db::nodes::remove_if_still(conn, id, counter)? {
                        removed.push((id, counter, what));
                    }
                }
                Ok(removed)
            })
            .await
        };
        ctx.spawn(
            removal
                .into_actor(self)
                .map(move |outcome, act, _ctx| match outcome {
                    Ok(removed) => {
                        for (id, counter, what) in removed {
                            tracing::warn!(
                                node.id = me,
                                removed.id = id,
                                counter,
                                checks,
                                "removed node {id} ({what}): its heartbeat counter stopped"
                            );
                            act.seen.remove(&id);
                            act.nodes.retain(|n| n.id != id);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(node.id = me, %error, "could not remove dead nodes")
                    }
                }),
        );
    }
}

fn timing_of(validate_ms: i64, missed_checks: i32) -> Timing {
    Timing {
        validate: Duration::from_millis(u64::try_from(validate_ms).unwrap_or(3000).max(1)),
        missed_checks: u32::try_from(missed_checks).unwrap_or(1).max(1),
    }
}

fn register(conn: &mut DbConn, identity: &Identity) -> diesel::QueryResult<Node> {
    db::nodes::register(
        conn,
        &NewNode {
            role: identity.role.as_str(),
            address: &identity.address,
            server_id: identity.server_id,
            version: VERSION,
        },
    )
}

impl Actor for Membership {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (db, shared, me) = (self.db.clone(), Arc::clone(&self.shared), ctx.address());
        let running = me.clone();
        let watched = self.work.as_ref().map(|work| heartbeat::Watched {
            ping: work.ping.clone(),
            server_id: self.identity.server_id,
        });
        let spawned = std::thread::Builder::new()
            .name("vigil-heartbeat".into())
            .spawn(move || {
                heartbeat::run(
                    db,
                    shared,
                    watched,
                    move || running.connected(),
                    move |id| me.do_send(Register { removed: Some(id) }),
                )
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the heartbeat thread; stopping membership");
            ctx.stop();
            return;
        }
        ctx.notify(Register { removed: None });
        self.schedule_validation(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Why a registration did not happen.
#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("the monitor server's supervisor is gone ({0}), so it cannot be fenced; this node stays out of the cluster")]
    Unfenced(String),
}

/// Register this node: at start, and again when the heartbeat found its row gone.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct Register {
    /// The id this node had when it was removed as dead.
    removed: Option<i64>,
}

impl Handler<Register> for Membership {
    type Result = ();

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) {
        self.stats.record::<Register>();
        if self.registering || self.shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if let Some(was) = msg.removed {
            tracing::warn!(
                node.id = was,
                "this node was removed from the cluster as dead; registering again"
            );
            self.master = None;
            self.seen.clear();
        }
        self.registering = true;
        let db = self.db.clone();
        let identity = self.identity.clone();
        let fence = msg.removed.and(self.work.as_ref().map(|w| w.fence.clone()));
        let register = async move {
            let fenced = match fence {
                // Stop first: the master may already run these devices elsewhere. A
                // supervisor that is gone cannot be fenced, and a server without one
                // must not rejoin: it would be given devices it cannot run.
                Some(fence) => match fence.send(Fence).await {
                    Ok(_) => true,
                    Err(error) => return Err(RegisterError::Unfenced(error.to_string())),
                },
                None => false,
            };
            db.run(move |conn| {
                if let (true, Some(server_id)) = (fenced, identity.server_id) {
                    // What still names this server runs nowhere now: failover takes it.
                    let released = db::assignments::release_all_of_server(conn, server_id)?;
                    if released > 0 {
                        tracing::info!(
                            server.id = server_id,
                            released,
                            "released the devices this server no longer runs"
                        );
                    }
                }
                register(conn, &identity)
            })
            .await
            .map_err(RegisterError::Db)
        };
        ctx.spawn(register.into_actor(self).map(move |outcome, act, ctx| {
            act.registering = false;
            match outcome {
                Ok(node) => {
                    act.register_retry.reset();
                    act.shared.node_id.store(node.id, Ordering::SeqCst);
                    tracing::info!(
                        node.id = node.id,
                        was = msg.removed,
                        role = act.identity.role.as_str(),
                        address = %act.identity.address,
                        "joined the cluster"
                    );
                    act.validate(ctx);
                }
                Err(error) => {
                    let wait = act.register_retry.failed();
                    tracing::warn!(
                        %error,
                        retry_in_ms = wait.as_millis() as u64,
                        "could not join the cluster; retrying"
                    );
                    ctx.notify_later(msg, wait);
                }
            }
        }));
    }
}

/// Leave the cluster now (a clean shutdown): the row goes, so no one waits for this
/// node's counter to stop.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Membership {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<Leave>();
        self.shared.stop.store(true, Ordering::SeqCst);
        let id = self.shared.node_id.swap(0, Ordering::SeqCst);
        let db = self.db.clone();
        Box::pin(
            async move {
                if id != 0 {
                    if let Err(error) = db.run(move |conn| db::nodes::leave(conn, id)).await {
                        tracing::warn!(node.id = id, %error, "could not leave the cluster cleanly");
                    } else {
                        tracing::info!(node.id = id, "left the cluster");
                    }
                }
            }
            .into_actor(self)
            .map(|(), _act, ctx| ctx.stop()),
        )
    }
}

/// A node as this node sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: i64,
    pub role: String,
    pub address: String,
    pub server_id: Option<i64>,
    pub counter: i64,
    pub started_at: DateTime<Utc>,
    /// The database's time of its last heartbeat.
    pub last_advance: DateTime<Utc>,
    /// Its counter advanced within the last `missed_checks` looks.
    pub live: bool,
    pub master: bool,
    /// Its load as of its last heartbeat (`null` before its first report).
    pub memory_bytes: Option<i64>,
    pub cpu_percent: Option<f64>,
    pub threads: Option<i32>,
    /// The version of Vigil it runs (`null`: a version that did not record it).
    pub version: Option<String>,
}

/// The cluster as this node saw it at its last look.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The node answering; `null` while it is rejoining.
    pub this_node: Option<i64>,
    pub master: Option<i64>,
    pub heartbeat_ms: u64,
    pub validate_ms: u64,
    pub missed_checks: u32,
    pub nodes: Vec<NodeView>,
}

/// How this node sees the cluster.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ClusterView")]
pub struct GetCluster;

impl Handler<GetCluster> for Membership {
    type Result = MessageResult<GetCluster>;

    fn handle(&mut self, _: GetCluster, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<GetCluster>();
        let me = self.node_id();
        let missed_checks = self.timing.missed_checks;
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeView {
                id: n.id,
                role: n.role.clone(),
                address: n.address.clone(),
                server_id: n.server_id,
                counter: n.counter,
                started_at: n.started_at.and_utc(),
                last_advance: n.last_beat_at.and_utc(),
                live: self
                    .seen
                    .get(&n.id)
                    .is_some_and(|s| s.misses < missed_checks),
                master: self.master == Some(n.id),
                memory_bytes: n.memory_bytes,
                cpu_percent: n.cpu_percent,
                threads: n.threads,
                version: n.version.clone(),
            })
            .collect();
        MessageResult(ClusterView {
            this_node: (me != 0).then_some(me),
            master: self.master,
            heartbeat_ms: self.shared.heartbeat_ms.load(Ordering::Relaxed),
            validate_ms: u64::try_from(self.timing.validate.as_millis()).unwrap_or(u64::MAX),
            missed_checks,
            nodes,
        })
    }
}

/// Whether this node is the master now (for master-only tasks).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct IsMaster;

impl Handler<IsMaster> for Membership {
    type Result = bool;

    fn handle(&mut self, _: IsMaster, _ctx: &mut Context<Self>) -> bool {
        self.stats.record::<IsMaster>();
        let me = self.node_id();
        me != 0 && self.master == Some(me)
    }
}
