//! The `prometheus` probe: read any Prometheus text exposition (format 0.0.4), such as
//! a stock node_exporter's `/metrics`, and turn it into series.
//!
//! Every sample of the exposition is stored as a raw series, named as it is there:
//! counters, gauges, untyped samples, histogram buckets, summary quantiles, `_sum` and
//! `_count`, the node_exporter series the canonical ones come from included, up to
//! [`MAX_RAW_SERIES`] per poll (a cap against runaway exporters, far above the ~500 of
//! a node_exporter; what it cuts is logged once per poll). Beside them, the usual
//! node_exporter series become the canonical Vigil series the agent probe reports too
//! (`cpu_usage_percent`, `memory_usage_percent`, `disk_usage_percent{mount="/"}`, …;
//! see [`NODE_SERIES`]); a raw series named like a canonical one yields to it. An
//! endpoint that is not a node_exporter yields only raw series.
//!
//! The canonical series go in the poll's metrics; the raw ones go to storage as
//! [`SharedReadings`], their names one list kept with the endpoint's shape. A body is
//! read on the offload threads: against the last body's shape when its series are the
//! same ([`super::exposition_shape`]: only its values are read, nothing allocated but
//! their list), else in full by [`super::exposition_parser`], whose keys then make the
//! new shape. Either way the mapping borrows label values from the shape's keys.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::exposition_parser::{parse_exposition, SeriesKey};
use super::exposition_shape::{ExpositionShape, ShapedValues};
use super::http::DeviceClient;
use super::offload;
use super::policy::AddressPolicy;
use super::poll::{document_url, Probe};
use crate::domain::{DeviceSpec, Metrics, PollResult, SharedReadings};
use crate::metrics::agent_report::disk_usage;
use crate::metrics::series::{self, series};

/// Largest exposition read. A node_exporter answers 50–300 KiB; exporters of busy
/// services answer a few MiB.
const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// At most this many raw series (the exposition's own, besides the canonical Vigil
/// series) are kept per poll: every series becomes a stored row at every poll, and a
/// runaway exporter (a label with a request id in it) may expose millions. A
/// node_exporter serves ~500 and the exporters of busy services a few thousand, so
/// the cap cuts only what is broken. The first ones in exposition order are kept, so
/// the same series survive from poll to poll while the exporter's set stays the same.
/// The canonical series never count against the cap.
pub const MAX_RAW_SERIES: usize = 20_000;

/// The node_exporter series the canonical series are computed from (they are stored
/// as raw series too).
pub const NODE_SERIES: &[&str] = &[
    NODE_CPU_SECONDS,
    NODE_MEM_TOTAL,
    NODE_MEM_AVAILABLE,
    NODE_SWAP_TOTAL,
    NODE_SWAP_FREE,
    NODE_FS_SIZE,
    NODE_FS_FREE,
    NODE_FS_AVAIL,
    NODE_NET_RECEIVE,
    NODE_NET_TRANSMIT,
    NODE_HWMON_TEMP,
    NODE_THERMAL_ZONE_TEMP,
    NODE_LOAD1,
    NODE_LOAD5,
    NODE_LOAD15,
    NODE_TIME,
    NODE_BOOT_TIME,
];

const NODE_CPU_SECONDS: &str = "node_cpu_seconds_total";
const NODE_MEM_TOTAL: &str = "node_memory_MemTotal_bytes";
const NODE_MEM_AVAILABLE: &str = "node_memory_MemAvailable_bytes";
const NODE_SWAP_TOTAL: &str = "node_memory_SwapTotal_bytes";
const NODE_SWAP_FREE: &str = "node_memory_SwapFree_bytes";
const NODE_FS_SIZE: &str = "node_filesystem_size_bytes";
const NODE_FS_FREE: &str = "node_filesystem_free_bytes";
const NODE_FS_AVAIL: &str = "node_filesystem_avail_bytes";
const NODE_NET_RECEIVE: &str = "node_network_receive_bytes_total";
const NODE_NET_TRANSMIT: &str = "node_network_transmit_bytes_total";
const NODE_HWMON_TEMP: &str = "node_hwmon_temp_celsius";
const NODE_THERMAL_ZONE_TEMP: &str = "node_thermal_zone_temp";
const NODE_LOAD1: &str = "node_load1";
const NODE_LOAD5: &str = "node_load5";
const NODE_LOAD15: &str = "node_load15";
const NODE_TIME: &str = "node_time_seconds";
const NODE_BOOT_TIME: &str = "node_boot_time_seconds";

