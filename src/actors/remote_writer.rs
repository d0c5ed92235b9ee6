//! `RemoteWriter`: every sample its node's writer takes also goes to a Prometheus
//! remote-write endpoint (Prometheus with its receiver on, VictoriaMetrics, Mimir,
//! Thanos Receive), so a fleet that outgrows one database keeps its history in a
//! distributed TSDB. Samples wait in a bounded queue (the oldest dropped past it, and
//! counted); a request at a time is built off the event loop (device and company names
//! looked up, protobuf, snappy) and sent; one the endpoint could not take (a network
//! error, 429, 5xx) is sent again after a jittered backoff, one it refuses (any other
//! 4xx) is dropped and counted, as the remote-write spec says.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use awc::http::header;

use super::backoff::Backoff;
use super::messages::Sample;
use super::registry::{ActorRegistry, ActorStats, Tracked};
use crate::db::{self, Db};
use crate::metrics::remote_write::{self, DeviceLabels, RequestBuilder};

/// The kind under which a remote writer appears in the actor registry.
pub const KIND: &str = "RemoteWriter";
/// Readings per request at most.
const READINGS_PER_REQUEST: usize = 5_000;
/// How often waiting samples are sent when fewer than a request's worth wait.
const SEND_EVERY: Duration = Duration::from_secs(1);
/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long a device's names are used before they are read again (a renamed device
/// shows under its new name within this).
const NAMES_FRESH_FOR: Duration = Duration::from_secs(60);
/// Devices whose names are remembered at most.
const MAX_NAMES: usize = 200_000;

/// Where samples go, and how the endpoint knows us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteSettings {
    pub url: String,
    pub auth: RemoteAuth,
    /// Readings waiting at most; past it the oldest samples are dropped.
    pub queue_readings: usize,
}

#[derive(Clone, PartialEq, Eq)]
pub enum RemoteAuth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
}

/// Never the secrets.
impl std::fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAuth::None => f.write_str("None"),
            RemoteAuth::Bearer(_) => f.write_str("Bearer(…)"),
            RemoteAuth::Basic { username, .. } => write!(f, "Basic({username}, …)"),
        }
    }
}

/// What the remote writer has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteWriteStats {
    /// Readings the endpoint accepted.
    pub sent: AtomicU64,
    /// Readings dropped from a full queue.
    pub dropped: AtomicU64,
    /// Readings of requests the endpoint refused for good (a 4xx other than 429).
    pub refused: AtomicU64,
    /// Requests sent again after a failure.
    pub retries: AtomicU64,
    /// Readings waiting now, a request being sent included.
    pub pending: AtomicU64,
}

/// Samples to send (a copy of what the node's writer took).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Offer(pub Vec<Sample>);

/// Send what waits, if no request is out.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct SendNext;

/// A request made: its body and the readings in it.
struct Request {
    body: Bytes,
    readings: usize,
}

/// Device id → its device and company names (`None`: deleted), and when read.
type Names = HashMap<i64, (Option<(String, String)>, Instant)>;

pub struct RemoteWriter {
    db: Db,
    settings: RemoteWriteSettings,
    stats: Arc<RemoteWriteStats>,
    waiting: VecDeque<Sample>,
    /// Readings in `waiting`.
    readings: usize,
    /// A request the endpoint could not take yet: sent again before anything else.
    retry: Option<Request>,
    /// A request is being built or sent.
    busy: bool,
    backoff: Backoff,
    names: Arc<Mutex<Names>>,
    client: awc::Client,
    drop_logged: bool,
    server_id: Option<i64>,
    registered: Option<Arc<ActorStats>>,
}

