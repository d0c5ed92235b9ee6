//! `Reconciler`: a master-only task that keeps what runs equal to what is wanted. At
//! every look (every `validate_ms`) the master
//!
//! 1. fails over: enabled devices that are meant to be monitored but owned by no
//!    member of the cluster (their server was removed as dead or released them when
//!    it fenced itself, or no server had room for them) are started in one re-homing
//!    pass on the live servers: one batch per server, first polls spread over one poll
//!    interval, a `moved` event each;
//! 2. reconciles, every [`RECONCILE_EVERY_LOOKS`] looks: what each live server runs
//!    (device ids with their epochs) is held against the assignments, wanted devices
//!    their server does not run are started again and copies no record names are
//!    stopped (`actors::scheduler` `reconcile`).
//!
//! Devices that found no server wait: they are tried again when capacity may have
//! appeared (a server joined or left, the limit changed, fewer devices are monitored),
//! not at every look. What reconciliation did is counted in [`ReconcileStats`], for
//! `GET /metrics`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::membership::{GetCluster, Membership};
use super::registry::{ActorRegistry, ActorStats, Tracked};
use super::scheduler::{Copy, Reconcile, SchedulerActor, StartDevices, StartReason, StartStatus};
use crate::db::{self, Db};

/// The kind under which the task appears in the actor registry.
pub const KIND: &str = "Reconciler";

/// Reconciliation runs at every look of the master: every validate pass.
pub const RECONCILE_EVERY_LOOKS: u32 = 1;

/// What reconciliation did on this node while it was master.
#[derive(Debug, Default)]
pub struct ReconcileStats {
    /// Devices started again because their server did not run them.
    pub started: AtomicU64,
    /// Copies stopped because no record named them, or their device was not wanted.
    pub stopped: AtomicU64,
}

/// The first look, and the next one when membership cannot answer.
const FIRST_LOOK: Duration = Duration::from_millis(500);

pub struct Reconciler {
    db: Db,
    scheduler: Tracked<SchedulerActor>,
    membership: Tracked<Membership>,
    stats: Arc<ActorStats>,
    waiting: Waiting,
    counts: Arc<ReconcileStats>,
    /// Copies of unwanted devices the last reconciliation saw (stopped if seen again).
    unwanted: HashSet<Copy>,
    /// Looks since the last reconciliation.
    looks: u32,
}

/// Room in the cluster as failover last saw it: member servers, the limit per server
/// and how many devices are monitored. Waiting devices are tried when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Capacity {
    servers: Vec<i64>,
    limit: i32,
    monitored: i64,
}

impl Capacity {
    fn read(conn: &mut db::DbConn) -> diesel::QueryResult<Capacity> {
        let mut servers: Vec<i64> = db::nodes::list(conn)?
            .into_iter()
            .filter_map(|n| n.server_id)
            .collect();
        servers.sort_unstable();
        Ok(Capacity {
            servers,
            limit: db::config::get(conn)?.max_monitors_per_server,
            monitored: db::assignments::count_monitored(conn)?,
        })
    }

    /// Some member server may have room.
    fn has_room(&self) -> bool {
        (self.servers.len() as i64).saturating_mul(i64::from(self.limit)) > self.monitored
    }
}

/// Devices no server took at the last pass, and the capacity just after it.
#[derive(Debug, Clone, Default)]
struct Waiting {
    devices: HashSet<i64>,
    capacity: Capacity,
    /// Looks since the waiting devices were last tried.
    looks: u32,
}

/// Waiting devices are tried again after this many looks while the cluster seems to
/// have room, even if nothing was seen to change (a change between a pass and the
/// look after it is not seen).
const RETRY_WAITING_EVERY: u32 = 10;

impl Reconciler {
    /// Starts the task on the current arbiter; it acts only while `membership` says
    /// this node is the master, through this node's `scheduler`, and counts what it did
    /// in `counts`.
    pub fn launch(
        db: Db,
        scheduler: Tracked<SchedulerActor>,
        membership: Tracked<Membership>,
        counts: Arc<ReconcileStats>,
        registry: &ActorRegistry,
    ) -> Tracked<Reconciler> {
        let stats = registry.register(KIND, "this node");
        let reconciler = Reconciler {
            db,
            scheduler,
            membership,
            stats: Arc::clone(&stats),
            waiting: Waiting::default(),
            counts,
            unwanted: HashSet::new(),
            looks: 0,
        };
        Tracked::new(reconciler.start(), stats)
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify_later(Look, FIRST_LOOK);
    }
}

/// Reconcile and re-home what needs it now (and look again after `validate_ms`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Look;

/// Reconciles through the scheduler; answers the unwanted copies to look at again.
async fn reconcile(
    scheduler: &Tracked<SchedulerActor>,
    counts: &ReconcileStats,
    unwanted: HashSet<Copy>,
) -> HashSet<Copy> {
    match scheduler.send(Reconcile { unwanted }).await {
        Ok(Ok(report)) => {
            counts
                .stopped
                .fetch_add(report.stopped.len() as u64, Ordering::Relaxed);
            if let Some(started) = &report.started {
                counts
                    .started
                    .fetch_add(started.started as u64, Ordering::Relaxed);
                tracing::info!(message = %started.message, "reconcile: restart pass done");
            }
            report.unwanted
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "reconcile pass failed");
            HashSet::new()
        }
        Err(error) => {
            tracing::warn!(%error, "reconcile: scheduler unavailable");
            HashSet::new()
        }
    }
}

