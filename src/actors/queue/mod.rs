//! `CollectionQueue` (every coordinator): the collection queue's worker. Every
//! [`QueueSettings::tick`] it claims, for its node, the waiting jobs its lanes have
//! slots for (one write transaction with the lanes locked: the limits hold across the
//! cluster), runs them on its own thread (`run`), stops the ones asked to stop at their
//! next safe point (and cancels one that has not ended after `stop_deadline`), and,
//! while its node is the master, marks `interrupted` the runs of nodes that left the
//! cluster and queues them again at the head of their lane (where the lane says so), and fires the scheduled
//! collectors whose due time has come (`schedule`).

pub mod discovery;
pub mod export;
pub mod report;
pub mod run;
pub mod schedule;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;

use self::run::Environment;
use super::membership::{GetCluster, Membership};
use super::registry::{ActorRegistry, ActorStats, Tracked};
use crate::db::queue::{self, Ending, Job, STOPPED};
use crate::db::{self, Db};
use crate::probe::ProbeFactory;

/// The kind under which the queue appears in the actor registry.
pub const KIND: &str = "CollectionQueue";
/// Ended jobs deleted per statement by the retention pass.
const RETENTION_CHUNK: i64 = 1_000;
/// How often ended jobs past their retention are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How often waiting jobs are claimed and stops looked for.
    pub tick: Duration,
    /// How long a job asked to stop has to end at a safe point before it is cancelled.
    pub stop_deadline: Duration,
    /// How long ended jobs are kept.
    pub retention: Duration,
    /// How late a scheduled due time may be found by the master and still count as on
    /// time; later ones are missed and go by their collector's misfire policy.
    pub misfire_grace: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            tick: Duration::from_secs(1),
            stop_deadline: Duration::from_secs(10),
            retention: Duration::from_secs(30 * 86_400),
            misfire_grace: Duration::from_secs(60),
        }
    }
}

/// A job this node runs.
struct Running {
    handle: SpawnHandle,
    stop: Arc<AtomicBool>,
    /// When this node saw the stop asked for.
    stop_seen: Option<Instant>,
}

pub struct CollectionQueue {
    env: Environment,
    membership: Tracked<Membership>,
    settings: QueueSettings,
    running: HashMap<i64, Running>,
    /// A pass is under way: the next tick does nothing.
    busy: bool,
    registered: Option<Arc<ActorStats>>,
}

impl CollectionQueue {
    pub fn new(
        db: Db,
        probes: ProbeFactory,
        policy: crate::probe::AddressPolicy,
        membership: Tracked<Membership>,
        settings: QueueSettings,
    ) -> Self {
        CollectionQueue {
            env: Environment { db, probes, policy },
            membership,
            settings,
            running: HashMap::new(),
            busy: false,
            registered: None,
        }
    }

    pub fn launch(mut self, registry: &ActorRegistry) -> Tracked<CollectionQueue> {
        let stats = registry.register(KIND, "this node");
        self.registered = Some(Arc::clone(&stats));
        Tracked::new(self.start(), stats)
    }

    fn record<M>(&self) {
        if let Some(stats) = &self.registered {
            stats.record::<M>();
        }
    }