/// CPU time of one core, in seconds since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct CpuTimes {
    /// `idle` and `iowait`: the CPU had nothing to run. Counting iowait as idle is what
    /// sysinfo does, so the agent and this probe agree on a host's CPU usage.
    idle: f64,
    /// All modes of `node_cpu_seconds_total` (guest time is already part of `user`).
    total: f64,
}

/// The counters of one poll, kept to turn the next poll's counters into rates.
#[derive(Debug, Clone)]
struct Counters {
    /// When the document arrived.
    received: Instant,
    /// The exporter's clock (`node_time_seconds`), when it tells: closer to when the
    /// counters were read than `received`, which carries the network's delays.
    exporter_time: Option<f64>,
    /// By core (the `cpu` label).
    cpu: BTreeMap<String, CpuTimes>,
    /// Bytes by interface.
    received_bytes: BTreeMap<String, f64>,
    transmitted_bytes: BTreeMap<String, f64>,
}

/// The label-less node_exporter gauges the mapping reads, in the order of
/// [`NodeReadings::gauges`].
const NODE_GAUGES: [&str; 9] = [
    NODE_MEM_TOTAL,
    NODE_MEM_AVAILABLE,
    NODE_SWAP_TOTAL,
    NODE_SWAP_FREE,
    NODE_LOAD1,
    NODE_LOAD5,
    NODE_LOAD15,
    NODE_TIME,
    NODE_BOOT_TIME,
];

/// The readings of one exposition the mapping looks at, label values borrowed from
/// the samples' keys where they need no unescaping.
#[derive(Default)]
struct NodeReadings<'a> {
    gauges: Gauges,
    /// By core (the `cpu` label); kept for the next poll as it is, like the byte
    /// counters.
    cpu: BTreeMap<String, CpuTimes>,
    /// Bytes by interface.
    received_bytes: BTreeMap<String, f64>,
    transmitted_bytes: BTreeMap<String, f64>,
    /// Sizes and free space by the full label set of the file system, in exposition
    /// order (a handful of file systems: a list is enough).
    filesystems: Vec<Filesystem<'a>>,
    /// Sensor name and degrees, in exposition order.
    temperatures: Vec<(String, f64)>,
}

/// The value of each of [`NODE_GAUGES`], when the exposition has it.
#[derive(Default, Clone, Copy)]
struct Gauges([Option<f64>; NODE_GAUGES.len()]);

impl Gauges {
    /// The value of `name`, one of [`NODE_GAUGES`].
    fn get(&self, name: &str) -> Option<f64> {
        let index = NODE_GAUGES.iter().position(|gauge| *gauge == name)?;
        self.0[index]
    }

    fn set(&mut self, name: &str, value: f64) {
        if let Some(index) = NODE_GAUGES.iter().position(|gauge| *gauge == name) {
            self.0[index] = Some(value);
        }
    }
}

struct Filesystem<'a> {
    /// The label set as the series key writes it: the same file system has the same.
    labels: &'a str,
    mount: Cow<'a, str>,
    size: Option<f64>,
    free: Option<f64>,
    avail: Option<f64>,
}

