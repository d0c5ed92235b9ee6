//! `SchedulerActor` (coordinator): places monitors on monitor servers and takes them
//! off again, as seed 000 describes.
//!
//! - *Start*: walk the servers (in id order) from the persisted rotating index
//!   `config.monitor_server_current`; skip a server that is down or at its limit; on
//!   success record the owner and advance the index past the chosen server.
//! - *Stop*: ask the owner first, then every other server that runs a copy (found by
//!   asking all servers at once what they run).
//! - *Config*: save, then broadcast to every server.
//! - *Device change*: save (done by the caller), then route to the monitor of the device.
//! - *Device deletion*: stop its monitors, then delete it.
//! - *Forgetting a server* that is gone for good: release its devices.
//!
//! These operations are handled one at a time (`AtomicResponse`),
//! so the rotating index and the ownership records never see two of them interleaved.
//! Reads that need no ordering (listing servers, monitor statuses) do not go through here.

mod balance;
mod changes;
mod error;
mod reconcile;
mod start;
mod stop;

use std::sync::Arc;

use actix::prelude::*;

use super::registry::{ActorRegistry, ActorStats, Tracked};
use crate::auth::ClusterToken;
use crate::db::models::ConfigChanges;
use crate::db::Db;
use crate::remote::MonitorServerClient;

pub use self::changes::{
    ConfigReport, DeleteOutcome, ForgetOutcome, RouteOutcome, ServerApplied, ServerUnreached,
};
pub use self::error::SchedulerError;
pub use self::reconcile::{Copy, ReconcileReport};
pub use self::start::{StartReason, StartReport, StartResult, StartStatus};
pub use self::stop::{StopReport, StopResult, StopStatus};

/// The kind under which the scheduler appears in the actor registry.
pub const KIND: &str = "SchedulerActor";

pub struct SchedulerActor {
    db: Db,
    client: MonitorServerClient,
    stats: Arc<ActorStats>,
}

impl SchedulerActor {
    pub fn new(db: Db, cluster: &ClusterToken, registry: &ActorRegistry) -> Self {
        SchedulerActor {
            db,
            client: MonitorServerClient::new(cluster),
            stats: registry.register(KIND, "1"),
        }
    }

    /// Starts the actor on the current arbiter and returns its tracked address.
    pub fn launch(self) -> Tracked<SchedulerActor> {
        let stats = Arc::clone(&self.stats);
        Tracked::new(self.start(), stats)
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;
}

/// What every scheduler operation returns.
type Outcome<T> = AtomicResponse<SchedulerActor, Result<T, SchedulerError>>;

impl SchedulerActor {
    /// Runs one operation to its end before the next message is taken: the mailbox waits
    /// while monitor servers are called, so operations never interleave.
    fn one_at_a_time<T, F, Fut>(&self, operation: F) -> Outcome<T>
    where
        F: FnOnce(Db, MonitorServerClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, SchedulerError>> + 'static,
        T: 'static,
    {
        let future = operation(self.db.clone(), self.client.clone());
        AtomicResponse::new(Box::pin(future.into_actor(self)))
    }
}

/// Start monitoring these devices (in this order).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<StartReport, SchedulerError>")]
pub struct StartDevices {
    pub device_ids: Vec<i64>,
    /// Asked for, or failover and reconciliation mending: these spread their first
    /// polls over one poll interval, start only devices still wanted, and record an
    /// event for each.
    pub reason: StartReason,
}

impl Handler<StartDevices> for SchedulerActor {
    type Result = Outcome<StartReport>;

    fn handle(&mut self, msg: StartDevices, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<StartDevices>();
        self.one_at_a_time(|db, client| async move {
            start::start_devices(&db, &client, msg.device_ids, msg.reason).await
        })
    }
}

/// Stop monitoring these devices.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<StopReport, SchedulerError>")]
pub struct StopDevices {
    pub device_ids: Vec<i64>,
}

impl Handler<StopDevices> for SchedulerActor {
    type Result = Outcome<StopReport>;

    fn handle(&mut self, msg: StopDevices, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<StopDevices>();
        self.one_at_a_time(|db, client| async move {
            stop::stop_devices(&db, &client, msg.device_ids).await
        })
    }
}

/// Change the config (only the fields given), then broadcast it to every server.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ConfigReport, SchedulerError>")]
pub struct ApplyConfig {
    pub changes: ConfigChanges,
}

impl Handler<ApplyConfig> for SchedulerActor {
    type Result = Outcome<ConfigReport>;

    fn handle(&mut self, msg: ApplyConfig, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<ApplyConfig>();
        self.one_at_a_time(|db, client| async move {
            changes::apply_config(&db, &client, msg.changes).await
        })
    }
}

/// A device was saved; hand its stored data to the monitor that watches it. A device
/// saved as disabled is stopped instead.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<RouteOutcome, SchedulerError>")]
pub struct RouteDeviceUpdate {
    pub device_id: i64,
}

impl Handler<RouteDeviceUpdate> for SchedulerActor {
    type Result = Outcome<RouteOutcome>;

    fn handle(&mut self, msg: RouteDeviceUpdate, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<RouteDeviceUpdate>();
        self.one_at_a_time(|db, client| async move {
            changes::route_device_update(&db, &client, msg.device_id).await
        })
    }
}

/// Stop the device's monitors, then delete it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<DeleteOutcome, SchedulerError>")]
pub struct DeleteDevice {
    pub device_id: i64,
}

impl Handler<DeleteDevice> for SchedulerActor {
    type Result = Outcome<DeleteOutcome>;

    fn handle(&mut self, msg: DeleteDevice, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<DeleteDevice>();
        self.one_at_a_time(|db, client| async move {
            changes::delete_device(&db, &client, msg.device_id).await
        })
    }
}

/// Forget a monitor server that is gone for good.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<ForgetOutcome, SchedulerError>")]
pub struct ForgetServer {
    pub server_id: i64,
}

impl Handler<ForgetServer> for SchedulerActor {
    type Result = Outcome<ForgetOutcome>;

    fn handle(&mut self, msg: ForgetServer, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<ForgetServer>();
        self.one_at_a_time(|db, client| async move {
            changes::forget_server(&db, &client, msg.server_id).await
        })
    }
}

/// Hold what every member server runs against the assignments, and mend the
/// difference (see `reconcile`). `unwanted` is what the last pass answered in
/// [`ReconcileReport::unwanted`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ReconcileReport, SchedulerError>")]
pub struct Reconcile {
    pub unwanted: std::collections::HashSet<Copy>,
}

impl Handler<Reconcile> for SchedulerActor {
    type Result = Outcome<ReconcileReport>;

    fn handle(&mut self, msg: Reconcile, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.record::<Reconcile>();
        self.one_at_a_time(|db, client| async move {
            reconcile::reconcile(&db, &client, msg.unwanted).await
        })
    }
}
