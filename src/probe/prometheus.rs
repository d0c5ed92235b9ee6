//! The `prometheus` probe: read any Prometheus text exposition (format 0.0.4), such as
//! a stock node_exporter's `/metrics`, and turn it into series.
//!
//! The usual node_exporter series become the canonical Vigil series the agent probe
//! reports too (`cpu_usage_percent`, `memory_usage_percent`,
//! `disk_usage_percent{mount="/"}`, …; see [`NODE_SERIES`]); every other counter, gauge
//! or untyped sample is kept as it is named in the exposition, up to
//! [`MAX_RAW_SERIES`] of them. An endpoint that is not a node_exporter yields only
//! such raw series.
//!
//! Lines are tokenised by the `prometheus-parse` crate's [`LineInfo::parse`]; this
//! module reads the label sets itself. `Scrape::parse`, the crate's whole-document
//! parser, splits label sets at every `,` and `=` and does not unescape values, so a
//! label value such as `"a,b"` would silently turn into another series; it also
//! accepts any text at all as an empty scrape, so an HTML error page would look like
//! an endpoint with no metrics.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use prometheus_parse::{LineInfo, SampleType};

use super::http::{client, fetch};
use super::{document_url, Probe};
use crate::agent::disk_usage;
use crate::domain::{DeviceSpec, Metrics, PollResult};
use crate::series::{self, series, write_labels};

/// Largest exposition read. A node_exporter answers 50–300 KiB; exporters of busy
/// services answer a few MiB.
const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// At most this many raw series (those not mapped to a canonical Vigil series) are
/// kept per poll: every series becomes a stored row at every poll, and an exporter
/// may expose tens of thousands. The first ones in exposition order are kept, so the
/// same series survive from poll to poll while the exporter's set stays the same
/// (exporters write whole families together, so the cut falls inside at most one
/// family). The canonical series never count against the cap.
pub const MAX_RAW_SERIES: usize = 500;

/// The node_exporter series the canonical series are computed from. They are not
/// repeated as raw series: what they say is in the canonical series.
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

/// What a sample is, from the `# TYPE` line of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Counter,
    Gauge,
    /// No `# TYPE` line, or a type this parser does not distinguish.
    Untyped,
    /// A histogram's `_bucket` sample (label `le`).
    Bucket,
    /// A summary's quantile sample (label `quantile`).
    Quantile,
    /// A histogram's or summary's `_sum`.
    Sum,
    /// A histogram's or summary's `_count`.
    Count,
}

/// One sample line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpositionSample {
    pub name: String,
    /// Sorted by label name; values unescaped.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub kind: SampleKind,
}

impl ExpositionSample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The sample as a Vigil series name: `name{label="value",…}`, labels sorted and
    /// escaped as the exposition format escapes them.
    pub fn series(&self) -> String {
        let mut out = self.name.clone();
        if !self.labels.is_empty() {
            out.push('{');
            write_labels(
                &mut out,
                self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            out.push('}');
        }
        out
    }
}

/// A parsed text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedExposition {
    /// In exposition order. Samples with a non-finite value (`NaN`, `±Inf`) are left
    /// out; a repeated series keeps its first sample.
    pub samples: Vec<ExpositionSample>,
    /// Lines that are neither blank, nor comments, nor samples this parser reads (see
    /// [`parse_exposition`]); they are skipped.
    pub skipped_lines: usize,
}

impl ParsedExposition {
    /// The value of `series`, written as [`ExpositionSample::series`] writes it.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.series() == series)
            .map(|s| s.value)
    }
}

