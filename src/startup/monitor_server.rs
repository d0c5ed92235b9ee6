//! A monitor-server node: registers itself in `monitor_servers`, runs the
//! `MonitorServerActor` and its small HTTP API, which answers only callers that carry
//! the cluster token (`/healthz` excepted).

use std::net::SocketAddr;

use actix::{Arbiter, ArbiterHandle};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use super::process::bind;
use std::sync::Arc;

use crate::actors::device_monitor::{PollStats, Reporting};
use crate::actors::membership::{Identity, Leave, Membership, Role, Supervisor};
use crate::actors::messages::{Fence, StaleMonitors};
use crate::actors::monitor_server::{GetInfo, MonitorServerActor};
use crate::actors::reconciler::{ReconcileStats, Reconciler};
use crate::actors::registry::{ActorRegistry, Tracked};
use crate::actors::remote_writer::{RemoteWriteSettings, RemoteWriter};
use crate::actors::retention::{Retention, PRUNE_EVERY};
use crate::actors::sample_queue::SampleQueue;
use crate::actors::scheduler::{SchedulerActor, StartDevices, StartReason};
use crate::actors::writer::{Flush, MetricsWriter, ReportStaleTo, WriterSettings};
use crate::auth::ClusterToken;
use crate::config::{advertised_address, default_poll_threads};
use crate::db::{self, Db};
use crate::error::StartupError;
use crate::http::auth::require_cluster_token;
use crate::http::extract;
use crate::http::monitor_server::{self, MonitorServerState};
use crate::probe::ProbeFactory;

/// Coordinators are the only callers; two workers keep up with them.
const HTTP_WORKERS: usize = 2;

pub struct MonitorServerNode {
    server_id: i64,
    address: SocketAddr,
    server: Server,
    actor: Tracked<MonitorServerActor>,
    writer: Tracked<MetricsWriter>,
    membership: Tracked<Membership>,
    /// This node's scheduler (failover uses it; a draining stop hands devices over with it).
    scheduler: Tracked<SchedulerActor>,
    /// Hand the devices to the other servers when stopped (see [`Self::drain_on_stop`]).
    drain: bool,
    /// Master-only: they act when this server is the master.
    _retention: Tracked<Retention>,
    _reconciler: Tracked<Reconciler>,
    /// Sends the samples on, when a remote-write endpoint is set.
    _remote: Option<Tracked<RemoteWriter>>,
    registry: ActorRegistry,
    /// The thread the supervisor runs on.
    supervisor_arbiter: Arbiter,
    /// The threads its monitors poll on.
    poll_arbiters: Vec<Arbiter>,
}

/// How a monitor server runs, besides where it listens and which cluster it joins.
#[derive(Debug, Clone)]
pub struct MonitorServerOptions {
    pub writer: WriterSettings,
    /// Threads the monitors poll on (at least 1).
    pub poll_threads: usize,
    /// Where every sample also goes, if anywhere.
    pub remote_write: Option<RemoteWriteSettings>,
}

impl Default for MonitorServerOptions {
    fn default() -> Self {
        MonitorServerOptions {
            writer: WriterSettings::default(),
            poll_threads: default_poll_threads(),
            remote_write: None,
        }
    }
}

impl MonitorServerNode {
    /// Binds `listen`, registers under the advertised address (idempotent: a restarted
    /// server keeps its id), and starts the supervisor with the stored config.
    pub async fn build(
        db: Db,
        listen: SocketAddr,
        advertise: Option<&str>,
        cluster: ClusterToken,
        probes: ProbeFactory,
    ) -> Result<Self, StartupError> {
        Self::build_with(
            db,
            listen,
            advertise,
            cluster,
            probes,
            MonitorServerOptions::default(),
        )
        .await
    }

