//! How a job runs: its collector's targets resolved to the company's devices, then the
//! kind's work device by device, with a safe point between two devices (where a stop
//! asked for ends the run `stopped`) and its progress written and logged as it goes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::report::{DeviceReport, Readings};
use crate::db::models::{Device, EVENT_STATE};
use crate::db::queue::{Collector, Ending, Job, DONE, FAILED, STOPPED};
use crate::db::store::{Catalogue, NewPoll};
use crate::db::{self, Db};
use crate::metrics::series;
use crate::probe::ProbeFactory;

/// How often a running job writes its progress (and logs it) at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Polls a snapshot stores per transaction.
const SNAPSHOT_BATCH: usize = 200;

/// Which devices a collector collects from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, untagged)]
pub enum Target {
    /// These devices of the collector's company.
    Devices { devices: Vec<i64> },
    /// Every device of the company.
    All { all: bool },
}

/// A report's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The window: the hours before the run starts, 1 to 8,784 (default 24).
    #[serde(default = "default_window_hours")]
    pub window_hours: u32,
}

fn default_window_hours() -> u32 {
    24
}

pub const MAX_WINDOW_HOURS: u32 = 8_784;

/// What a report job keeps as its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOutput {
    pub from: chrono::DateTime<Utc>,
    pub to: chrono::DateTime<Utc>,
    pub devices: Vec<DeviceReport>,
}

/// What a run has to work with.
#[derive(Clone)]
pub struct Environment {
    pub db: Db,
    pub probes: ProbeFactory,
    /// What a discovery may scan.
    pub policy: crate::probe::AddressPolicy,
}

/// Progress of one job: written to its row and logged at most every
/// [`PROGRESS_EVERY`], and at the end.
pub(super) struct Progress {
    db: Db,
    job: i64,
    total: i64,
    done: i64,
    rows: i64,
    written: Instant,
}

impl Progress {
    /// The run's work counted in something else than targets (a discovery's probes).
    pub(super) fn set_total(&mut self, total: i64) {
        self.total = total;
    }

    pub(super) async fn advance(&mut self, done: i64, rows: i64) {
        self.done = done;
        self.rows = rows;
        if self.written.elapsed() >= PROGRESS_EVERY || done == self.total {
            self.written = Instant::now();
            tracing::info!(
                job.id = self.job,
                done,
                total = self.total,
                rows,
                "collection job progress"
            );
            let (job, total) = (self.job, self.total);
            if let Err(error) = self
                .db
                .run(move |conn| db::queue::progress(conn, job, done, total, rows))
                .await
            {
                tracing::warn!(job.id = job, %error, "cannot write a job's progress");
            }
        }
    }
}

pub(super) fn failed(error: impl Into<String>) -> Ending {
    Ending {
        status: FAILED,
        error: Some(error.into()),
        output: None,
    }
}

/// A collector's params, as its kind reads them.
pub(super) fn params_of<T: serde::de::DeserializeOwned>(
    collector: &Collector,
) -> Result<T, Ending> {
    serde_json::from_str(&collector.params)
        .map_err(|error| failed(format!("the collector's params cannot be read: {error}")))
}

/// A run that ended with `output`.
pub(super) fn done_with(output: &impl Serialize) -> Ending {
    match serde_json::to_string(output) {
        Ok(json) => Ending {
            status: DONE,
            error: None,
            output: Some(json),
        },
        Err(error) => failed(error.to_string()),
    }
}

pub(super) fn stopped(done: i64, total: i64) -> Ending {
    Ending {
        status: STOPPED,
        error: Some(format!("stopped after {done} of {total} targets")),
        output: None,
    }
}

/// Runs `job` of `collector` to its end; `stop` set asks it to stop at its next safe
/// point.
pub async fn run(
    env: Environment,
    job: Job,
    collector: Collector,
    stop: Arc<AtomicBool>,
) -> Ending {
    let devices = match targets(&env.db, &collector).await {
        Ok(devices) => devices,
        Err(error) => return failed(error),
    };
    let mut progress = Progress {
        db: env.db.clone(),
        job: job.id,
        total: devices.len() as i64,
        done: 0,
        rows: 0,
        written: Instant::now() - PROGRESS_EVERY,
    };
    progress.advance(0, 0).await;
    match collector.kind.as_str() {
        "snapshot" => snapshot(&env, devices, &stop, &mut progress).await,
        "report" => report(&env, &job, &collector, devices, &stop, &mut progress).await,
        "export" => {
            super::export::export(&env, &job, &collector, devices, &stop, &mut progress).await
        }
        "discovery" => {
            super::discovery::discover(&env, &collector, devices, &stop, &mut progress).await
        }
        other => failed(format!(
            "collectors of kind {other} cannot run on this node"
        )),
    }
}