/// Parses a Prometheus text exposition.
///
/// Lines that cannot be read are skipped and counted, as long as the document holds
/// at least one sample: one odd line of a third-party exporter must not hide the
/// rest. Among them are lines the tokeniser does not accept though the format allows
/// them: metric names with `:`, an empty label set `{}`, a `}` inside a label value.
/// A document with unreadable lines and no sample is not an exposition: the error
/// quotes its first unreadable line. A document of only blanks and comments is an
/// empty exposition.
pub fn parse_exposition(text: &str) -> Result<ParsedExposition, String> {
    let mut families: HashMap<String, SampleType> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut parsed = ParsedExposition::default();
    let mut first_bad: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let read = match LineInfo::parse(trimmed) {
            LineInfo::Type {
                metric_name,
                metric_alias,
                sample_type,
            } => {
                // A histogram's TYPE line comes back named `<family>_bucket`, with the
                // family as its alias.
                families.insert(metric_alias.unwrap_or(metric_name), sample_type);
                Ok(None)
            }
            LineInfo::Sample {
                metric_name,
                labels,
                value,
                timestamp: _,
            } => read_sample(metric_name, labels, value, &families).map(Some),
            // Comments, including a HELP line without text.
            _ if trimmed.starts_with('#') => Ok(None),
            LineInfo::Doc { .. } | LineInfo::Empty => Ok(None),
            LineInfo::Ignored => Err("not a sample, a comment or a blank line"),
        };
        match read {
            Ok(Some(sample)) => {
                if sample.value.is_finite() && seen.insert(sample.series()) {
                    parsed.samples.push(sample);
                }
            }
            Ok(None) => {}
            Err(why) => {
                parsed.skipped_lines += 1;
                if first_bad.is_none() {
                    first_bad = Some((index + 1, format!("{why}: `{}`", snippet(trimmed))));
                }
            }
        }
    }
    match first_bad {
        Some((line, why)) if parsed.samples.is_empty() => Err(format!("line {line} is {why}")),
        _ => Ok(parsed),
    }
}

/// The start of a line, for an error message.
fn snippet(line: &str) -> String {
    const MAX_CHARS: usize = 60;
    match line.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

fn read_sample(
    name: &str,
    labels: Option<&str>,
    value: &str,
    families: &HashMap<String, SampleType>,
) -> Result<ExpositionSample, &'static str> {
    if !is_metric_name(name) {
        return Err("a sample with an invalid metric name");
    }
    let labels = match labels {
        Some(raw) => parse_labels(raw)?,
        None => Vec::new(),
    };
    // Rust reads `NaN`, `+Inf` and `-Inf` as the format writes them.
    let value: f64 = value
        .parse()
        .map_err(|_| "a sample whose value is not a number")?;
    let kind = kind_of(name, &labels, families);
    Ok(ExpositionSample {
        name: name.to_string(),
        labels,
        value,
        kind,
    })
}

fn kind_of(
    name: &str,
    labels: &[(String, String)],
    families: &HashMap<String, SampleType>,
) -> SampleKind {
    match families.get(name) {
        Some(SampleType::Counter) => return SampleKind::Counter,
        Some(SampleType::Gauge) => return SampleKind::Gauge,
        Some(SampleType::Summary) if labels.iter().any(|(k, _)| k == "quantile") => {
            return SampleKind::Quantile
        }
        _ => {}
    }
    for (suffix, kind) in [
        ("_bucket", SampleKind::Bucket),
        ("_sum", SampleKind::Sum),
        ("_count", SampleKind::Count),
    ] {
        let Some(family) = name.strip_suffix(suffix) else {
            continue;
        };
        match families.get(family) {
            Some(SampleType::Histogram) => return kind,
            Some(SampleType::Summary) if kind != SampleKind::Bucket => return kind,
            _ => {}
        }
    }
    SampleKind::Untyped
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Reads the inside of a label set, `k="v",k2="v2"` (a trailing comma allowed),
/// unescaping `\\`, `\"` and `\n`. The labels come back sorted by name.
fn parse_labels(raw: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut rest = raw.trim_start();
    while !rest.is_empty() {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("a sample with an invalid label name");
        }
        let after = rest[name_len..]
            .trim_start()
            .strip_prefix('=')
            .ok_or("a sample with a label name not followed by `=`")?
            .trim_start()
            .strip_prefix('"')
            .ok_or("a sample with a label value not in double quotes")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("a sample with an unterminated label value"),
                Some((i, '"')) => break i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    // Not an escape the format defines: kept as written.
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("a sample with an unterminated label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(key, _)| key == name) {
            return Err("a sample with a repeated label");
        }
        labels.push((name.to_string(), value));
        rest = after[end..].trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start();
        } else if !rest.is_empty() {
            return Err("a sample with labels not separated by commas");
        }
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(labels)
}

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

/// The readings of one exposition the mapping looks at.
#[derive(Default)]
struct NodeReadings<'a> {
    gauges: HashMap<&'a str, f64>,
    cpu: BTreeMap<String, CpuTimes>,
    /// Sizes and free space by the full label set of the file system, in exposition
    /// order (a handful of file systems: a list is enough).
    filesystems: Vec<Filesystem<'a>>,
    received_bytes: BTreeMap<String, f64>,
    transmitted_bytes: BTreeMap<String, f64>,
    /// Sensor name and degrees, in exposition order.
    temperatures: Vec<(String, f64)>,
}