impl RemoteWriter {
    pub fn new(db: Db, settings: RemoteWriteSettings) -> Self {
        let client = awc::Client::builder().timeout(REQUEST_TIMEOUT).finish();
        RemoteWriter {
            db,
            settings,
            stats: Arc::new(RemoteWriteStats::default()),
            waiting: VecDeque::new(),
            readings: 0,
            retry: None,
            busy: false,
            backoff: Backoff::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY),
            names: Arc::new(Mutex::new(Names::new())),
            client,
            drop_logged: false,
            server_id: None,
            registered: None,
        }
    }

    pub fn stats(&self) -> Arc<RemoteWriteStats> {
        Arc::clone(&self.stats)
    }

    /// Starts the remote writer of monitor server `server_id`, listed in `registry`.
    pub fn launch(mut self, registry: &ActorRegistry, server_id: i64) -> Tracked<RemoteWriter> {
        let stats = registry.register(KIND, server_id.to_string());
        self.server_id = Some(server_id);
        self.registered = Some(Arc::clone(&stats));
        Tracked::new(self.start(), stats)
    }

    fn pending_changed(&self) {
        let out = self.retry.as_ref().map_or(0, |r| r.readings);
        self.stats
            .pending
            .store((self.readings + out) as u64, Ordering::Relaxed);
    }

    fn send_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        if let Some(request) = self.retry.take() {
            self.send(request, ctx);
            return;
        }
        if self.waiting.is_empty() {
            return;
        }
        let mut batch = Vec::new();
        let mut readings = 0;
        while let Some(sample) = self.waiting.front() {
            if readings > 0 && readings + sample.len() > READINGS_PER_REQUEST {
                break;
            }
            readings += sample.len();
            if let Some(sample) = self.waiting.pop_front() {
                batch.push(sample);
            }
        }
        self.readings -= readings;
        self.busy = true;
        let names = Arc::clone(&self.names);
        let db = self.db.clone();
        let build = async move { db.run(move |conn| build(conn, &names, &batch)).await };
        ctx.spawn(build.into_actor(self).map(move |built, act, ctx| {
            act.busy = false;
            let built = built
                .map_err(|error| error.to_string())
                .and_then(|request| request);
            match built {
                Ok(request) => act.send(request, ctx),
                Err(error) => {
                    // The names could not be read (the database is away): the readings
                    // are lost to the endpoint, as a full queue would lose them.
                    tracing::warn!(
                        server.id = act.server_id,
                        %error,
                        readings,
                        "remote write: cannot make a request; its readings are dropped"
                    );
                    act.stats
                        .dropped
                        .fetch_add(readings as u64, Ordering::Relaxed);
                    act.pending_changed();
                }
            }
        }));
    }

    fn send(&mut self, request: Request, ctx: &mut Context<Self>) {
        self.busy = true;
        let mut post = self
            .client
            .post(&self.settings.url)
            .insert_header((header::CONTENT_TYPE, remote_write::CONTENT_TYPE))
            .insert_header((header::CONTENT_ENCODING, remote_write::CONTENT_ENCODING))
            .insert_header((remote_write::VERSION_HEADER, remote_write::VERSION))
            .insert_header((
                header::USER_AGENT,
                concat!("vigil/", env!("CARGO_PKG_VERSION")),
            ));
        post = match &self.settings.auth {
            RemoteAuth::None => post,
            RemoteAuth::Bearer(token) => post.bearer_auth(token),
            RemoteAuth::Basic { username, password } => post.basic_auth(username, password),
        };
        let sending = post.send_body(request.body.clone());
        let answer = async move {
            match sending.await {
                Ok(mut answer) => {
                    let status = answer.status();
                    let body = answer.body().limit(1024).await.unwrap_or_default();
                    Ok((status, String::from_utf8_lossy(&body).into_owned()))
                }
                Err(error) => Err(error.to_string()),
            }
        };
        ctx.spawn(answer.into_actor(self).map(move |answer, act, ctx| {
            act.busy = false;
            match answer {
                Ok((status, _)) if status.is_success() => {
                    act.stats
                        .sent
                        .fetch_add(request.readings as u64, Ordering::Relaxed);
                    act.backoff.reset();
                    act.drop_logged = false;
                    act.pending_changed();
                    if !act.waiting.is_empty() {
                        ctx.notify(SendNext);
                    }
                }
                Ok((status, body)) if status.is_client_error() && status.as_u16() != 429 => {
                    tracing::error!(
                        server.id = act.server_id,
                        %status,
                        answer = body.trim(),
                        readings = request.readings,
                        "remote write: the endpoint refused a request; its readings are dropped"
                    );
                    act.stats
                        .refused
                        .fetch_add(request.readings as u64, Ordering::Relaxed);
                    act.pending_changed();
                    ctx.notify(SendNext);
                }
                failed => {
                    let reason = match failed {
                        Ok((status, body)) => format!("{status}: {}", body.trim()),
                        Err(error) => error,
                    };
                    let delay = act.backoff.failed();
                    tracing::warn!(
                        server.id = act.server_id,
                        error = %reason,
                        failures = act.backoff.failures(),
                        retry_in_ms = delay.as_millis() as u64,
                        "remote write: the endpoint could not take a request; sending it again"
                    );
                    act.stats.retries.fetch_add(1, Ordering::Relaxed);
                    act.retry = Some(request);
                    act.pending_changed();
                    ctx.notify_later(SendNext, delay);
                }
            }
        }));
    }

    /// Keeps the queue within its bound, dropping the oldest samples.
    fn enforce_bound(&mut self) {
        let mut dropped = 0;
        while self.readings > self.settings.queue_readings {
            let Some(oldest) = self.waiting.pop_front() else {
                break;
            };
            self.readings -= oldest.len();
            dropped += oldest.len();
        }
        if dropped > 0 {
            self.stats
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
            if !self.drop_logged {
                self.drop_logged = true;
                tracing::warn!(
                    server.id = self.server_id,
                    queue_readings = self.settings.queue_readings,
                    "remote write: queue full (the endpoint is away or slow): dropping the oldest samples"
                );
            }
        }
    }
}