    /// One pass: stops, claims, and on the master the runs of nodes that left.
    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let membership = self.membership.clone();
        let db = self.env.db.clone();
        let grace = i64::try_from(self.settings.misfire_grace.as_millis()).unwrap_or(i64::MAX);
        let work = async move {
            let cluster = membership.send(GetCluster).await.ok()?;
            let node = cluster.this_node?;
            let live: Vec<i64> = cluster
                .nodes
                .iter()
                .filter(|n| n.live)
                .map(|n| n.id)
                .collect();
            let master = cluster.master == Some(node);
            let now = Utc::now().timestamp_millis();
            let outcome = db
                .run(move |conn| {
                    let interrupted = if master {
                        schedule::fire_due(conn, now, grace)?;
                        queue::interrupt_orphans(conn, &live, now)?
                    } else {
                        Vec::new()
                    };
                    let stops = queue::stops_asked(conn, node)?;
                    let claimed = queue::claim(conn, node, now)?;
                    Ok((interrupted, stops, claimed))
                })
                .await;
            Some((node, outcome))
        };
        ctx.spawn(work.into_actor(self).map(|outcome, act, ctx| {
            act.busy = false;
            let Some((node, outcome)) = outcome else {
                return;
            };
            let (interrupted, stops, claimed) = match outcome {
                Ok(done) => done,
                Err(error) => {
                    tracing::warn!(%error, "collection queue: cannot claim or look for stops");
                    return;
                }
            };
            for job in interrupted {
                tracing::warn!(
                    job.id = job.id,
                    node.id = job.node_id,
                    "collection job interrupted: its node left the cluster"
                );
            }
            for (id, _) in stops {
                act.stop(id, node, ctx);
            }
            for job in claimed {
                act.begin(job, node, ctx);
            }
        }));
    }

    /// Runs `job`, claimed by (or forced on) `node`.
    fn begin(&mut self, job: Job, node: i64, ctx: &mut Context<Self>) {
        if self.running.contains_key(&job.id) {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let env = self.env.clone();
        let id = job.id;
        let flag = Arc::clone(&stop);
        let work = async move {
            let collector = env.db.run(move |conn| queue::job_in(conn, id, None)).await;
            let collector = match collector {
                Ok(Some((_, collector))) => collector,
                Ok(None) => return None,
                Err(error) => {
                    return Some(Ending {
                        status: queue::FAILED,
                        error: Some(error.to_string()),
                        output: None,
                    })
                }
            };
            tracing::info!(
                job.id = id,
                collector.id = collector.id,
                kind = %collector.kind,
                lane = %job.lane,
                forced = job.forced,
                "collection job started"
            );
            Some(run::run(env, job, collector, flag).await)
        };
        let handle = ctx.spawn(work.into_actor(self).map(move |ending, act, _ctx| {
            act.running.remove(&id);
            if let Some(ending) = ending {
                act.end(id, node, ending);
            }
        }));
        self.running.insert(
            id,
            Running {
                handle,
                stop,
                stop_seen: None,
            },
        );
    }

    /// A stop was asked for job `id`: at the next safe point, or now if the deadline
    /// has passed.
    fn stop(&mut self, id: i64, node: i64, ctx: &mut Context<Self>) {
        let deadline = self.settings.stop_deadline;
        let Some(running) = self.running.get_mut(&id) else {
            return;
        };
        running.stop.store(true, Ordering::Relaxed);
        let seen = *running.stop_seen.get_or_insert_with(Instant::now);
        if seen.elapsed() < deadline {
            return;
        }
        let handle = running.handle;
        self.running.remove(&id);
        ctx.cancel_future(handle);
        tracing::warn!(
            job.id = id,
            deadline_s = deadline.as_secs(),
            "collection job did not stop at a safe point in time: cancelled"
        );
        self.end(
            id,
            node,
            Ending {
                status: STOPPED,
                error: Some(format!(
                    "cancelled: it had not stopped {} s after it was asked to",
                    deadline.as_secs()
                )),
                output: None,
            },
        );
    }

    /// Records how job `id` ended.
    fn end(&self, id: i64, node: i64, ending: Ending) {
        let db = self.env.db.clone();
        let status = ending.status;
        let error = ending.error.clone();
        actix::spawn(async move {
            let now = Utc::now().timestamp_millis();
            match db
                .run(move |conn| queue::finish(conn, id, node, now, &ending))
                .await
            {
                Ok(true) => tracing::info!(job.id = id, status, error, "collection job ended"),
                Ok(false) => tracing::warn!(
                    job.id = id,
                    status,
                    "collection job ended, but it was no longer this node's (interrupted meanwhile)"
                ),
                Err(error) => {
                    tracing::error!(job.id = id, %error, "cannot record how a collection job ended")
                }
            }
        });
    }
}

impl Actor for CollectionQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.tick, |act, ctx| act.pass(ctx));
        let (db, retention) = (self.env.db.clone(), self.settings.retention);
        ctx.run_interval(RETENTION_EVERY, move |_act, _ctx| {
            let db = db.clone();
            actix::spawn(async move {
                let before = Utc::now().timestamp_millis()
                    - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                let deleted = db
                    .run(move |conn| {
                        let mut deleted = 0;
                        loop {
                            let n = queue::delete_ended_before(conn, before, RETENTION_CHUNK)?;
                            deleted += n;
                            if n < RETENTION_CHUNK as usize {
                                return Ok(deleted);
                            }
                        }
                    })
                    .await;
                match deleted {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(jobs = n, "ended collection jobs past retention deleted")
                    }
                    Err(error) => tracing::warn!(%error, "cannot delete old collection jobs"),
                }
            });
        });
    }
}

/// Claim and look for stops now (a job was queued or a stop asked through this node).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Pass;

impl Handler<Pass> for CollectionQueue {
    type Result = ();

    fn handle(&mut self, _: Pass, ctx: &mut Context<Self>) {
        self.record::<Pass>();
        self.pass(ctx);
    }
}

/// Run `job`, forced on `node` (this one) through the API.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RunForced {
    pub job: Job,
    pub node: i64,
}

impl Handler<RunForced> for CollectionQueue {
    type Result = ();

    fn handle(&mut self, msg: RunForced, ctx: &mut Context<Self>) {
        self.record::<RunForced>();
        self.begin(msg.job, msg.node, ctx);
    }
}

/// A job's state as the API shows it: `stuck` for a running job asked to stop that
/// its node has not ended within the deadline and a tick (its node is blocked or gone).
pub fn shown_status(job: &Job, now_ms: i64, settings: &QueueSettings) -> String {
    let deadline =
        i64::try_from((settings.stop_deadline + settings.tick * 5).as_millis()).unwrap_or(i64::MAX);
    match (job.status.as_str(), job.stop_requested_at) {
        (queue::RUNNING, Some(asked)) if now_ms - asked > deadline => "stuck".to_string(),
        _ => job.status.clone(),
    }
}

pub use db::queue::Lane;