/// The devices a collector's target names, of its company, by id.
async fn targets(db: &Db, collector: &Collector) -> Result<Vec<(Device, String)>, String> {
    let target: Target = serde_json::from_str(&collector.target)
        .map_err(|e| format!("the collector's target cannot be read: {e}"))?;
    let company = collector.company_id;
    let devices = db
        .run(move |conn| {
            let company_name = db::companies::get(conn, company)?
                .map(|c| c.name)
                .unwrap_or_default();
            let ids = db::devices::ids_of_company(conn, company)?;
            let mut all = db::devices::of_ids(conn, &ids)?;
            all.sort_by_key(|d| d.id);
            Ok(all
                .into_iter()
                .map(|d| (d, company_name.clone()))
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(match target {
        Target::All { .. } => devices,
        Target::Devices { devices: wanted } => devices
            .into_iter()
            .filter(|(d, _)| wanted.contains(&d.id))
            .collect(),
    })
}

/// One target's poll as a snapshot keeps it until its batch is stored.
struct Polled {
    device_id: i64,
    at_ms: i64,
    readings: Vec<(String, f64)>,
    shared: Option<crate::domain::SharedReadings>,
}

/// Polls every target once with its probe and stores the readings.
async fn snapshot(
    env: &Environment,
    devices: Vec<(Device, String)>,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Ending {
    let timeout = match env.db.run(db::config::get).await {
        Ok(config) => config.monitor_config().timeout(),
        Err(error) => return failed(error.to_string()),
    };
    let probe = (env.probes)();
    let total = devices.len() as i64;
    let (mut done, mut rows, mut answered) = (0i64, 0i64, 0i64);
    let mut batch: Vec<Polled> = Vec::new();
    let mut catalogue = Catalogue::default();
    for (device, company) in devices {
        if stop.load(Ordering::Relaxed) {
            return stopped(done, total);
        }
        let spec = match device.spec(&company) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::warn!(device.id = device.id, %error, "snapshot: device skipped");
                done += 1;
                continue;
            }
        };
        let result = probe.poll(&spec, timeout).await;
        if result.up {
            answered += 1;
        }
        // As a monitor stores a poll: `up` and the latency beside what it read.
        let mut readings: Vec<(String, f64)> = result.metrics.into_iter().collect();
        readings.push((series::UP.into(), if result.up { 1.0 } else { 0.0 }));
        readings.push((series::LATENCY_SECONDS.into(), result.latency_ms / 1000.0));
        batch.push(Polled {
            device_id: device.id,
            at_ms: result.at.timestamp_millis(),
            readings,
            shared: result.raw,
        });
        done += 1;
        if batch.len() >= SNAPSHOT_BATCH || done == total {
            let polls = std::mem::take(&mut batch);
            let stored = env
                .db
                .run(move |conn| {
                    let new: Vec<NewPoll> = polls
                        .iter()
                        .map(|polled| NewPoll {
                            device_id: polled.device_id,
                            epoch: 0,
                            at_ms: polled.at_ms,
                            readings: polled
                                .readings
                                .iter()
                                .map(|(n, v)| (n.as_str().into(), *v))
                                .collect(),
                            shared: polled.shared.as_ref(),
                        })
                        .collect();
                    db::write_transaction(conn, |conn| {
                        db::store::write_unfenced(conn, &mut catalogue, &new)
                    })
                    .map(|stored| (stored.samples, catalogue))
                })
                .await;
            match stored {
                Ok((samples, back)) => {
                    rows += samples as i64;
                    catalogue = back;
                }
                Err(error) => return failed(format!("cannot store the readings: {error}")),
            }
        }
        progress.advance(done, rows).await;
    }
    progress.advance(total, rows).await;
    Ending {
        status: DONE,
        error: None,
        output: Some(
            serde_json::json!({"polled": total, "answered": answered, "readings": rows})
                .to_string(),
        ),
    }
}

/// Aggregates the window of stored samples device by device.
async fn report(
    env: &Environment,
    job: &Job,
    collector: &Collector,
    devices: Vec<(Device, String)>,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Ending {
    let params: ReportParams = match params_of(collector) {
        Ok(params) => params,
        Err(ending) => return ending,
    };
    let to_ms = job
        .started_at
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let from_ms = to_ms - i64::from(params.window_hours) * 3_600_000;
    let total = devices.len() as i64;
    let mut reports = Vec::with_capacity(devices.len());
    for (done, (device, _)) in devices.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return stopped(done as i64, total);
        }
        let one = env
            .db
            .run(move |conn| device_report(conn, &device, (from_ms, to_ms)))
            .await;
        match one {
            Ok(one) => reports.push(one),
            Err(error) => return failed(format!("cannot read device's samples: {error}")),
        }
        progress.advance(done as i64 + 1, 0).await;
    }
    let (Some(from), Some(to)) = (
        Utc.timestamp_millis_opt(from_ms).single(),
        Utc.timestamp_millis_opt(to_ms).single(),
    ) else {
        return failed("the report's window is out of range");
    };
    let output = ReportOutput {
        from,
        to,
        devices: reports,
    };
    done_with(&output)
}

/// One device's report over `[from_ms, to_ms)`.
fn device_report(
    conn: &mut db::DbConn,
    device: &Device,
    (from_ms, to_ms): (i64, i64),
) -> diesel::QueryResult<DeviceReport> {
    let mut readings = Readings::default();
    db::store::each_reading(
        conn,
        device.id,
        (from_ms, to_ms),
        Readings::wants,
        |at, name, v| readings.add(at, name, v),
    )?;
    let naive = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.naive_utc())
            .unwrap_or_default()
    };
    let (within, before) =
        db::events::of_device_between(conn, device.id, naive(from_ms), naive(to_ms))?;
    let initial = before.map_or_else(|| "pending".to_string(), |e| e.to_state);
    let changes: Vec<(i64, String)> = within
        .iter()
        .filter(|e| e.kind == EVENT_STATE)
        .map(|e| (e.at.and_utc().timestamp_millis(), e.to_state.clone()))
        .collect();
    Ok(readings.report(
        (device.id, device.name.clone()),
        (from_ms, to_ms),
        &initial,
        &changes,
        within.len() as u64,
    ))
}