/// The request for `samples`: every finite reading, its device named (or why it
/// cannot be made).
fn build(
    conn: &mut db::DbConn,
    names: &Mutex<Names>,
    samples: &[Sample],
) -> diesel::QueryResult<Result<Request, String>> {
    // A lock poisoned by a panic mid-update holds names at worst stale.
    let mut known = names.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let mut unknown: Vec<i64> = samples
        .iter()
        .map(|s| s.device_id)
        .filter(|id| {
            known
                .get(id)
                .is_none_or(|(_, at)| now.saturating_duration_since(*at) >= NAMES_FRESH_FOR)
        })
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        let found = db::devices::names_of(conn, &unknown)?;
        if known.len() + unknown.len() > MAX_NAMES {
            known.clear();
        }
        for id in &unknown {
            known.insert(*id, (None, now));
        }
        for (id, device, company) in found {
            known.insert(id, (Some((device, company)), now));
        }
    }
    let mut builder = RequestBuilder::default();
    for sample in samples {
        let device = DeviceLabels {
            device_id: sample.device_id,
            names: known.get(&sample.device_id).and_then(|(n, _)| n.clone()),
        };
        let at_ms = sample.at.timestamp_millis();
        let raw = sample.raw.iter().flat_map(|raw| raw.iter());
        for (key, value) in sample
            .metrics
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .chain(raw)
        {
            if value.is_finite() {
                builder.add(&device, key, at_ms, value);
            }
        }
    }
    let readings = builder.samples();
    Ok(builder
        .finish()
        .map(|body| Request {
            body: Bytes::from(body),
            readings,
        })
        .map_err(|e| format!("cannot compress the request: {e}")))
}

impl Actor for RemoteWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SEND_EVERY, |act, ctx| act.send_next(ctx));
    }
}

impl Handler<Offer> for RemoteWriter {
    type Result = ();

    fn handle(&mut self, Offer(samples): Offer, ctx: &mut Context<Self>) {
        if let Some(stats) = &self.registered {
            stats.record::<Offer>();
        }
        for sample in samples {
            self.readings += sample.len();
            self.waiting.push_back(sample);
        }
        self.enforce_bound();
        self.pending_changed();
        if self.readings >= READINGS_PER_REQUEST {
            self.send_next(ctx);
        }
    }
}

impl Handler<SendNext> for RemoteWriter {
    type Result = ();

    fn handle(&mut self, _: SendNext, ctx: &mut Context<Self>) {
        self.send_next(ctx);
    }
}
