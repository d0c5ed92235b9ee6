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
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use prometheus_parse::{LineInfo, SampleType};

use super::http::DeviceClient;
use super::policy::AddressPolicy;
use super::poll::{document_url, Probe};
use crate::domain::{DeviceSpec, Metrics, PollResult};
use crate::metrics::agent_report::disk_usage;
use crate::metrics::series::{self, series, write_labels};

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
#[path = "prometheus_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "exposition_timing.rs"]
mod timing;