impl<'a> NodeReadings<'a> {
    fn read(samples: impl IntoIterator<Item = (SeriesKey<'a>, f64)>) -> Self {
        let mut readings = NodeReadings::default();
        for (sample, value) in samples {
            match sample.name() {
                NODE_CPU_SECONDS => {
                    let (Some(core), Some(mode)) = (sample.label("cpu"), sample.label("mode"))
                    else {
                        continue;
                    };
                    let cpu = &mut readings.cpu;
                    // One key per core, not per mode: look up before allocating.
                    let times = match cpu.get_mut(core.as_ref()) {
                        Some(times) => times,
                        None => cpu.entry(core.into_owned()).or_default(),
                    };
                    times.total += value;
                    if matches!(mode.as_ref(), "idle" | "iowait") {
                        times.idle += value;
                    }
                }
                name @ (NODE_FS_SIZE | NODE_FS_FREE | NODE_FS_AVAIL) => {
                    let Some(mount) = sample.label("mountpoint") else {
                        continue;
                    };
                    let labels = sample.label_set();
                    let index = match readings
                        .filesystems
                        .iter()
                        .position(|fs| fs.labels == labels)
                    {
                        Some(index) => index,
                        None => {
                            readings.filesystems.push(Filesystem {
                                labels,
                                mount,
                                size: None,
                                free: None,
                                avail: None,
                            });
                            readings.filesystems.len() - 1
                        }
                    };
                    let fs = &mut readings.filesystems[index];
                    match name {
                        NODE_FS_SIZE => fs.size = Some(value),
                        NODE_FS_FREE => fs.free = Some(value),
                        _ => fs.avail = Some(value),
                    }
                }
                name @ (NODE_NET_RECEIVE | NODE_NET_TRANSMIT) => {
                    let Some(device) = sample.label("device") else {
                        continue;
                    };
                    let counters = if name == NODE_NET_RECEIVE {
                        &mut readings.received_bytes
                    } else {
                        &mut readings.transmitted_bytes
                    };
                    counters.insert(device.into_owned(), value);
                }
                NODE_HWMON_TEMP => {
                    if let (Some(chip), Some(sensor)) =
                        (sample.label("chip"), sample.label("sensor"))
                    {
                        readings
                            .temperatures
                            .push((format!("{chip}/{sensor}"), value));
                    }
                }
                NODE_THERMAL_ZONE_TEMP => {
                    if let (Some(zone), Some(kind)) = (sample.label("zone"), sample.label("type")) {
                        readings
                            .temperatures
                            .push((format!("thermal_zone{zone}/{kind}"), value));
                    }
                }
                name if sample.label_set().is_empty() => readings.gauges.set(name, value),
                _ => {}
            }
        }
        readings
    }
}

/// What the probe keeps of the series an endpoint exposed last: the exposition's
/// shape, to read the next body against, and which of its series are stored how.
#[derive(Debug)]
struct Shape {
    exposition: ExpositionShape,
    /// The raw series: every key but those named like a summary series, in exposition
    /// order, up to [`MAX_RAW_SERIES`] (with those). The same list for every poll of
    /// this shape, so storage looks it up once.
    raw: Arc<[Box<str>]>,
    /// The index among the keys of each raw series; `None` when they are all the keys.
    raw_at: Option<Box<[u32]>>,
    /// The keys named like a summary series (`cpu_usage_percent` from an exporter that
    /// is not a node_exporter): they go with the canonical series, which win over them.
    summary_at: Box<[u32]>,
    /// Keys left out by [`MAX_RAW_SERIES`].
    cut_series: usize,
}

impl Shape {
    fn new(exposition: ExpositionShape) -> Shape {
        let keys = exposition.keys();
        let mut raw_at = Vec::with_capacity(keys.len().min(MAX_RAW_SERIES));
        let mut summary_at = Vec::new();
        let mut cut_series = 0;
        for (index, key) in keys.iter().enumerate() {
            if raw_at.len() + summary_at.len() == MAX_RAW_SERIES {
                cut_series += 1;
            } else if series::is_summary(key) {
                summary_at.push(index as u32);
            } else {
                raw_at.push(index as u32);
            }
        }
        let (raw, raw_at) = if raw_at.len() == keys.len() {
            (Arc::clone(keys), None)
        } else {
            let raw = raw_at.iter().map(|&at| keys[at as usize].clone()).collect();
            (raw, Some(raw_at.into()))
        };
        Shape {
            exposition,
            raw,
            raw_at,
            summary_at: summary_at.into(),
            cut_series,
        }
    }
}

/// The Vigil series of one exposition, and what to keep from it for the next poll.
struct Mapped {
    /// The canonical series, and raw ones named like summary series.
    metrics: Metrics,
    /// The other raw series.
    raw: SharedReadings,
    counters: Counters,
    /// Raw series left out by [`MAX_RAW_SERIES`].
    cut_series: usize,
}

/// [`map`] for an exposition read in full.
#[cfg(test)]
fn to_metrics(
    parsed: super::ParsedExposition,
    previous: Option<&Counters>,
    received: Instant,
) -> Mapped {
    let (exposition, values) = ExpositionShape::of(parsed);
    map(&Shape::new(exposition), values.values, previous, received)
}

/// The Vigil series of one exposition, its values in `shape`'s order, and the counters
/// to keep for the next poll: the canonical series mapped from node_exporter series,
/// and every sample as a raw series.
///
/// `previous` holds the counters of the previous poll of the same endpoint: CPU usage
/// and network rates need two polls, so the first poll has none. A counter that went
/// down (the host rebooted, an interface was recreated) yields no rate this time.
fn map(shape: &Shape, values: Vec<f64>, previous: Option<&Counters>, received: Instant) -> Mapped {
    let exposition = &shape.exposition;
    let NodeReadings {
        gauges,
        cpu,
        received_bytes,
        transmitted_bytes,
        filesystems,
        temperatures,
    } = NodeReadings::read((0..exposition.len()).map(|at| (exposition.key(at), values[at])));
    let gauge = |name: &str| gauges.get(name);
    let mut metrics = Metrics::new();
    let counters = Counters {
        received,
        exporter_time: gauge(NODE_TIME),
        cpu,
        received_bytes,
        transmitted_bytes,
    };
    if let Some(previous) = previous {
        put_rates(&mut metrics, previous, &counters);
    }

    if let (Some(total), Some(available)) = (gauge(NODE_MEM_TOTAL), gauge(NODE_MEM_AVAILABLE)) {
        let used = (total - available).max(0.0);
        put(&mut metrics, series::MEMORY_USED_BYTES.into(), used);
        put(&mut metrics, series::MEMORY_TOTAL_BYTES.into(), total);
        put(
            &mut metrics,
            series::MEMORY_USAGE_PERCENT.into(),
            percent(used, total),
        );
    }
    if let (Some(total), Some(free)) = (gauge(NODE_SWAP_TOTAL), gauge(NODE_SWAP_FREE)) {
        let used = (total - free).max(0.0);
        put(&mut metrics, series::SWAP_USED_BYTES.into(), used);
        put(&mut metrics, series::SWAP_TOTAL_BYTES.into(), total);
        put(
            &mut metrics,
            series::SWAP_USAGE_PERCENT.into(),
            percent(used, total),
        );
    }

    // One entry per mount point, the first file system listed there (as the agent
    // does): one mounted over another would otherwise mix the two in one series.
    let mut mounts: Vec<&str> = Vec::with_capacity(filesystems.len());
    for fs in &filesystems {
        let (Some(size), Some(avail)) = (fs.size, fs.avail) else {
            continue;
        };
        let mount = fs.mount.as_ref();
        if size <= 0.0 || mounts.contains(&mount) {
            continue;
        }
        mounts.push(mount);
        // As the agent and `df` count it; without free bytes, reserved blocks count
        // as used.
        let (used, usage_percent) = disk_usage(size, fs.free.unwrap_or(avail), avail);
        let labels = [("mount", mount)];
        put(&mut metrics, series(series::DISK_USED_BYTES, &labels), used);
        put(
            &mut metrics,
            series(series::DISK_TOTAL_BYTES, &labels),
            size,
        );
        put(
            &mut metrics,
            series(series::DISK_USAGE_PERCENT, &labels),
            series::percentage(usage_percent),
        );
    }

    for (sensor, celsius) in &temperatures {
        let key = series(series::TEMPERATURE_CELSIUS, &[("sensor", sensor)]);
        put(&mut metrics, key, *celsius);
    }
    for (from, to) in [
        (NODE_LOAD1, series::LOAD1),
        (NODE_LOAD5, series::LOAD5),
        (NODE_LOAD15, series::LOAD15),
    ] {
        if let Some(load) = gauge(from) {
            put(&mut metrics, to.into(), load);
        }
    }
    if let (Some(now), Some(boot)) = (gauge(NODE_TIME), gauge(NODE_BOOT_TIME)) {
        if now >= boot {
            put(&mut metrics, series::UPTIME_SECONDS.into(), now - boot);
        }
    }

    for &at in &shape.summary_at {
        let at = at as usize;
        put(&mut metrics, exposition.key(at).series().into(), values[at]);
    }
    let values = match &shape.raw_at {
        None => values,
        Some(raw_at) => raw_at.iter().map(|&at| values[at as usize]).collect(),
    };
    Mapped {
        metrics,
        raw: SharedReadings {
            names: Arc::clone(&shape.raw),
            values,
        },
        counters,
        cut_series: shape.cut_series,
    }
}

/// CPU usage and network rates since the previous poll.
fn put_rates(metrics: &mut Metrics, previous: &Counters, now: &Counters) {
    let (mut idle, mut total) = (0.0, 0.0);
    for (core, times) in &now.cpu {
        let Some(before) = previous.cpu.get(core) else {
            continue;
        };
        let (d_idle, d_total) = (times.idle - before.idle, times.total - before.total);
        // No time passed as the kernel counts it (it counts in 10 ms ticks), or a reset.
        if d_idle < 0.0 || d_total <= 0.0 {
            continue;
        }
        idle += d_idle;
        total += d_total;
        let key = series(series::CPU_CORE_USAGE_PERCENT, &[("core", core)]);
        put(metrics, key, busy_percent(d_idle, d_total));
    }
    if total > 0.0 {
        put(
            metrics,
            series::CPU_USAGE_PERCENT.into(),
            busy_percent(idle, total),
        );
    }

    let Some(elapsed) = elapsed_seconds(previous, now) else {
        return;
    };
    for (name, counters, before) in [
        (
            series::NETWORK_RECEIVE_BYTES_PER_SECOND,
            &now.received_bytes,
            &previous.received_bytes,
        ),
        (
            series::NETWORK_TRANSMIT_BYTES_PER_SECOND,
            &now.transmitted_bytes,
            &previous.transmitted_bytes,
        ),
    ] {
        for (interface, bytes) in counters {
            let Some(delta) = before.get(interface).map(|b| bytes - b) else {
                continue;
            };
            if delta >= 0.0 {
                let key = series(name, &[("interface", interface)]);
                put(metrics, key, series::per_second(delta / elapsed));
            }
        }
    }
}

/// Seconds between two polls: by the exporter's clock when both documents tell it,
/// else by ours. `None` when no time passed.
fn elapsed_seconds(previous: &Counters, now: &Counters) -> Option<f64> {
    let exporter = match (previous.exporter_time, now.exporter_time) {
        (Some(before), Some(after)) if after > before => Some(after - before),
        _ => None,
    };
    let elapsed =
        exporter.unwrap_or_else(|| now.received.duration_since(previous.received).as_secs_f64());
    (elapsed > 0.0).then_some(elapsed)
}

/// Inserts a finite value under a name not taken yet.
fn put(metrics: &mut Metrics, key: String, value: f64) {
    if value.is_finite() {
        metrics.entry(key).or_insert(value);
    }
}

/// `part` of `total` in percent as stored, 0 when `total` is 0.
fn percent(part: f64, total: f64) -> f64 {
    if total > 0.0 {
        series::percentage(part * 100.0 / total)
    } else {
        0.0
    }
}

/// The busy share of `total` seconds of which `idle` were idle, 0–100, as stored.
fn busy_percent(idle: f64, total: f64) -> f64 {
    series::percentage((100.0 * (1.0 - idle / total)).clamp(0.0, 100.0))
}

/// The exposition in `body` in `last`'s shape, read by its values when its series
/// are the same, or in full (and its shape); or why it is not an exposition.
fn read_exposition(
    body: &[u8],
    last: Option<&Arc<Shape>>,
) -> Result<(Arc<Shape>, ShapedValues), String> {
    let text = std::str::from_utf8(body).map_err(|e| {
        format!(
            "answered an exposition that is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    if let Some(last) = last {
        if let Some(values) = last.exposition.read(text) {
            return Ok((Arc::clone(last), values));
        }
    }
    let parsed = parse_exposition(text)
        .map_err(|e| format!("answered something that is not a Prometheus text exposition: {e}"))?;
    let (exposition, values) = ExpositionShape::of(parsed);
    Ok((Arc::new(Shape::new(exposition)), values))
}

/// What a poll keeps for the next poll of the same endpoint.
struct Previous {
    url: String,
    /// To turn the next poll's counters into rates.
    counters: Counters,
    /// To read the next body by its values.
    shape: Arc<Shape>,
}

pub(super) struct PrometheusProbe {
    client: DeviceClient,
    /// What the last successful poll kept. The probe lives on its monitor's thread and
    /// is borrowed only between awaits, never across one.
    previous: Rc<RefCell<Option<Previous>>>,
}

impl PrometheusProbe {
    pub(super) fn new(policy: Arc<AddressPolicy>) -> Self {
        PrometheusProbe {
            client: DeviceClient::new(policy),
            previous: Rc::default(),
        }
    }
}

impl Probe for PrometheusProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        let url = document_url(&device.address, "/metrics");
        let fetched = self.client.fetch(&url, timeout, MAX_DOCUMENT_BYTES);
        let previous = Rc::clone(&self.previous);
        let device_id = device.id;
        async move {
            let fetched = match fetched.await {
                Ok(fetched) => fetched,
                Err((latency_ms, error)) => return PollResult::failed(latency_ms, error),
            };
            let received = Instant::now();
            // Parsing a document of up to 8 MiB is CPU work: off the monitors' thread.
            // The previous counters go with it and come back either way.
            let before = previous.borrow_mut().take();
            let body = fetched.body.clone();
            let mapping_url = url.clone();
            let mapped = offload::run(move || {
                let last = before.as_ref().filter(|last| last.url == mapping_url);
                match read_exposition(&body, last.map(|last| &last.shape)) {
                    Ok((shape, read)) => {
                        let counters = last.map(|last| &last.counters);
                        let Mapped {
                            metrics,
                            raw,
                            counters,
                            cut_series,
                        } = map(&shape, read.values, counters, received);
                        let kept = Previous {
                            url: mapping_url,
                            counters,
                            shape,
                        };
                        Ok(((metrics, raw, cut_series), kept, read.skipped_lines))
                    }
                    Err(error) => Err((error, Box::new(before))),
                }
            })
            .await;
            let (mapped, kept, skipped_lines) = match mapped {
                Ok(Ok(read)) => read,
                Ok(Err((error, before))) => {
                    *previous.borrow_mut() = *before;
                    return PollResult {
                        status_code: Some(fetched.status),
                        ..PollResult::failed(fetched.latency_ms, error)
                    };
                }
                Err(offload::Panicked) => {
                    return PollResult::failed(
                        fetched.latency_ms,
                        "reading the exposition failed (the reader panicked)",
                    )
                }
            };
            let (metrics, raw, cut_series) = mapped;
            *previous.borrow_mut() = Some(kept);
            if cut_series > 0 {
                tracing::warn!(
                    device.id = device_id,
                    %url,
                    cut_series,
                    max_raw_series = MAX_RAW_SERIES,
                    "the exposition holds more series than a poll keeps; the rest were left out"
                );
            }
            if skipped_lines > 0 {
                tracing::debug!(
                    device.id = device_id,
                    %url,
                    skipped_lines,
                    "skipped exposition lines that could not be read"
                );
            }
            PollResult {
                at: Utc::now(),
                up: true,
                latency_ms: fetched.latency_ms,
                status_code: Some(fetched.status),
                error: None,
                metrics,
                raw: Some(raw),
            }
        }
        .boxed_local()
    }
}

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "exposition_timing.rs"]
mod timing;
