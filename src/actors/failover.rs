//! `Failover`: a master-only task. Every `validate_ms` the master looks for enabled
//! devices that are meant to be monitored and placed once, but owned by no member of
//! the cluster (their server was removed as dead, or released them when it fenced
//! itself), and starts them all in one scheduling pass on the live servers.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::membership::{GetCluster, Membership};
use super::registry::{ActorRegistry, ActorStats, Tracked};
use super::scheduler::{SchedulerActor, StartDevices};
use crate::db::{self, Db};

/// The kind under which the task appears in the actor registry.
pub const KIND: &str = "Failover";

/// The first look, and the next one when membership cannot answer.
const FIRST_LOOK: Duration = Duration::from_millis(500);

pub struct Failover {
    db: Db,
    scheduler: Tracked<SchedulerActor>,
    membership: Tracked<Membership>,
    stats: Arc<ActorStats>,
}

impl Failover {
    /// Starts the task on the current arbiter; it acts only while `membership` says
    /// this node is the master, through this node's `scheduler`.
    pub fn launch(
        db: Db,
        scheduler: Tracked<SchedulerActor>,
        membership: Tracked<Membership>,
        registry: &ActorRegistry,
    ) -> Tracked<Failover> {
        let stats = registry.register(KIND, "this node");
        let failover = Failover {
            db,
            scheduler,
            membership,
            stats: Arc::clone(&stats),
        };
        Tracked::new(failover.start(), stats)
    }
}

impl Actor for Failover {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify_later(Look, FIRST_LOOK);
    }
}

/// Re-home what needs it now (and look again after `validate_ms`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Look;

/// One look: on the master only, the orphaned devices are read and started. Answers
/// when to look next (`validate_ms`, as this node's membership last read it).
async fn look(
    db: Db,
    scheduler: Tracked<SchedulerActor>,
    membership: Tracked<Membership>,
) -> Duration {
    // Asked in-process first: the other nodes never query for orphans.
    let Ok(view) = membership.send(GetCluster).await else {
        return FIRST_LOOK;
    };
    let next = Duration::from_millis(view.validate_ms.max(1));
    if view.this_node.is_none() || view.master != view.this_node {
        return next;
    }
    let orphaned = match db.run(db::devices::orphaned).await {
        Ok(orphaned) => orphaned,
        Err(error) => {
            tracing::warn!(%error, "failover: could not look for devices to re-home");
            return next;
        }
    };
    if orphaned.is_empty() {
        return next;
    }
    let mut from: Vec<i64> = orphaned.iter().filter_map(|(_, server)| *server).collect();
    from.sort_unstable();
    from.dedup();
    let device_ids: Vec<i64> = orphaned.into_iter().map(|(id, _)| id).collect();
    tracing::warn!(
        devices = device_ids.len(),
        from_servers = ?from,
        "failover: re-homing devices whose server left the cluster"
    );
    match scheduler.send(StartDevices { device_ids }).await {
        Ok(Ok(report)) => tracing::info!(message = %report.message, "failover pass done"),
        Ok(Err(error)) => tracing::warn!(%error, "failover pass failed"),
        Err(error) => tracing::warn!(%error, "failover: scheduler unavailable"),
    }
    next
}

impl Handler<Look> for Failover {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Look, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<Look>();
        let pass = look(
            self.db.clone(),
            self.scheduler.clone(),
            self.membership.clone(),
        );
        Box::pin(pass.into_actor(self).map(|next, _act, ctx| {
            ctx.notify_later(Look, next);
        }))
    }
}