/// What one look carries from the last and hands to the next.
struct State {
    waiting: Waiting,
    unwanted: HashSet<Copy>,
    looks: u32,
}

/// One look: on the master only, the orphaned devices are read and started, then
/// reconciliation (every [`RECONCILE_EVERY_LOOKS`]). Answers when to look next
/// (`validate_ms`, as this node's membership last read it) and what the next look
/// needs.
async fn look(
    db: Db,
    scheduler: Tracked<SchedulerActor>,
    membership: Tracked<Membership>,
    counts: Arc<ReconcileStats>,
    state: State,
) -> (Duration, State) {
    // Asked in-process first: the other nodes never query for orphans.
    let Ok(view) = membership.send(GetCluster).await else {
        return (FIRST_LOOK, state);
    };
    let next = Duration::from_millis(view.validate_ms.max(1));
    if view.this_node.is_none() || view.master != view.this_node {
        let idle = State {
            waiting: Waiting::default(),
            unwanted: HashSet::new(),
            looks: 0,
        };
        return (next, idle);
    }
    let State {
        waiting,
        mut unwanted,
        mut looks,
    } = state;
    // Failover first: a server that left must not wait for a reconciliation that asks
    // the others.
    let (next, waiting) = fail_over(&db, &scheduler, waiting, next).await;
    looks += 1;
    if looks >= RECONCILE_EVERY_LOOKS {
        looks = 0;
        unwanted = reconcile(&scheduler, &counts, unwanted).await;
    }
    (
        next,
        State {
            waiting,
            unwanted,
            looks,
        },
    )
}

/// Starts the devices no member owns; answers the devices left waiting.
async fn fail_over(
    db: &Db,
    scheduler: &Tracked<SchedulerActor>,
    waiting: Waiting,
    next: Duration,
) -> (Duration, Waiting) {
    let read = db
        .run(|conn| Ok((db::devices::orphaned(conn)?, Capacity::read(conn)?)))
        .await;
    let (orphaned, capacity) = match read {
        Ok(read) => read,
        Err(error) => {
            tracing::warn!(%error, "failover: could not look for devices to re-home");
            return (next, waiting);
        }
    };
    let retry_waiting = capacity != waiting.capacity
        || (capacity.has_room() && waiting.looks >= RETRY_WAITING_EVERY);
    let device_ids: Vec<i64> = orphaned
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| retry_waiting || !waiting.devices.contains(id))
        .collect();
    if device_ids.is_empty() {
        // Keep only those still orphaned: one started or stopped meanwhile is done.
        let still: HashSet<i64> = orphaned.iter().map(|(id, _)| *id).collect();
        let devices = waiting.devices.intersection(&still).copied().collect();
        return (
            next,
            Waiting {
                devices,
                capacity: waiting.capacity,
                looks: waiting.looks.saturating_add(1),
            },
        );
    }
    let mut from: Vec<i64> = orphaned.iter().filter_map(|(_, server)| *server).collect();
    from.sort_unstable();
    from.dedup();
    tracing::warn!(
        devices = device_ids.len(),
        from_servers = ?from,
        "failover: starting devices that no member of the cluster monitors"
    );
    let report = scheduler
        .send(StartDevices {
            device_ids,
            reason: StartReason::Rehome,
        })
        .await;
    match report {
        Ok(Ok(report)) => {
            tracing::info!(message = %report.message, "failover pass done");
            let devices: HashSet<i64> = report
                .results
                .iter()
                .filter(|r| r.status == StartStatus::Failed)
                .map(|r| r.device_id)
                .chain(waiting.devices.iter().copied().filter(|_| !retry_waiting))
                .collect();
            if !devices.is_empty() {
                tracing::warn!(
                    devices = devices.len(),
                    "failover: devices wait for a server with room"
                );
            }
            // Read after the pass: what it placed is not a change to wake up for.
            let capacity = db.run(Capacity::read).await.unwrap_or(capacity);
            let looks = if retry_waiting { 0 } else { waiting.looks };
            (
                next,
                Waiting {
                    devices,
                    capacity,
                    looks,
                },
            )
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "failover pass failed");
            (next, waiting)
        }
        Err(error) => {
            tracing::warn!(%error, "failover: scheduler unavailable");
            (next, waiting)
        }
    }
}

impl Handler<Look> for Reconciler {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Look, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<Look>();
        let state = State {
            waiting: self.waiting.clone(),
            unwanted: std::mem::take(&mut self.unwanted),
            looks: self.looks,
        };
        let pass = look(
            self.db.clone(),
            self.scheduler.clone(),
            self.membership.clone(),
            Arc::clone(&self.counts),
            state,
        );
        Box::pin(pass.into_actor(self).map(|(next, state), act, ctx| {
            act.waiting = state.waiting;
            act.unwanted = state.unwanted;
            act.looks = state.looks;
            ctx.notify_later(Look, next);
        }))
    }
}