    /// [`MonitorServerNode::build`] with the writer and poll threads `options` says.
    pub async fn build_with(
        db: Db,
        listen: SocketAddr,
        advertise: Option<&str>,
        cluster: ClusterToken,
        probes: ProbeFactory,
        options: MonitorServerOptions,
    ) -> Result<Self, StartupError> {
        let (listener, address) = bind(listen)?;
        let (host, port) = advertised_address(advertise, address)?;
        let advertised = format!("{host}:{port}");
        let (row, config) = db
            .run(move |conn| {
                Ok((
                    db::monitor_servers::register(conn, &host, port)?,
                    db::config::get(conn)?,
                ))
            })
            .await?;
        let server_id = row.id;
        let registry = ActorRegistry::new();
        let samples = Arc::new(SampleQueue::new());
        let mut writer =
            MetricsWriter::new(db.clone(), options.writer).taking_from(Arc::clone(&samples));
        let remote = options.remote_write.map(|settings| {
            tracing::info!(server.id = server_id, url = %settings.url, "samples also go by remote write");
            let remote = RemoteWriter::new(db.clone(), settings);
            let stats = remote.stats();
            (remote.launch(&registry, server_id), stats)
        });
        if let Some((remote, _)) = &remote {
            writer = writer.sending_to(remote.recipient());
        }
        let writer_stats = writer.stats();
        let writer = writer.launch(&registry, server_id);
        let polls = Arc::new(PollStats::default());
        // The supervisor gets a thread of its own and its monitors a pool of them: the
        // membership heartbeat watches all of them, polling uses every core, and a
        // monitor that blocks cannot hold up the node's other actors.
        let supervisor_arbiter = Arbiter::new();
        let poll_arbiters: Vec<Arbiter> = (0..options.poll_threads.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let actor =
            MonitorServerActor::new(server_id, config.monitor_config(), probes, registry.clone())
                .with_reporting(Reporting {
                    samples: Some(samples),
                    changes: Some(writer.recipient()),
                    polls: Arc::clone(&polls),
                })
                .with_poll_threads(poll_arbiters.iter().map(Arbiter::handle).collect())
                .launch_on(&supervisor_arbiter.handle());
        writer.do_send(ReportStaleTo(actor.recipient::<StaleMonitors>()));
        let membership = Membership::launch_fenced(
            db.clone(),
            Identity {
                role: Role::MonitorServer,
                address: advertised.clone(),
                server_id: Some(server_id),
            },
            Some(Supervisor {
                fence: actor.recipient(),
                ping: actor.recipient(),
            }),
            &registry,
        );
        // Master-only tasks run on whichever node is master, this one included.
        let scheduler = SchedulerActor::new(db.clone(), &cluster, &registry).launch();
        let reconciled = Arc::new(ReconcileStats::default());
        let reconciler = Reconciler::launch(
            db.clone(),
            scheduler.clone(),
            membership.clone(),
            Arc::clone(&reconciled),
            &registry,
        );
        let retention = Retention::new(db.clone(), PRUNE_EVERY)
            .on_master_of(membership.clone())
            .launch(&registry);
        let state = web::Data::new(MonitorServerState {
            server_id,
            actor: actor.clone(),
            polls,
            writer: writer_stats,
            reconciled,
            remote_write: remote.as_ref().map(|(_, stats)| Arc::clone(stats)),
        });
        let registry_data = web::Data::new(registry.clone());
        let cluster = web::Data::new(cluster);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(require_cluster_token))
                .app_data(state.clone())
                .app_data(registry_data.clone())
                .app_data(cluster.clone())
                .configure(extract::install)
                .configure(monitor_server::routes)
                .default_service(web::to(extract::no_route))
        })
        .workers(HTTP_WORKERS)
        .disable_signals()
        .listen(listener)
        .map_err(StartupError::Server)?
        .run();
        tracing::info!(
            server.id = server_id,
            %address,
            %advertised,
            poll_threads = poll_arbiters.len(),
            "monitor server listening"
        );
        Ok(MonitorServerNode {
            server_id,
            address,
            server,
            actor,
            writer,
            membership,
            scheduler,
            drain: false,
            _retention: retention,
            _reconciler: reconciler,
            _remote: remote.map(|(remote, _)| remote),
            registry,
            supervisor_arbiter,
            poll_arbiters,
        })
    }

    pub fn server_id(&self) -> i64 {
        self.server_id
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn actor(&self) -> Tracked<MonitorServerActor> {
        self.actor.clone()
    }

    pub fn registry(&self) -> &ActorRegistry {
        &self.registry
    }

    /// The arbiter (thread) the supervisor runs on.
    pub fn supervisor_arbiter(&self) -> ArbiterHandle {
        self.supervisor_arbiter.handle()
    }

    /// When stopped (SIGTERM), hand every device this server runs to the other servers
    /// before exiting, instead of leaving them to the master's failover. Not for `vigil
    /// serve`, whose servers all stop together.
    pub fn drain_on_stop(mut self) -> Self {
        self.drain = true;
        self
    }

    /// Once the API is closed (the server looks down to every scheduler), places this
    /// server's devices on the others (claims move their epochs, so what its monitors
    /// still write is refused), then stops its monitors.
    async fn hand_off(
        server_id: i64,
        actor: &Tracked<MonitorServerActor>,
        scheduler: &Tracked<SchedulerActor>,
    ) {
        let Ok(info) = actor.send(GetInfo).await else {
            return;
        };
        if info.device_ids.is_empty() {
            return;
        }
        tracing::info!(
            server.id = server_id,
            devices = info.device_ids.len(),
            "draining: handing every device to the other servers"
        );
        let handed = scheduler
            .send(StartDevices {
                device_ids: info.device_ids,
                reason: StartReason::Rehome,
            })
            .await;
        match handed {
            Ok(Ok(report)) => tracing::info!(
                server.id = server_id,
                moved = report.started,
                already_elsewhere = report.already_running,
                failed = report.failed,
                "devices handed over"
            ),
            Ok(Err(error)) => {
                tracing::error!(server.id = server_id, %error, "could not hand the devices over")
            }
            Err(error) => {
                tracing::error!(server.id = server_id, %error, "scheduler unavailable for the hand-over")
            }
        }
        let _ = actor.send(Fence).await;
    }

    /// Serves until the server is stopped, hands its devices over when draining, then
    /// writes what the metrics writer still holds and leaves the cluster.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if self.drain {
            Self::hand_off(self.server_id, &self.actor, &self.scheduler).await;
        }
        match self.writer.send(Flush).await {
            Ok(Ok(())) => tracing::info!(server.id = self.server_id, "metrics written"),
            Ok(Err(error)) => tracing::warn!(
                server.id = self.server_id,
                %error,
                "metrics still buffered at shutdown could not be written"
            ),
            Err(_) => {}
        }
        let _ = self.membership.send(Leave).await;
        self.supervisor_arbiter.stop();
        for arbiter in &self.poll_arbiters {
            arbiter.stop();
        }
        served
    }
}
