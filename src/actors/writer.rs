//! `MetricsWriter`: takes the samples and state changes of every monitor of a node and
//! writes them in batches, one transaction per batch, off the event loop. Monitors
//! leave their samples in the node's `SampleQueue`, which the writer empties into its
//! buffer; `Sample` messages are taken too.
//!
//! A batch goes when `batch_samples` samples are waiting or every `flush_every`,
//! whichever comes first; one batch is in flight at a time. When a write fails (the
//! database is down, say) the batch goes back to the front of the buffer and is tried
//! again with a growing delay. The buffer is bounded in rows (one per series per poll,
//! which is what memory grows with): past `max_buffered_rows` the oldest samples are
//! dropped and counted, whether writes fail or only fall behind, so a long outage
//! costs history, never the process.
//!
//! Every row carries the epoch its monitor runs under, and the insert itself keeps
//! only rows whose epoch is still their device's (see `db::fenced`): what a monitor
//! that lost its device to another server reports is counted and left out, and the
//! supervisor is told to stop that monitor.
//!
//! What a device reported is untrusted: non-finite values are left out and control
//! characters (which PostgreSQL refuses in text) are replaced, so no reading can make
//! a batch fail for good and hold up every write behind it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::oneshot;

use super::messages::{Sample, SamplesWaiting, StaleMonitors, StateChanged};
use super::registry::{ActorRegistry, ActorStats, Tracked, TrackedRecipient};
use super::remote_writer::Offer;
use super::sample_queue::{SampleQueue, Taken};
use crate::actors::backoff::Backoff;
use crate::db::models::{NewEvent, EVENT_STATE};
use crate::db::store::catalogue::printable;
use crate::db::store::{Catalogue, NewPoll};
use crate::db::{self, Db};
use crate::metrics::exposition::Histogram;

/// How the writer batches and how much it holds while the database is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// Samples (polls) per batch at most; a full batch is written at once.
    pub batch_samples: usize,
    /// A partial batch waits at most this long.
    pub flush_every: Duration,
    /// Rows (series readings) held while writes fail; the oldest samples go first
    /// beyond it.
    pub max_buffered_rows: usize,
    /// State changes held while writes fail; the oldest go first beyond it.
    pub max_buffered_events: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            batch_samples: 500,
            flush_every: Duration::from_secs(1),
            max_buffered_rows: 1_000_000,
            max_buffered_events: 10_000,
        }
    }
}

/// The kind under which writers appear in the actor registry.
pub const KIND: &str = "MetricsWriter";

/// The first retry delay after a failed write; it doubles (jittered) up to
/// `MAX_RETRY_DELAY`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Upper bounds of the batch-size histogram, in samples.
static BATCH_SIZE_BOUNDS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// What the writer has done, for `GET /metrics`.
#[derive(Debug)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub samples_written: AtomicU64,
    pub rows_written: AtomicU64,
    pub events_written: AtomicU64,
    pub failed_writes: AtomicU64,
    /// Rows and state changes the database refused as stale: their monitor's epoch is
    /// no longer their device's.
    pub stale_rows: AtomicU64,
    pub stale_events: AtomicU64,
    pub dropped_samples: AtomicU64,
    pub dropped_events: AtomicU64,
    /// Samples waiting now.
    pub buffered_samples: AtomicU64,
    /// Rows those samples make.
    pub buffered_rows: AtomicU64,
    /// Age of the oldest sample of the last batch when it was written, in milliseconds.
    pub lag_ms: AtomicU64,
    pub batch_sizes: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            batches: AtomicU64::new(0),
            samples_written: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            events_written: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            stale_rows: AtomicU64::new(0),
            stale_events: AtomicU64::new(0),
            dropped_samples: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
            buffered_samples: AtomicU64::new(0),
            buffered_rows: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            batch_sizes: Histogram::new(&BATCH_SIZE_BOUNDS),
        }
    }
}

/// Tell `0` about monitors whose rows the database refused as stale.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportStaleTo(pub TrackedRecipient<StaleMonitors>);

/// Where one batch went.
#[derive(Debug, Default)]
struct Written {
    rows_stored: usize,
    /// Rows of polls left out because their monitor's epoch is no longer their device's.
    rows_refused: usize,
    events_stored: usize,
    /// `(device, epoch)` of monitors whose device has a newer epoch now.
    stale: Vec<(i64, i64)>,
}

/// Write everything buffered now; answers once the buffer is empty, or with the error
/// of the write that failed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Flush;

