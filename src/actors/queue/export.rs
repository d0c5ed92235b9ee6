//! The `export` kind: the targets' samples over a window, raw or rolled up, as CSV.
//! The run reads each device a slice of the window at a time and writes the CSV to
//! the database in parts of about [`PART_BYTES`] (so any coordinator of the cluster
//! can serve it, and neither the run nor a download holds a large window in memory);
//! `GET /api/v1/jobs/{id}/export` streams the parts in order.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::report::quoted;
use super::run::{done_with, failed, params_of, stopped, Environment, Progress};
use crate::db::models::Device;
use crate::db::queue::{Collector, Ending, Job};
use crate::db::store::rollup::{self, Tier};
use crate::db::{self, DbConn};

/// The CSV's first line: raw rows fill `value`; rolled-up rows fill the rest (`value`
/// is the period's last reading).
pub const HEADER: &str = "device_id,device,at,series,value,min,avg,max,count\n";
/// Bytes of CSV gathered before they are written as one part.
const PART_BYTES: usize = 1 << 20;

/// Which samples an export takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportTier {
    /// Every stored reading.
    Raw,
    /// Per-minute min/avg/max/count/last.
    Minute,
    /// Per-hour min/avg/max/count/last.
    Hour,
}

impl ExportTier {
    /// How much of the window is read at once.
    fn slice_ms(self) -> i64 {
        match self {
            ExportTier::Raw => 3_600_000,
            ExportTier::Minute => 86_400_000,
            ExportTier::Hour => 30 * 86_400_000,
        }
    }
}

/// An export's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// The window: the hours before the run starts, 1 to 17,568 (default 24).
    #[serde(default = "default_window_hours")]
    pub window_hours: u32,
    /// `raw` (default), `minute` or `hour`.
    #[serde(default = "default_tier")]
    pub tier: ExportTier,
}

fn default_window_hours() -> u32 {
    24
}

fn default_tier() -> ExportTier {
    ExportTier::Raw
}

/// Two years and a day: the hour tier's default retention.
pub const MAX_EXPORT_HOURS: u32 = 17_568;

/// What an export job keeps as its output (the CSV is in its parts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportOutput {
    pub from: chrono::DateTime<Utc>,
    pub to: chrono::DateTime<Utc>,
    pub tier: ExportTier,
    pub devices: usize,
    pub rows: i64,
    pub bytes: i64,
    pub parts: i64,
}

/// The CSV being gathered, and what has been written.
struct Parts {
    job: i64,
    buffer: String,
    written: i64,
    bytes: i64,
}

impl Parts {
    /// Writes what is gathered as the next part (all of it with `all`, else only once
    /// it reaches [`PART_BYTES`]).
    async fn flush(&mut self, env: &Environment, all: bool) -> Result<(), String> {
        if self.buffer.is_empty() || (!all && self.buffer.len() < PART_BYTES) {
            return Ok(());
        }
        let body = std::mem::take(&mut self.buffer);
        let (job, part) = (self.job, self.written);
        self.bytes += body.len() as i64;
        env.db
            .run(move |conn| db::queue::append_part(conn, job, part, &body))
            .await
            .map_err(|e| format!("cannot write the export: {e}"))?;
        self.written += 1;
        Ok(())
    }
}

/// Exports the window of every target, device by device, slice by slice.
pub(super) async fn export(
    env: &Environment,
    job: &Job,
    collector: &Collector,
    devices: Vec<(Device, String)>,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Ending {
    let params: ExportParams = match params_of(collector) {
        Ok(params) => params,
        Err(ending) => return ending,
    };
    let to_ms = job
        .started_at
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let from_ms = to_ms - i64::from(params.window_hours) * 3_600_000;
    let total = devices.len() as i64;
    let mut parts = Parts {
        job: job.id,
        buffer: HEADER.to_string(),
        written: 0,
        bytes: 0,
    };
    let mut rows = 0i64;
    for (done, (device, _)) in devices.iter().enumerate() {
        let mut slice_from = from_ms;
        while slice_from < to_ms {
            if stop.load(Ordering::Relaxed) {
                return stopped(done as i64, total);
            }
            let slice = (slice_from, (slice_from + params.tier.slice_ms()).min(to_ms));
            let (id, name) = (device.id, device.name.clone());
            let tier = params.tier;
            let read = env
                .db
                .run(move |conn| device_csv(conn, (id, &name), tier, slice))
                .await;
            match read {
                Ok((csv, n)) => {
                    parts.buffer.push_str(&csv);
                    rows += n;
                }
                Err(error) => {
                    tracing::warn!(job.id = job.id, device.id = id, %error, "export: cannot read the device's samples");
                    return failed(format!("cannot read device {id}'s samples: {error}"));
                }
            }
            if let Err(error) = parts.flush(env, false).await {
                return failed(error);
            }
            slice_from = slice.1;
        }
        progress.advance(done as i64 + 1, rows).await;
    }
    if let Err(error) = parts.flush(env, true).await {
        return failed(error);
    }
    progress.advance(total, rows).await;
    let (Some(from), Some(to)) = (
        Utc.timestamp_millis_opt(from_ms).single(),
        Utc.timestamp_millis_opt(to_ms).single(),
    ) else {
        return failed("the export's window is out of range");
    };
    let output = ExportOutput {
        from,
        to,
        tier: params.tier,
        devices: devices.len(),
        rows,
        bytes: parts.bytes,
        parts: parts.written,
    };
    done_with(&output)
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One device's rows of `tier` in `[from_ms, to_ms)` as CSV lines, and how many.
fn device_csv(
    conn: &mut DbConn,
    (id, name): (i64, &str),
    tier: ExportTier,
    (from_ms, to_ms): (i64, i64),
) -> diesel::QueryResult<(String, i64)> {
    let mut out = String::new();
    let mut rows = 0i64;
    let device = quoted(name);
    match tier {
        ExportTier::Raw => {
            db::store::each_reading(
                conn,
                id,
                (from_ms, to_ms),
                |_| true,
                |at, series, value| {
                    rows += 1;
                    let _ = writeln!(
                        out,
                        "{id},{device},{},{},{value},,,,",
                        rfc3339(at),
                        quoted(series)
                    );
                },
            )?;
        }
        ExportTier::Minute | ExportTier::Hour => {
            let tier = if tier == ExportTier::Minute {
                Tier::Minute
            } else {
                Tier::Hour
            };
            let periods = rollup::rows_of(conn, tier, id, from_ms, to_ms)?;
            let mut ids: Vec<i64> = periods
                .iter()
                .flat_map(|(_, a)| a.iter().map(|(id, _)| *id))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let names = db::store::catalogue::names_of(conn, &ids)?;
            for (at, aggregates) in &periods {
                for (series, a) in aggregates {
                    let Some(series) = names.get(series) else {
                        continue;
                    };
                    rows += 1;
                    let avg = a.sum / a.count.max(1) as f64;
                    let _ = writeln!(
                        out,
                        "{id},{device},{},{},{},{},{avg},{},{}",
                        rfc3339(*at),
                        quoted(series),
                        a.last,
                        a.min,
                        a.max,
                        a.count
                    );
                }
            }
        }
    }
    Ok((out, rows))
}