struct Filesystem<'a> {
    labels: &'a [(String, String)],
    mount: &'a str,
    size: Option<f64>,
    free: Option<f64>,
    avail: Option<f64>,
}

impl<'a> NodeReadings<'a> {
    fn read(parsed: &'a ParsedExposition) -> Self {
        let mut readings = NodeReadings::default();
        for sample in &parsed.samples {
            let value = sample.value;
            match sample.name.as_str() {
                NODE_CPU_SECONDS => {
                    let (Some(core), Some(mode)) = (sample.label("cpu"), sample.label("mode"))
                    else {
                        continue;
                    };
                    let times = readings.cpu.entry(core.to_string()).or_default();
                    times.total += value;
                    if matches!(mode, "idle" | "iowait") {
                        times.idle += value;
                    }
                }
                name @ (NODE_FS_SIZE | NODE_FS_FREE | NODE_FS_AVAIL) => {
                    let Some(mount) = sample.label("mountpoint") else {
                        continue;
                    };
                    let index = match readings
                        .filesystems
                        .iter()
                        .position(|fs| fs.labels == sample.labels.as_slice())
                    {
                        Some(index) => index,
                        None => {
                            readings.filesystems.push(Filesystem {
                                labels: &sample.labels,
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
                    counters.insert(device.to_string(), value);
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
                name @ (NODE_MEM_TOTAL | NODE_MEM_AVAILABLE | NODE_SWAP_TOTAL | NODE_SWAP_FREE
                | NODE_LOAD1 | NODE_LOAD5 | NODE_LOAD15 | NODE_TIME | NODE_BOOT_TIME)
                    if sample.labels.is_empty() =>
                {
                    readings.gauges.insert(name, value);
                }
                _ => {}
            }
        }
        readings
    }
}

/// The Vigil series of one exposition, and the counters to keep for the next poll:
/// the canonical series mapped from node_exporter series first, then raw series.
///
/// `previous` holds the counters of the previous poll of the same endpoint: CPU usage
/// and network rates need two polls, so the first poll has none. A counter that went
/// down (the host rebooted, an interface was recreated) yields no rate this time.
fn to_metrics(
    parsed: &ParsedExposition,
    previous: Option<&Counters>,
    received: Instant,
) -> (Metrics, Counters) {
    let readings = NodeReadings::read(parsed);
    let gauge = |name: &str| readings.gauges.get(name).copied();
    let mut metrics = Metrics::new();
    let counters = Counters {
        received,
        exporter_time: gauge(NODE_TIME),
        cpu: readings.cpu.clone(),
        received_bytes: readings.received_bytes.clone(),
        transmitted_bytes: readings.transmitted_bytes.clone(),
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
    let mut mounts = HashSet::new();
    for fs in &readings.filesystems {
        let (Some(size), Some(avail)) = (fs.size, fs.avail) else {
            continue;
        };
        if size <= 0.0 || !mounts.insert(fs.mount) {
            continue;
        }
        // As the agent and `df` count it; without free bytes, reserved blocks count
        // as used.
        let (used, usage_percent) = disk_usage(size, fs.free.unwrap_or(avail), avail);
        let labels = [("mount", fs.mount)];
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

    for (sensor, celsius) in &readings.temperatures {
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

    put_raw_series(&mut metrics, parsed);
    (metrics, counters)
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

/// Adds every counter, gauge, untyped, `_sum` and `_count` sample not mapped to a
/// canonical series, named as in the exposition, up to [`MAX_RAW_SERIES`] in
/// exposition order. A raw series named like a canonical series already present is
/// left out (the canonical one wins) and does not count against the cap.
fn put_raw_series(metrics: &mut Metrics, parsed: &ParsedExposition) {
    let mut kept = 0;
    for sample in &parsed.samples {
        if kept == MAX_RAW_SERIES {
            break;
        }
        if matches!(sample.kind, SampleKind::Bucket | SampleKind::Quantile)
            || NODE_SERIES.contains(&sample.name.as_str())
        {
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(entry) = metrics.entry(sample.series()) {
            entry.insert(sample.value);
            kept += 1;
        }
    }
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
    client: awc::Client,
    /// The counters of the last successful poll and the URL they came from, to turn
    /// the next poll's counters into rates. The probe lives on its monitor's thread
    /// and is borrowed only between awaits, never across one.
    previous: Rc<RefCell<Option<(String, Counters)>>>,
}

impl PrometheusProbe {
    pub(super) fn new() -> Self {
        PrometheusProbe {
            client: client(),
            previous: Rc::default(),
        }
    }
}

impl Probe for PrometheusProbe {
    fn poll(&self, device: &DeviceSpec, timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        let url = document_url(&device.address, "/metrics");
        let fetched = fetch(&self.client, &url, timeout, MAX_DOCUMENT_BYTES);
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
            let mapped = tokio::task::spawn_blocking(move || match read_exposition(&body) {
                Ok(parsed) => {
                    let last = before
                        .as_ref()
                        .filter(|(from, _)| *from == mapping_url)
                        .map(|(_, counters)| counters);
                    let (metrics, counters) = to_metrics(&parsed, last, received);
                    Ok((metrics, (mapping_url, counters), parsed.skipped_lines))
                }
                Err(error) => Err((error, Box::new(before))),
            })
            .await;
            let (metrics, skipped_lines) = match mapped {
                Ok(Ok((metrics, counters, skipped_lines))) => {
                    *previous.borrow_mut() = Some(counters);
                    (metrics, skipped_lines)
                }
                Ok(Err((error, before))) => {
                    *previous.borrow_mut() = *before;
                    return PollResult {
                        status_code: Some(fetched.status),
                        ..PollResult::failed(fetched.latency_ms, error)
                    };
                }
                Err(join) => {
                    return PollResult::failed(
                        fetched.latency_ms,
                        format!("reading the exposition failed: {join}"),
                    )
                }
            };
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
mod tests {
    use super::*;

    /// Two scrapes of Debian 12's `prometheus-node-exporter` 1.5, three seconds apart.
    const SCRAPE_1: &str = include_str!("../../tests/fixtures/node_exporter_1.prom");
    const SCRAPE_2: &str = include_str!("../../tests/fixtures/node_exporter_2.prom");

    /// The value on the line of `text` that starts with `series` (written as the
    /// exporter writes it: labels sorted, as [`ExpositionSample::series`] does).
    fn value_in(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} is not in the document"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The lines of `text` for metric `name`, with labels.
    fn lines_of<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        text.lines()
            .filter(move |line| line.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
    }

    /// The value of label `label` on an exposition line, read from the text.
    fn label_in<'a>(line: &'a str, label: &str) -> &'a str {
        let start = line.find(&format!("{label}=\"")).unwrap() + label.len() + 2;
        let len = line[start..].find('"').unwrap();
        &line[start..start + len]
    }

    fn line_value(line: &str) -> f64 {
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn map(text: &str, previous: Option<&Counters>, received: Instant) -> (Metrics, Counters) {
        to_metrics(&parse_exposition(text).unwrap(), previous, received)
    }

    #[test]
    fn a_node_exporter_scrape_parses() {
        let parsed = parse_exposition(SCRAPE_1).unwrap();
        let sample_lines = SCRAPE_1
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .count();
        assert_eq!(parsed.skipped_lines, 0);
        assert_eq!(parsed.samples.len(), sample_lines);
        assert_eq!(
            parsed.value("node_memory_MemTotal_bytes"),
            Some(value_in(SCRAPE_1, "node_memory_MemTotal_bytes"))
        );
        let kind = |series: &str| {
            parsed
                .samples
                .iter()
                .find(|s| s.series() == series)
                .map(|s| s.kind)
        };
        assert_eq!(
            kind(r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#),
            Some(SampleKind::Counter)
        );
        assert_eq!(kind("node_load1"), Some(SampleKind::Gauge));
        assert_eq!(
            kind("node_netstat_Icmp6_InErrors"),
            Some(SampleKind::Untyped)
        );
        assert_eq!(
            kind(r#"go_gc_duration_seconds{quantile="0.5"}"#),
            Some(SampleKind::Quantile)
        );
        assert_eq!(kind("go_gc_duration_seconds_sum"), Some(SampleKind::Sum));
        assert_eq!(
            kind("go_gc_duration_seconds_count"),
            Some(SampleKind::Count)
        );
    }

    #[test]
    fn the_first_scrape_maps_memory_disks_load_and_uptime_but_no_rates() {
        let (metrics, _) = map(SCRAPE_1, None, Instant::now());

        let total = value_in(SCRAPE_1, "node_memory_MemTotal_bytes");
        let available = value_in(SCRAPE_1, "node_memory_MemAvailable_bytes");
        assert_eq!(metrics[series::MEMORY_TOTAL_BYTES], total);
        assert_eq!(metrics[series::MEMORY_USED_BYTES], total - available);
        assert_eq!(
            metrics[series::MEMORY_USAGE_PERCENT],
            (total - available) / total * 100.0
        );
        let swap_total = value_in(SCRAPE_1, "node_memory_SwapTotal_bytes");
        assert_eq!(metrics[series::SWAP_TOTAL_BYTES], swap_total);
        assert!((0.0..=100.0).contains(&metrics[series::SWAP_USAGE_PERCENT]));

        let mut mounts = 0;
        for line in lines_of(SCRAPE_1, "node_filesystem_size_bytes") {
            let mount = label_in(line, "mountpoint");
            let size = line_value(line);
            let percent = metrics.get(&series(series::DISK_USAGE_PERCENT, &[("mount", mount)]));
            if size > 0.0 {
                mounts += 1;
                let percent = percent.unwrap_or_else(|| panic!("no disk series for {mount}"));
                assert!((0.0..=100.0).contains(percent), "{mount}: {percent}");
                assert_eq!(
                    metrics[&series(series::DISK_TOTAL_BYTES, &[("mount", mount)])],
                    size
                );
                // As df counts it, from the fixture's free and available bytes.
                let of = |name: &str| {
                    lines_of(SCRAPE_1, name)
                        .find(|l| label_in(l, "mountpoint") == mount)
                        .map(line_value)
                        .unwrap()
                };
                let free = of("node_filesystem_free_bytes");
                let available = of("node_filesystem_avail_bytes");
                let used = size - free;
                assert_eq!(
                    metrics[&series(series::DISK_USED_BYTES, &[("mount", mount)])],
                    used
                );
                assert!((percent - used * 100.0 / (used + available)).abs() < 1e-9);
            } else {
                assert_eq!(percent, None, "{mount} has size 0");
            }
        }
        assert!(mounts > 0, "the fixture lists no file system");

        assert_eq!(metrics[series::LOAD1], value_in(SCRAPE_1, "node_load1"));
        assert_eq!(metrics[series::LOAD5], value_in(SCRAPE_1, "node_load5"));
        assert_eq!(metrics[series::LOAD15], value_in(SCRAPE_1, "node_load15"));
        assert_eq!(
            metrics[series::UPTIME_SECONDS],
            value_in(SCRAPE_1, "node_time_seconds") - value_in(SCRAPE_1, "node_boot_time_seconds")
        );

        assert!(!metrics.contains_key(series::CPU_USAGE_PERCENT));
        assert!(!metrics
            .keys()
            .any(|k| k.starts_with(series::CPU_CORE_USAGE_PERCENT)
                || k.starts_with(series::NETWORK_RECEIVE_BYTES_PER_SECOND)
                || k.starts_with(series::NETWORK_TRANSMIT_BYTES_PER_SECOND)));
    }

    #[test]
    fn the_second_scrape_adds_cpu_usage_and_network_rates() {
        let start = Instant::now();
        let (_, counters) = map(SCRAPE_1, None, start);
        let (metrics, _) = map(SCRAPE_2, Some(&counters), start + Duration::from_secs(3));

        // Busy share of the CPU time between the scrapes, computed from the text.
        let times = |text: &str| {
            lines_of(text, "node_cpu_seconds_total").fold((0.0, 0.0), |(idle, total), line| {
                let value = line_value(line);
                let is_idle = matches!(label_in(line, "mode"), "idle" | "iowait");
                (idle + if is_idle { value } else { 0.0 }, total + value)
            })
        };
        let ((idle_1, total_1), (idle_2, total_2)) = (times(SCRAPE_1), times(SCRAPE_2));
        let expected = 100.0 * (1.0 - (idle_2 - idle_1) / (total_2 - total_1));
        let cpu = metrics[series::CPU_USAGE_PERCENT];
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!((cpu - expected).abs() < 1e-6, "{cpu} != {expected}");
        for line in lines_of(SCRAPE_2, "node_cpu_seconds_total") {
            let core = label_in(line, "cpu");
            let key = series(series::CPU_CORE_USAGE_PERCENT, &[("core", core)]);
            let usage = metrics.get(&key).unwrap_or_else(|| panic!("no {key}"));
            assert!((0.0..=100.0).contains(usage), "{key}: {usage}");
        }

        let elapsed =
            value_in(SCRAPE_2, "node_time_seconds") - value_in(SCRAPE_1, "node_time_seconds");
        for (counter, rate) in [
            (
                "node_network_receive_bytes_total",
                series::NETWORK_RECEIVE_BYTES_PER_SECOND,
            ),
            (
                "node_network_transmit_bytes_total",
                series::NETWORK_TRANSMIT_BYTES_PER_SECOND,
            ),
        ] {
            let mut interfaces = 0;
            for line in lines_of(SCRAPE_2, counter) {
                interfaces += 1;
                let device = label_in(line, "device");
                let written = format!("{counter}{{device=\"{device}\"}}");
                let expected =
                    (value_in(SCRAPE_2, &written) - value_in(SCRAPE_1, &written)) / elapsed;
                let key = series(rate, &[("interface", device)]);
                let got = metrics[&key];
                assert!(got >= 0.0, "{key}: {got}");
                assert!((got - expected).abs() < 1e-6, "{key}: {got} != {expected}");
            }
            assert!(interfaces > 0, "the fixture lists no interface");
        }
    }

    #[test]
    fn counters_that_went_down_yield_no_rates() {
        let scrape = |cpu0: f64, cpu1: f64, eth0: f64, wlan0: f64| {
            format!(
                "node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {cpu0}\n\
                 node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} {cpu0}\n\
                 node_cpu_seconds_total{{cpu=\"1\",mode=\"idle\"}} {cpu1}\n\
                 node_cpu_seconds_total{{cpu=\"1\",mode=\"user\"}} {cpu1}\n\
                 node_network_receive_bytes_total{{device=\"eth0\"}} {eth0}\n\
                 node_network_receive_bytes_total{{device=\"wlan0\"}} {wlan0}\n"
            )
        };
        let start = Instant::now();
        let (_, counters) = map(&scrape(100.0, 100.0, 5000.0, 5000.0), None, start);
        // Core 1 and eth0 start over (a CPU taken offline and back, a recreated
        // interface); core 0 and wlan0 count on.
        let later = start + Duration::from_secs(1);
        let (metrics, _) = map(&scrape(110.0, 3.0, 100.0, 6000.0), Some(&counters), later);
        let core = |n: &str| series(series::CPU_CORE_USAGE_PERCENT, &[("core", n)]);
        let receive = |i: &str| {
            series(
                series::NETWORK_RECEIVE_BYTES_PER_SECOND,
                &[("interface", i)],
            )
        };
        assert_eq!(metrics.get(&core("0")), Some(&50.0));
        assert_eq!(metrics.get(&core("1")), None);
        // The total counts only the cores that counted on.
        assert_eq!(metrics.get(series::CPU_USAGE_PERCENT), Some(&50.0));
        assert_eq!(metrics.get(&receive("wlan0")), Some(&1000.0));
        assert_eq!(metrics.get(&receive("eth0")), None);

        // Everything went down, as after a reboot: no rate at all.
        let (metrics, _) = map(&scrape(1.0, 1.0, 10.0, 10.0), Some(&counters), later);
        assert!(metrics.is_empty(), "{metrics:?}");
    }

    #[test]
    fn rates_use_our_clock_when_the_exporter_tells_no_time() {
        let start = Instant::now();
        let (_, counters) = map(
            "node_network_receive_bytes_total{device=\"eth0\"} 1000\n",
            None,
            start,
        );
        let (metrics, _) = map(
            "node_network_receive_bytes_total{device=\"eth0\"} 3000\n",
            Some(&counters),
            start + Duration::from_secs(2),
        );
        let key = series(
            series::NETWORK_RECEIVE_BYTES_PER_SECOND,
            &[("interface", "eth0")],
        );
        assert_eq!(metrics.get(&key), Some(&1000.0));
        // No time passed: no rate rather than an infinite one.
        let (metrics, _) = map(
            "node_network_receive_bytes_total{device=\"eth0\"} 3000\n",
            Some(&counters),
            start,
        );
        assert_eq!(metrics.get(&key), None);
    }

    #[test]
    fn temperatures_are_named_by_chip_and_sensor_or_by_zone() {
        let (metrics, _) = map(
            "node_hwmon_temp_celsius{chip=\"platform_coretemp_0\",sensor=\"temp1\"} 41.5\n\
             node_thermal_zone_temp{type=\"acpitz\",zone=\"0\"} 27.8\n",
            None,
            Instant::now(),
        );
        let sensor = |name: &str| {
            metrics
                .get(&series(series::TEMPERATURE_CELSIUS, &[("sensor", name)]))
                .copied()
        };
        assert_eq!(sensor("platform_coretemp_0/temp1"), Some(41.5));
        assert_eq!(sensor("thermal_zone0/acpitz"), Some(27.8));
        assert_eq!(metrics.len(), 2, "{metrics:?}");
    }

    #[test]
    fn node_exporter_sources_are_not_repeated_as_raw_series() {
        let (metrics, _) = map(SCRAPE_1, None, Instant::now());
        for key in metrics.keys() {
            assert!(!NODE_SERIES.contains(&series::name(key)), "{key} kept raw");
        }
        // Other series are kept as the exporter names them.
        assert_eq!(
            metrics["go_goroutines"],
            value_in(SCRAPE_1, "go_goroutines")
        );
    }

    #[test]
    fn the_raw_series_cap_keeps_the_first_series_and_every_canonical_one() {
        let extra = 100;
        let mut text = String::from("# TYPE filler gauge\n");
        // Written in descending order, so exposition order is not the sorted order.
        for n in (0..MAX_RAW_SERIES + extra).rev() {
            text.push_str(&format!("filler{{n=\"{n:04}\"}} {n}\n"));
        }
        text.push_str(
            "node_memory_MemTotal_bytes 1000\n\
             node_memory_MemAvailable_bytes 250\n\
             node_load1 0.5\n\
             node_filesystem_size_bytes{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"} 100\n\
             node_filesystem_avail_bytes{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"} 40\n",
        );
        let (metrics, _) = map(&text, None, Instant::now());
        let raw: Vec<&String> = metrics.keys().filter(|k| k.starts_with("filler")).collect();
        assert_eq!(raw.len(), MAX_RAW_SERIES);
        let kept = |n: usize| metrics.contains_key(&format!("filler{{n=\"{n:04}\"}}"));
        assert!(
            kept(MAX_RAW_SERIES + extra - 1),
            "the first series was dropped"
        );
        assert!(kept(extra), "the {MAX_RAW_SERIES}th series was dropped");
        assert!(!kept(extra - 1), "a series past the cap was kept");
        assert_eq!(metrics[series::MEMORY_USAGE_PERCENT], 75.0);
        assert_eq!(metrics[series::LOAD1], 0.5);
        assert_eq!(
            metrics[&series(series::DISK_USAGE_PERCENT, &[("mount", "/")])],
            60.0
        );
    }

    #[test]
    fn what_is_not_an_exposition_is_an_error() {
        for garbage in [
            "up",
            "<!DOCTYPE html>\n<html><body>Not Found</body></html>\n",
            "{\"cpu_usage_percent\": 3}",
            "hello world",
            "metric{label=unquoted} 1",
            "metric{label=\"unterminated} 1",
            "1metric 1",
        ] {
            let err = parse_exposition(garbage).unwrap_err();
            assert!(err.starts_with("line 1 is "), "{garbage:?}: {err}");
        }
        let err = parse_exposition("# HELP x x\n\nnot an exposition\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("`not an exposition`"),
            "{err}"
        );
        // Blanks and comments only: an exposition without samples.
        for empty in ["", "\n\n", "# HELP nothing here\n# TYPE nothing gauge\n"] {
            assert_eq!(parse_exposition(empty), Ok(ParsedExposition::default()));
        }
    }

    #[test]
    fn one_unreadable_line_is_skipped_not_fatal() {
        let parsed = parse_exposition("a 1\nthis is not a sample\nb 2\n").unwrap();
        assert_eq!(parsed.samples.len(), 2);
        assert_eq!(parsed.skipped_lines, 1);
    }

    #[test]
    fn odd_label_values_round_trip() {
        let line = r#"odd{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"",list="a,b=c",empty=""} 1.5"#;
        let parsed = parse_exposition(line).unwrap();
        let sample = &parsed.samples[0];
        assert_eq!(sample.label("path"), Some(r"C:\DIR\FILE.TXT"));
        assert_eq!(
            sample.label("error"),
            Some("Cannot find file:\n\"FILE.TXT\"")
        );
        assert_eq!(sample.label("list"), Some("a,b=c"));
        assert_eq!(sample.label("empty"), Some(""));
        let names: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["empty", "error", "list", "path"]);

        let written = sample.series();
        assert_eq!(
            written,
            r#"odd{empty="",error="Cannot find file:\n\"FILE.TXT\"",list="a,b=c",path="C:\\DIR\\FILE.TXT"}"#
        );
        let again = parse_exposition(&format!("{written} 1.5\n")).unwrap();
        assert_eq!(again.samples, parsed.samples);
        let (metrics, _) = to_metrics(&parsed, None, Instant::now());
        assert_eq!(metrics.get(&written), Some(&1.5));

        // The tokeniser stops a label set at the first `}`: such a line is skipped
        // rather than read as some other series.
        let parsed = parse_exposition("a{v=\"x}y\"} 1\nb 2\n").unwrap();
        assert_eq!(parsed.skipped_lines, 1);
        assert_eq!(parsed.samples.len(), 1);
    }

    #[test]
    fn histogram_buckets_and_summary_quantiles_are_not_kept_raw() {
        let text = r#"
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;
        let parsed = parse_exposition(text).unwrap();
        assert_eq!(parsed.samples.len(), 8);
        let (metrics, _) = to_metrics(&parsed, None, Instant::now());
        let keys: Vec<&str> = metrics.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                r#"http_request_duration_seconds_count"#,
                r#"http_request_duration_seconds_sum"#,
                r#"http_requests_total{code="200",method="post"}"#,
                "rpc_duration_seconds_count",
                "rpc_duration_seconds_sum",
            ]
        );

        let (metrics, _) = map(SCRAPE_1, None, Instant::now());
        assert!(!metrics.keys().any(|k| k.contains("quantile=")));
        assert!(metrics.contains_key("go_gc_duration_seconds_sum"));
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let parsed = parse_exposition("a NaN\nb +Inf\nc -Inf\nd 4\n").unwrap();
        assert_eq!(parsed.skipped_lines, 0);
        let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["d"]);
    }

    /// Serves fixture 1 then fixture 2 at `/metrics`, bytes that are not UTF-8 at
    /// `/latin1`, and a word at `/garbage`.
    fn serve() -> std::net::SocketAddr {
        use actix_web::{web, App, HttpResponse, HttpServer};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let scrapes = Arc::new(AtomicUsize::new(0));
        let server = HttpServer::new(move || {
            let scrapes = Arc::clone(&scrapes);
            App::new()
                .route(
                    "/metrics",
                    web::get().to(move || {
                        let n = scrapes.fetch_add(1, Ordering::SeqCst);
                        let body = if n == 0 { SCRAPE_1 } else { SCRAPE_2 };
                        async move { HttpResponse::Ok().body(body) }
                    }),
                )
                .route(
                    "/latin1",
                    web::get().to(|| async {
                        HttpResponse::Ok().body(&b"temp{place=\"caf\xe9\"} 1\n"[..])
                    }),
                )
                .route(
                    "/garbage",
                    web::get().to(|| async { HttpResponse::Ok().body("up") }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let address = server.addrs()[0];
        actix_rt::spawn(server.run());
        address
    }

    fn device(address: String) -> DeviceSpec {
        DeviceSpec {
            id: 1,
            company_id: 1,
            name: "node".into(),
            company: "acme".into(),
            address,
            kind: crate::domain::DeviceKind::Prometheus,
            expected_status: None,
        }
    }

    #[actix_rt::test]
    async fn the_probe_reads_an_exposition_over_http() {
        let address = serve();
        let probe = PrometheusProbe::new();
        let timeout = Duration::from_secs(5);
        let node = device(format!("http://{address}"));

        let first = probe.poll(&node, timeout).await;
        assert!(first.up, "{first:?}");
        assert_eq!(first.status_code, Some(200));
        assert_eq!(first.error, None);
        assert!(first.metrics.contains_key(series::MEMORY_USAGE_PERCENT));
        assert!(!first.metrics.contains_key(series::CPU_USAGE_PERCENT));
        assert!(
            first.metrics.len() <= MAX_RAW_SERIES + 100,
            "{}",
            first.metrics.len()
        );

        let second = probe.poll(&node, timeout).await;
        assert!(second.up, "{second:?}");
        let cpu = second.metrics[series::CPU_USAGE_PERCENT];
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");

        let latin1 = probe
            .poll(&device(format!("http://{address}/latin1")), timeout)
            .await;
        assert!(!latin1.up);
        assert_eq!(latin1.status_code, Some(200));
        let error = latin1.error.unwrap();
        assert!(error.contains("not UTF-8"), "{error}");

        let garbage = probe
            .poll(&device(format!("http://{address}/garbage")), timeout)
            .await;
        assert!(!garbage.up);
        assert!(garbage.metrics.is_empty());
        let error = garbage.error.unwrap();
        assert_eq!(
            error,
            "answered something that is not a Prometheus text exposition: \
             line 1 is not a sample, a comment or a blank line: `up`"
        );
    }
}