pub struct MetricsWriter {
    db: Db,
    settings: WriterSettings,
    /// What this writer knows of the series catalogue; used by one batch at a time.
    catalogue: Arc<Mutex<Catalogue>>,
    /// Where the node's monitors leave their samples; taken into `samples` before
    /// every batch.
    queue: Option<Arc<SampleQueue>>,
    /// Given a copy of every sample taken, when samples also go to a remote-write
    /// endpoint.
    remote: Option<TrackedRecipient<Offer>>,
    samples: VecDeque<Sample>,
    /// Series readings in `samples`.
    rows: usize,
    events: VecDeque<NewEvent>,
    in_flight: bool,
    retry: Backoff,
    retry_at: Option<Instant>,
    /// Callers of `Flush` waiting for an empty buffer.
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    /// A drop was logged since the last successful write.
    drop_logged: bool,
    stats: Arc<WriterStats>,
    /// The node's monitor server, for logs; set by `launch`.
    server_id: Option<i64>,
    /// This actor's entry in the node's registry; set by `launch`.
    registered: Option<Arc<ActorStats>>,
    /// Told about stale monitors (the node's supervisor).
    stale_to: Option<TrackedRecipient<StaleMonitors>>,
}

impl MetricsWriter {
    pub fn new(db: Db, settings: WriterSettings) -> Self {
        MetricsWriter {
            db,
            settings,
            catalogue: Arc::new(Mutex::new(Catalogue::default())),
            queue: None,
            remote: None,
            samples: VecDeque::new(),
            rows: 0,
            events: VecDeque::new(),
            in_flight: false,
            retry: Backoff::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY),
            retry_at: None,
            waiting: Vec::new(),
            drop_logged: false,
            stats: Arc::new(WriterStats::default()),
            server_id: None,
            registered: None,
            stale_to: None,
        }
    }

    /// Takes the samples monitors leave in `queue` (besides the `Sample` messages it
    /// is sent).
    pub fn taking_from(mut self, queue: Arc<SampleQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Gives `remote` a copy of every sample taken.
    pub fn sending_to(mut self, remote: TrackedRecipient<Offer>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Starts the writer of monitor server `server_id`, listed in `registry`.
    pub fn launch(mut self, registry: &ActorRegistry, server_id: i64) -> Tracked<MetricsWriter> {
        let stats = registry.register(KIND, server_id.to_string());
        self.server_id = Some(server_id);
        self.registered = Some(Arc::clone(&stats));
        Tracked::new(self.start(), stats)
    }

    fn record<M>(&self) {
        if let Some(stats) = &self.registered {
            stats.record::<M>();
        }
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.events.is_empty()
    }

    fn buffered_changed(&self) {
        self.stats
            .buffered_samples
            .store(self.samples.len() as u64, Ordering::Relaxed);
        self.stats
            .buffered_rows
            .store(self.rows as u64, Ordering::Relaxed);
    }

    /// Keeps the buffers within their bounds, dropping the oldest.
    fn enforce_bounds(&mut self) {
        let mut dropped_samples = 0;
        while self.rows > self.settings.max_buffered_rows {
            let Some(oldest) = self.samples.pop_front() else {
                break;
            };
            self.rows -= oldest.len();
            dropped_samples += 1;
        }
        let mut dropped_events = 0;
        while self.events.len() > self.settings.max_buffered_events {
            self.events.pop_front();
            dropped_events += 1;
        }
        if dropped_samples + dropped_events > 0 {
            self.stats
                .dropped_samples
                .fetch_add(dropped_samples, Ordering::Relaxed);
            self.stats
                .dropped_events
                .fetch_add(dropped_events, Ordering::Relaxed);
            if !self.drop_logged {
                self.drop_logged = true;
                tracing::warn!(
                    server.id = self.server_id,
                    buffered = self.samples.len(),
                    "metrics buffer full (writes failing or falling behind): dropping the oldest samples"
                );
            }
        }
    }

    /// Moves what waits in the queue to the end of the buffer.
    fn take_queued(&mut self) {
        let Some(queue) = &self.queue else { return };
        let Taken { samples, dropped } = queue.take();
        if dropped > 0 {
            self.stats
                .dropped_samples
                .fetch_add(dropped, Ordering::Relaxed);
        }
        if samples.is_empty() {
            return;
        }
        if let Some(remote) = &self.remote {
            remote.do_send(Offer(samples.clone()));
        }
        for sample in samples {
            self.rows += sample.len();
            self.samples.push_back(sample);
        }
        self.enforce_bounds();
        self.buffered_changed();
    }

    fn answer_waiting(&mut self, outcome: Result<(), String>) {
        for waiter in self.waiting.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Sends the next batch to the database unless one is out or a retry is not due.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.take_queued();
        if self.in_flight {
            return;
        }
        if self.is_empty() {
            self.answer_waiting(Ok(()));
            return;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let take = self.samples.len().min(self.settings.batch_samples.max(1));
        let samples: Vec<Sample> = self.samples.drain(..take).collect();
        self.rows -= samples.iter().map(Sample::len).sum::<usize>();
        let events: Vec<NewEvent> = self.events.drain(..).collect();
        self.buffered_changed();
        // Rows are built on the blocking thread, not on the monitors' event loop; the
        // batch is shared so a failed write can put it back.
        let batch = Arc::new(samples);
        let events = Arc::new(events);
        let (to_write, events_to_write) = (Arc::clone(&batch), Arc::clone(&events));
        self.in_flight = true;
        let db = self.db.clone();
        let catalogue = Arc::clone(&self.catalogue);
        let write = async move {
            db.run(move |conn| {
                let polls: Vec<NewPoll> = to_write.iter().map(poll_of).collect();
                let mut catalogue = catalogue.lock().unwrap_or_else(|p| p.into_inner());
                let outcome = db::write_transaction(conn, |conn| {
                    let stored = db::store::write(conn, &mut catalogue, &polls)?;
                    let events_stored = db::events::insert_current(conn, &events_to_write)?;
                    let mut written = Written {
                        rows_stored: stored.samples,
                        rows_refused: stored.refused,
                        events_stored,
                        stale: stored.stale,
                    };
                    if events_stored < events_to_write.len() {
                        let reported = events_to_write.iter().map(|e| (e.device_id, e.epoch));
                        written.stale.extend(stale_among(conn, reported)?);
                        written.stale.sort_unstable();
                        written.stale.dedup();
                    }
                    Ok(written)
                });
                if outcome.is_err() {
                    // Names and series learnt in the rolled-back transaction are gone.
                    catalogue.forget();
                }
                outcome
            })
            .await
        };
        ctx.spawn(write.into_actor(self).map(move |outcome, act, ctx| {
            act.in_flight = false;
            match outcome {
                Ok(written) => act.written(&batch, events.len(), written),
                Err(error) => {
                    let samples = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                    let events = Arc::try_unwrap(events).unwrap_or_else(|shared| (*shared).clone());
                    act.failed(samples, events, &error.to_string());
                    act.answer_waiting(Err(error.to_string()));
                    return;
                }
            }
            if act.samples.len() >= act.settings.batch_samples || !act.waiting.is_empty() {
                act.flush(ctx);
            }
        }));
    }

    fn written(&mut self, samples: &[Sample], events: usize, written: Written) {
        let stats = &self.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .samples_written
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        stats
            .rows_written
            .fetch_add(written.rows_stored as u64, Ordering::Relaxed);
        stats
            .events_written
            .fetch_add(written.events_stored as u64, Ordering::Relaxed);
        let stale_rows = written.rows_refused;
        let stale_events = events.saturating_sub(written.events_stored);
        stats
            .stale_rows
            .fetch_add(stale_rows as u64, Ordering::Relaxed);
        stats
            .stale_events
            .fetch_add(stale_events as u64, Ordering::Relaxed);
        if !written.stale.is_empty() {
            for (device_id, epoch) in &written.stale {
                tracing::warn!(
                    device.id = device_id,
                    epoch,
                    server.id = self.server_id,
                    "readings refused: the device was placed elsewhere since this monitor started"
                );
            }
            if let Some(supervisor) = &self.stale_to {
                supervisor.do_send(StaleMonitors(written.stale));
            }
        }
        let rows = written.rows_stored;
        stats.batch_sizes.observe(samples.len() as f64);
        if let Some(oldest) = samples.iter().map(|s| s.at).min() {
            let lag = (Utc::now() - oldest).num_milliseconds().max(0);
            stats.lag_ms.store(lag as u64, Ordering::Relaxed);
        }
        self.retry_at = None;
        if self.retry.failures() > 0 {
            tracing::info!(
                server.id = self.server_id,
                failures = self.retry.failures(),
                "metrics writes succeed again"
            );
        }
        self.retry.reset();
        self.drop_logged = false;
        tracing::debug!(
            samples = samples.len(),
            events,
            rows,
            "metrics batch written"
        );
    }

    /// Puts a failed batch back in front of what came since, and waits before retrying.
    fn failed(&mut self, samples: Vec<Sample>, events: Vec<NewEvent>, error: &str) {
        self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
        let wait = self.retry.failed();
        tracing::warn!(
            server.id = self.server_id,
            samples = samples.len(),
            events = events.len(),
            retry_in_ms = wait.as_millis() as u64,
            %error,
            "metrics batch not written; keeping it to retry"
        );
        for sample in samples.into_iter().rev() {
            self.rows += sample.len();
            self.samples.push_front(sample);
        }
        for event in events.into_iter().rev() {
            self.events.push_front(event);
        }
        self.enforce_bounds();
        self.buffered_changed();
        self.retry_at = Some(Instant::now() + wait);
    }
}

/// Which of the reported `(device, epoch)` pairs are stale: their device's assignment
/// has a later epoch now. (An earlier one means the start is still being recorded.)
fn stale_among(
    conn: &mut db::DbConn,
    reported: impl Iterator<Item = (i64, i64)>,
) -> diesel::QueryResult<Vec<(i64, i64)>> {
    let mut reported: Vec<(i64, i64)> = reported.collect();
    reported.sort_unstable();
    reported.dedup();
    let mut devices: Vec<i64> = reported.iter().map(|(device, _)| *device).collect();
    devices.dedup();
    let current: HashMap<i64, i64> = db::assignments::of_devices(conn, &devices)?
        .into_iter()
        .map(|a| (a.device_id, a.epoch))
        .collect();
    Ok(reported
        .into_iter()
        .filter(|(device, epoch)| current.get(device).is_some_and(|now| now > epoch))
        .collect())
}

/// The poll one sample is stored as (the store leaves out what is not finite and
/// cleans names).
fn poll_of(sample: &Sample) -> NewPoll<'_> {
    NewPoll {
        device_id: sample.device_id,
        epoch: sample.epoch,
        at_ms: sample.at.timestamp_millis(),
        readings: sample
            .metrics
            .iter()
            .map(|(metric, value)| (Cow::Borrowed(metric.as_str()), *value))
            .collect(),
        shared: sample.raw.as_ref(),
    }
}

impl Actor for MetricsWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(queue) = &self.queue {
            let attached = queue.attach(
                ctx.address().recipient(),
                self.settings.batch_samples,
                self.settings.max_buffered_rows,
            );
            if !attached {
                tracing::error!(
                    server.id = self.server_id,
                    "the sample queue has another writer: this one takes it too, without being told"
                );
            }
        }
        ctx.run_interval(self.settings.flush_every, |act, ctx| act.flush(ctx));
    }
}

