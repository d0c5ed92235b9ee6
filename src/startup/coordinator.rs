//! The coordinator node: REST API, `SchedulerActor`, retention of old samples, actor
//! registry.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use super::process::bind;
use crate::actors::membership::{Identity, Leave, Membership, Role};
use crate::actors::queue::{CollectionQueue, QueueSettings};
use crate::actors::reconciler::{ReconcileStats, Reconciler};
use crate::actors::registry::{ActorRegistry, Tracked};
use crate::actors::retention::{Retention, PRUNE_EVERY};
use crate::actors::scheduler::SchedulerActor;
use crate::auth::ClusterToken;
use crate::db::Db;
use crate::error::StartupError;
use crate::http::coordinator::{self, AppState};
use crate::http::extract;
use crate::http::rate::{RateLimit, RateLimiter};
use crate::probe::{self, AddressPolicy};
use crate::remote::MonitorServerClient;

/// What the public API enforces besides tokens.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorOptions {
    /// Device addresses in networks it denies are refused when saved.
    pub address_policy: AddressPolicy,
    /// Requests per token.
    pub rate_limit: RateLimit,
    /// How the collection queue's worker claims, stops and keeps jobs.
    pub queue: QueueSettings,
}

pub struct Coordinator {
    address: SocketAddr,
    server: Server,
    scheduler: Tracked<SchedulerActor>,
    retention: Tracked<Retention>,
    membership: Tracked<Membership>,
    _reconciler: Tracked<Reconciler>,
    registry: ActorRegistry,
}

impl Coordinator {
    /// Binds `listen`, starts the scheduler on the current arbiter and the HTTP workers.
    /// Calls to monitor servers carry `cluster`.
    pub fn build(
        db: Db,
        listen: SocketAddr,
        cluster: ClusterToken,
        options: CoordinatorOptions,
    ) -> Result<Self, StartupError> {
        let (listener, address) = bind(listen)?;
        let registry = ActorRegistry::new();
        let scheduler = SchedulerActor::new(db.clone(), &cluster, &registry).launch();
        let membership = Membership::launch(
            db.clone(),
            Identity {
                role: Role::Coordinator,
                address: address.to_string(),
                server_id: None,
            },
            &registry,
        );
        let retention = Retention::new(db.clone(), PRUNE_EVERY)
            .on_master_of(membership.clone())
            .launch(&registry);
        let reconciled = Arc::new(ReconcileStats::default());
        let reconciler = Reconciler::launch(
            db.clone(),
            scheduler.clone(),
            membership.clone(),
            Arc::clone(&reconciled),
            &registry,
        );
        // Collection jobs poll devices (snapshot) and scan ranges (discovery) under the
        // same address policy as the monitor servers.
        let queue = CollectionQueue::new(
            db.clone(),
            probe::standard(options.address_policy.clone()),
            options.address_policy.clone(),
            membership.clone(),
            options.queue.clone(),
        )
        .launch(&registry);
        let state = web::Data::new(AppState {
            db,
            scheduler: scheduler.clone(),
            membership: membership.clone(),
            policy: options.address_policy,
            reconciled,
            tokens: Default::default(),
            live: Default::default(),
            lists: Default::default(),
            queue: queue.clone(),
            queue_settings: options.queue,
        });
        let limiter = web::Data::new(RateLimiter::new(options.rate_limit));
        let registry_data = web::Data::new(registry.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(limiter.clone())
                .app_data(registry_data.clone())
                .app_data(web::Data::new(MonitorServerClient::new(&cluster)))
                .configure(extract::install)
                .configure(coordinator::routes)
                .default_service(web::to(extract::no_route))
        })
        .disable_signals()
        .listen(listener)
        .map_err(StartupError::Server)?
        .run();
        tracing::info!(%address, "coordinator listening");
        Ok(Coordinator {
            address,
            server,
            scheduler,
            retention,
            membership,
            _reconciler: reconciler,
            registry,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn scheduler(&self) -> Tracked<SchedulerActor> {
        self.scheduler.clone()
    }

    /// The task that deletes samples past retention.
    pub fn retention(&self) -> Tracked<Retention> {
        self.retention.clone()
    }

    pub fn registry(&self) -> &ActorRegistry {
        &self.registry
    }

    /// This node's membership of the cluster.
    pub fn membership(&self) -> Tracked<Membership> {
        self.membership.clone()
    }

    /// Serves until the server is stopped, then leaves the cluster.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let _ = self.membership.send(Leave).await;
        served
    }
}
