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
//! The text is read by [`super::exposition_parser`]; each sample's series key is moved
//! into the poll's metrics as it is, and the mapping borrows label values from the
//! keys, so a poll allocates about one string per series.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::exposition_parser::{parse_exposition, ExpositionSample, ParsedExposition};
use super::http::DeviceClient;
use super::offload;
use super::policy::AddressPolicy;
use super::poll::{document_url, Probe};
use crate::domain::{DeviceSpec, Metrics, PollResult};
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
    fn read(samples: &'a [ExpositionSample]) -> Self {
        let mut readings = NodeReadings::default();
        for sample in samples {
            let value = sample.value();
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

/// The Vigil series of one exposition, and what to keep from it for the next poll.
struct Mapped {
    metrics: Metrics,
    counters: Counters,
    /// Raw series left out by [`MAX_RAW_SERIES`].
    cut_series: usize,
}

/// The Vigil series of one exposition, and the counters to keep for the next poll:
/// the canonical series mapped from node_exporter series, and every sample as a raw
/// series, its key moved into the metrics.
///
/// `previous` holds the counters of the previous poll of the same endpoint: CPU usage
/// and network rates need two polls, so the first poll has none. A counter that went
/// down (the host rebooted, an interface was recreated) yields no rate this time.
fn to_metrics(parsed: ParsedExposition, previous: Option<&Counters>, received: Instant) -> Mapped {
    let NodeReadings {
        gauges,
        cpu,
        received_bytes,
        transmitted_bytes,
        filesystems,
        temperatures,
    } = NodeReadings::read(&parsed.samples);
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
            usage_percent,
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

    let cut_series = put_raw_series(&mut metrics, parsed.samples);
    Mapped {
        metrics,
        counters,
        cut_series,
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
                put(metrics, key, delta / elapsed);
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

/// Adds every sample as a raw series, its key moved into `metrics`, up to
/// [`MAX_RAW_SERIES`] in exposition order; returns how many the cap left out. A raw
/// series named like a canonical series already present is left out (the canonical
/// one wins) and does not count against the cap.
fn put_raw_series(metrics: &mut Metrics, samples: Vec<ExpositionSample>) -> usize {
    // The few metric names of the canonical series: only a sample of one of these
    // names can collide with one, so only those are looked up in the map.
    let mut canonical_names: Vec<&str> = metrics.keys().map(|k| series::name(k)).collect();
    canonical_names.dedup();
    let mut raw: Vec<(String, f64)> = Vec::with_capacity(samples.len().min(MAX_RAW_SERIES));
    let mut cut = 0;
    for sample in samples {
        if canonical_names.contains(&sample.name()) && metrics.contains_key(sample.series()) {
            continue;
        }
        if raw.len() == MAX_RAW_SERIES {
            cut += 1;
            continue;
        }
        let value = sample.value();
        raw.push((sample.into_series(), value));
    }
    // The map is built anew from one sorted list (exporters write most series in
    // order already) rather than by an insertion per series: a fraction of the key
    // comparisons. No key is in both lists, and the parser wrote no key twice.
    raw.extend(std::mem::take(metrics));
    *metrics = raw.into_iter().collect();
    cut
}

/// Inserts a finite value under a name not taken yet.
fn put(metrics: &mut Metrics, key: String, value: f64) {
    if value.is_finite() {
        metrics.entry(key).or_insert(value);
    }
}

/// `part` of `total` in percent, 0 when `total` is 0.
fn percent(part: f64, total: f64) -> f64 {
    if total > 0.0 {
        part * 100.0 / total
    } else {
        0.0
    }
}

/// The busy share of `total` seconds of which `idle` were idle, 0–100.
fn busy_percent(idle: f64, total: f64) -> f64 {
    (100.0 * (1.0 - idle / total)).clamp(0.0, 100.0)
}

/// The exposition in `body`, or why it is not one.
fn read_exposition(body: &[u8]) -> Result<ParsedExposition, String> {
    let text = std::str::from_utf8(body).map_err(|e| {
        format!(
            "answered an exposition that is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    parse_exposition(text)
        .map_err(|e| format!("answered something that is not a Prometheus text exposition: {e}"))
}

pub(super) struct PrometheusProbe {
    client: DeviceClient,
    /// The counters of the last successful poll and the URL they came from, to turn
    /// the next poll's counters into rates. The probe lives on its monitor's thread
    /// and is borrowed only between awaits, never across one.
    previous: Rc<RefCell<Option<(String, Counters)>>>,
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
            let mapped = offload::run(move || match read_exposition(&body) {
                Ok(parsed) => {
                    let last = before
                        .as_ref()
                        .filter(|(from, _)| *from == mapping_url)
                        .map(|(_, counters)| counters);
                    let skipped_lines = parsed.skipped_lines;
                    let mapped = to_metrics(parsed, last, received);
                    Ok((mapped, mapping_url, skipped_lines))
                }
                Err(error) => Err((error, Box::new(before))),
            })
            .await;
            let (mapped, mapping_url, skipped_lines) = match mapped {
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
            let Mapped {
                metrics,
                counters,
                cut_series,
            } = mapped;
            *previous.borrow_mut() = Some((mapping_url, counters));
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