impl Handler<Sample> for MetricsWriter {
    type Result = ();

    fn handle(&mut self, sample: Sample, ctx: &mut Context<Self>) {
        self.record::<Sample>();
        if let Some(remote) = &self.remote {
            remote.do_send(Offer(vec![sample.clone()]));
        }
        self.rows += sample.len();
        self.samples.push_back(sample);
        self.enforce_bounds();
        self.buffered_changed();
        if self.samples.len() >= self.settings.batch_samples {
            self.flush(ctx);
        }
    }
}

impl Handler<SamplesWaiting> for MetricsWriter {
    type Result = ();

    fn handle(&mut self, _: SamplesWaiting, ctx: &mut Context<Self>) {
        self.record::<SamplesWaiting>();
        self.take_queued();
        if self.samples.len() >= self.settings.batch_samples {
            self.flush(ctx);
        }
    }
}

impl Handler<StateChanged> for MetricsWriter {
    type Result = ();

    fn handle(&mut self, change: StateChanged, _ctx: &mut Context<Self>) {
        self.record::<StateChanged>();
        self.events.push_back(NewEvent {
            device_id: change.device_id,
            company_id: change.company_id,
            epoch: change.epoch,
            from_state: change.from.as_str().to_string(),
            to_state: change.to.as_str().to_string(),
            at: change.at.naive_utc(),
            reason: printable(&change.reason).into_owned(),
            kind: EVENT_STATE,
        });
        self.enforce_bounds();
    }
}

impl Handler<ReportStaleTo> for MetricsWriter {
    type Result = ();

    fn handle(&mut self, msg: ReportStaleTo, _ctx: &mut Context<Self>) {
        self.record::<ReportStaleTo>();
        self.stale_to = Some(msg.0);
    }
}

impl Handler<Flush> for MetricsWriter {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        self.record::<Flush>();
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        // A flush asked for is not held back by a pending retry delay.
        self.retry_at = None;
        self.flush(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the metrics writer stopped".into()))
        })
    }
}
