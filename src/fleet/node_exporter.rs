//! A device's `/metrics` as a stock node_exporter 1.5 writes it: the families, HELP
//! texts, types, label sets and order of a real scrape (Debian 12's
//! `prometheus-node-exporter`, the one the prometheus probe's tests read), with the
//! device's own cores, interfaces, mounts, disks and sensors, and values that move.
//!
//! The series Vigil derives its canonical readings from (`node_cpu_seconds_total`,
//! `node_memory_*`, `node_filesystem_*`, `node_network_*_bytes_total`,
//! `node_hwmon_temp_celsius`, `node_load*`, the clocks) come from the device's
//! [`Reading`]. Every other sample keeps the reference's value: a counter grows at the
//! reference's rate (scaled by the device's activity), a gauge that moves on a real
//! host wobbles around it, the rest stay as they are.
//!
//! Rendering is the hot path of a benchmark: each device layout ([`Shape`]) is laid out
//! once as a [`Template`], the text between values written ahead, so a scrape copies
//! that text and writes some hundreds of numbers.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::model::{CpuMode, Reading, CRITICAL_CELSIUS, MAX_CELSIUS};
use super::profile::{mix, unit, Shape, DISKS, MOUNTS};
use crate::metrics::exposition::write_value;
use crate::metrics::series::{parse_labels, split, write_labels};

/// The reference scrape: a stock node_exporter 1.5 on a 2-core Debian 12 VM.
const REFERENCE: &str = include_str!("../../tests/fixtures/node_exporter_2.prom");

/// The hwmon collector's families, which the reference's VM (no sensors) lacks; HELP
/// texts as node_exporter 1.5 writes them.
const HWMON_FAMILIES: [(&str, &str); 6] = [
    (
        "node_hwmon_chip_names",
        "Annotation metric for human-readable chip names",
    ),
    ("node_hwmon_sensor_label", "Label for given chip and sensor"),
    (
        "node_hwmon_temp_celsius",
        "Hardware monitor for temperature (input)",
    ),
    (
        "node_hwmon_temp_crit_alarm_celsius",
        "Hardware monitor for temperature (crit_alarm)",
    ),
    (
        "node_hwmon_temp_crit_celsius",
        "Hardware monitor for temperature (crit)",
    ),
    (
        "node_hwmon_temp_max_celsius",
        "Hardware monitor for temperature (max)",
    ),
];
/// The chip a device's sensors are on, as the hwmon collector names it.
pub const SENSOR_CHIP: &str = "platform_coretemp_0";

/// Gauges that move on a real host; the reference's other gauges are limits, sizes,
/// flags and info that stay put.
const MOVING_GAUGES: &[&str] = &[
    "go_goroutines",
    "go_memstats_",
    "go_threads",
    "node_entropy_available_bits",
    "node_filefd_allocated",
    "node_netstat_Tcp_CurrEstab",
    "node_nf_conntrack_entries",
    "node_scrape_collector_duration_seconds",
    "node_sockstat_",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
];
/// Untyped samples (netstat, vmstat) that are not counters.
const STEADY_UNTYPED: &[&str] = &["node_netstat_Ip_Forwarding", "node_netstat_Tcp_CurrEstab"];
/// Counters the reference had below this stay as they are: they count rare events
/// (carrier changes, timeouts) that a steady rate would make common.
const RARE_EVENTS: f64 = 100.0;
/// How far a moving gauge wobbles around the reference's value, as a share of it.
const WOBBLE_SHARE: f64 = 0.1;
/// Shortest and longest period of a moving gauge's wobble, seconds.
const WOBBLE_PERIOD: (f64, f64) = (30.0, 300.0);
/// The exporter started this long after the host booted.
const EXPORTER_START_SECONDS: f64 = 12.0;
/// Go collects garbage at least this often, seconds.
const GC_PERIOD_SECONDS: f64 = 120.0;
/// Inodes per byte of an ext4 file system made with the defaults.
const BYTES_PER_INODE: f64 = 16_384.0;
/// Mean sizes of a received and a sent packet, bytes.
const RECEIVE_PACKET_BYTES: f64 = 900.0;
const TRANSMIT_PACKET_BYTES: f64 = 600.0;
/// Shares of available memory the page cache, buffers and free pages hold.
const CACHED_SHARE: f64 = 0.55;
const BUFFERS_SHARE: f64 = 0.05;

/// A family of the reference scrape.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: String,
    help: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The reference scrape, read once.
#[derive(Debug, Clone)]
pub struct Reference {
    families: Vec<Family>,
    /// Seconds between the reference host's boot and the scrape: its counters' age.
    uptime: f64,
    /// The reference host's RAM, bytes.
    memory_bytes: f64,
}

impl Reference {
    /// Reads the reference scrape built into the binary.
    pub fn builtin() -> Result<Reference, String> {
        Reference::parse(REFERENCE)
    }

    fn parse(text: &str) -> Result<Reference, String> {
        let mut families: Vec<Family> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let bad = || format!("line {} of the reference scrape: {line:?}", number + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                families.push(Family {
                    name: name.to_string(),
                    kind: "untyped".into(),
                    help: help.to_string(),
                    samples: Vec::new(),
                });
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let family = families.last_mut().ok_or_else(bad)?;
                let (_, kind) = rest.split_once(' ').ok_or_else(bad)?;
                family.kind = kind.to_string();
            } else if !line.is_empty() && !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
                let (name, labels) = split(series);
                let family = families.last_mut().ok_or_else(bad)?;
                family.samples.push(Sample {
                    name: name.to_string(),
                    labels: parse_labels(labels),
                    value: value.parse().map_err(|_| bad())?,
                });
            }
        }
        for (name, help) in HWMON_FAMILIES {
            families.push(Family {
                name: name.into(),
                kind: "gauge".into(),
                help: help.into(),
                samples: Vec::new(),
            });
        }
        // The exporter writes families sorted by name.
        families.sort_by(|a, b| a.name.cmp(&b.name));
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.samples.first())
                .map(|s| s.value)
                .ok_or_else(|| format!("the reference scrape has no {name}"))
        };
        let uptime = value("node_time_seconds")? - value("node_boot_time_seconds")?;
        let memory_bytes = value("node_memory_MemTotal_bytes")?;
        if uptime <= 0.0 || memory_bytes <= 0.0 {
            return Err("the reference scrape's uptime or memory is not positive".into());
        }
        Ok(Reference {
            families,
            uptime,
            memory_bytes,
        })
    }

    /// The template of a device with this layout.
    fn template(&self, shape: Shape) -> Template {
        let mut builder = Builder::default();
        for family in &self.families {
            let samples = self.samples_of(family, shape);
            builder.family(family, &samples);
        }
        builder.finish()
    }

    /// The samples of `family` for a device with this layout, in the exporter's order.
    fn samples_of(&self, family: &Family, shape: Shape) -> Vec<Out> {
        let name = family.name.as_str();
        let copied = |sample: &Sample| Out::copy(sample, self.model(family, sample));
        match name {
            "node_cpu_seconds_total" => (0..shape.cpus)
                .flat_map(|cpu| {
                    CpuMode::ALL.map(|mode| {
                        Out::new(
                            name,
                            &[("cpu", &cpu.to_string()), ("mode", mode.as_str())],
                            Slot::CpuSeconds { cpu, mode },
                        )
                    })
                })
                .collect(),
            // Per core: the reference's first core, for each of the device's.
            "node_cpu_guest_seconds_total"
            | "node_softnet_dropped_total"
            | "node_softnet_processed_total"
            | "node_softnet_times_squeezed_total" => (0..shape.cpus)
                .flat_map(|cpu| {
                    family
                        .samples
                        .iter()
                        .filter(|s| s.label("cpu") == Some("0"))
                        .map(move |s| copied(s).relabel(&[("cpu", cpu.to_string())]))
                        .collect::<Vec<_>>()
                })
                .collect(),
            "node_boot_time_seconds" => vec![Out::new(name, &[], Slot::BootTime)],
            "node_time_seconds" => vec![Out::new(name, &[], Slot::Time)],
            "process_start_time_seconds" => vec![Out::new(name, &[], Slot::ProcessStart)],
            "go_memstats_last_gc_time_seconds" => vec![Out::new(name, &[], Slot::LastGc)],
            "node_load1" => vec![Out::new(name, &[], Slot::Load(0))],
            "node_load5" => vec![Out::new(name, &[], Slot::Load(1))],
            "node_load15" => vec![Out::new(name, &[], Slot::Load(2))],
            "node_procs_running" => vec![Out::new(name, &[], Slot::ProcsRunning)],
            "node_uname_info" => family
                .samples
                .iter()
                .map(|s| {
                    let mut out = copied(s);
                    out.hostname = true;
                    out
                })
                .collect(),
            "node_scrape_collector_success" => family
                .samples
                .iter()
                .map(|s| match s.label("collector") {
                    Some("hwmon") => copied(s).with(Slot::Fixed(f64::from(shape.sensors > 0))),
                    _ => copied(s),
                })
                .collect(),
            _ if name.starts_with("node_memory_") => family
                .samples
                .iter()
                .map(|s| copied(s).with(self.memory_slot(name, s.value)))
                .collect(),
            _ if name.starts_with("node_filesystem_") => {
                let template = family.samples.first();
                (0..shape.mounts)
                    .filter_map(|mount| {
                        let m = &MOUNTS[mount];
                        let slot = match name {
                            "node_filesystem_avail_bytes" => Slot::FilesystemAvailable(mount),
                            "node_filesystem_free_bytes" => Slot::FilesystemFree(mount),
                            "node_filesystem_size_bytes" => Slot::FilesystemSize(mount),
                            "node_filesystem_files" => Slot::Files(mount),
                            "node_filesystem_files_free" => Slot::FilesFree(mount),
                            _ => Slot::Fixed(template?.value),
                        };
                        let labels = [
                            ("device", m.device),
                            ("fstype", m.fstype),
                            ("mountpoint", m.path),
                        ];
                        Some(Out::new(name, &labels, slot))
                    })
                    .collect()
            }
            _ if name.starts_with("node_network_") => family
                .samples
                .iter()
                .flat_map(|s| match s.label("device") {
                    Some("eth0") => (0..shape.interfaces)
                        .map(|eth| self.interface_sample(family, s, eth))
                        .collect(),
                    Some("lo") => vec![copied(s)],
                    // The reference VM's traffic-shaping devices: not on a usual host.
                    _ => Vec::new(),
                })
                .collect(),
            _ if name.starts_with("node_disk_") => {
                let disks = if shape.mounts > 2 { 2 } else { 1 };
                family
                    .samples
                    .iter()
                    .filter(|s| s.label("device") == Some(DISKS[0]))
                    .flat_map(|s| {
                        (0..disks).map(move |disk| {
                            let minor = (disk * 16).to_string();
                            let mut relabelled = copied(s);
                            relabelled.labels_set("device", DISKS[disk]);
                            if s.label("minor").is_some() {
                                relabelled.labels_set("minor", &minor);
                            }
                            relabelled
                        })
                    })
                    .collect()
            }
            _ if name.starts_with("node_hwmon_") => hwmon_samples(name, shape.sensors),
            _ => family.samples.iter().map(copied).collect(),
        }
    }

    /// Ethernet interface `eth`'s copy of the reference's `eth0` sample.
    fn interface_sample(&self, family: &Family, sample: &Sample, eth: usize) -> Out {
        let slot = match family.name.as_str() {
            "node_network_receive_bytes_total" => Slot::ReceiveBytes(eth),
            "node_network_transmit_bytes_total" => Slot::TransmitBytes(eth),
            "node_network_receive_packets_total" => Slot::ReceivePackets(eth),
            "node_network_transmit_packets_total" => Slot::TransmitPackets(eth),
            // Interface numbers: the next ones.
            "node_network_iface_id" | "node_network_iface_link" => {
                Slot::Fixed(sample.value + eth as f64)
            }
            _ => self.model(family, sample),
        };
        let mut out = Out::copy(sample, slot);
        out.labels_set("device", &format!("eth{eth}"));
        if sample.label("address").is_some() {
            out.labels_set("address", &format!("02:fc:00:00:00:{:02x}", eth + 1));
        }
        out
    }

    /// How a reference sample's value moves.
    fn model(&self, family: &Family, sample: &Sample) -> Slot {
        let value = sample.value;
        let name = sample.name.as_str();
        let counter = match family.kind.as_str() {
            "counter" => true,
            "summary" | "histogram" => name.ends_with("_sum") || name.ends_with("_count"),
            "untyped" => !STEADY_UNTYPED.contains(&name),
            _ => false,
        };
        if !value.is_finite() || value == 0.0 {
            Slot::Fixed(value)
        } else if counter && value >= RARE_EVENTS {
            Slot::Grow {
                per_second: value / self.uptime,
                whole: value.fract() == 0.0,
            }
        } else if !counter && MOVING_GAUGES.iter().any(|m| name.starts_with(m)) {
            Slot::Wobble {
                base: value,
                salt: name
                    .bytes()
                    .fold(value.to_bits(), |h, b| mix(h ^ u64::from(b))),
                whole: value.fract() == 0.0,
            }
        } else {
            Slot::Fixed(value)
        }
    }

    /// `node_memory_*`: from the device's reading where Vigil reads it, else the
    /// reference's share of its RAM.
    fn memory_slot(&self, name: &str, value: f64) -> Slot {
        match name {
            "node_memory_MemTotal_bytes" => Slot::Memory(MemoryField::Total),
            "node_memory_MemAvailable_bytes" => Slot::Memory(MemoryField::Available),
            "node_memory_MemFree_bytes" => Slot::Memory(MemoryField::Free),
            "node_memory_Cached_bytes" => Slot::Memory(MemoryField::Cached),
            "node_memory_Buffers_bytes" => Slot::Memory(MemoryField::Buffers),
            "node_memory_SwapTotal_bytes" => Slot::Memory(MemoryField::SwapTotal),
            "node_memory_SwapFree_bytes" => Slot::Memory(MemoryField::SwapFree),
            // Sizes of the kernel's, not shares of RAM.
            "node_memory_Hugepagesize_bytes" | "node_memory_VmallocTotal_bytes" => {
                Slot::Fixed(value)
            }
            _ if name.ends_with("_bytes") && value > 0.0 => {
                Slot::MemoryShare(value / self.memory_bytes)
            }
            _ => Slot::Fixed(value),
        }
    }
}

/// The hwmon families of a device with `sensors` sensors on one coretemp chip: the
/// package (`temp1`) and one per core, in the exporter's order.
fn hwmon_samples(name: &str, sensors: usize) -> Vec<Out> {
    if sensors == 0 {
        return Vec::new();
    }
    let chip = ("chip", SENSOR_CHIP);
    let sensor_name = |sensor: usize| format!("temp{}", sensor + 1);
    let per_sensor = |slot: &dyn Fn(usize) -> Slot| {
        (0..sensors)
            .map(|sensor| {
                Out::new(
                    name,
                    &[chip, ("sensor", &sensor_name(sensor))],
                    slot(sensor),
                )
            })
            .collect()
    };
    match name {
        "node_hwmon_chip_names" => vec![Out::new(
            name,
            &[chip, ("chip_name", "coretemp")],
            Slot::Fixed(1.0),
        )],
        // Sorted by label: the cores, then the package.
        "node_hwmon_sensor_label" => (1..sensors)
            .chain([0])
            .map(|sensor| {
                let label = match sensor {
                    0 => "Package id 0".to_string(),
                    core => format!("Core {}", core - 1),
                };
                Out::new(
                    name,
                    &[chip, ("label", &label), ("sensor", &sensor_name(sensor))],
                    Slot::Fixed(1.0),
                )
            })
            .collect(),
        "node_hwmon_temp_celsius" => per_sensor(&Slot::Celsius),
        "node_hwmon_temp_crit_alarm_celsius" => per_sensor(&|_| Slot::Fixed(0.0)),
        "node_hwmon_temp_crit_celsius" => per_sensor(&|_| Slot::Fixed(CRITICAL_CELSIUS)),
        "node_hwmon_temp_max_celsius" => per_sensor(&|_| Slot::Fixed(MAX_CELSIUS)),
        _ => Vec::new(),
    }
}

/// One sample line to lay out: its name, labels and how its value is had.
struct Out {
    name: String,
    labels: Vec<(String, String)>,
    slot: Slot,
    /// The `nodename` label is the device's name.
    hostname: bool,
}

impl Out {
    fn new(name: &str, labels: &[(&str, &str)], slot: Slot) -> Out {
        Out {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            slot,
            hostname: false,
        }
    }

    fn copy(sample: &Sample, slot: Slot) -> Out {
        Out {
            name: sample.name.clone(),
            labels: sample.labels.clone(),
            slot,
            hostname: false,
        }
    }

    fn with(mut self, slot: Slot) -> Out {
        self.slot = slot;
        self
    }

    fn relabel(mut self, labels: &[(&str, String)]) -> Out {
        for (key, value) in labels {
            self.labels_set(key, value);
        }
        self
    }

    fn labels_set(&mut self, key: &str, value: &str) {
        if let Some(entry) = self.labels.iter_mut().find(|(k, _)| k == key) {
            entry.1 = value.to_string();
        }
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// Written into the template's text.
    Fixed(f64),
    /// A counter growing at this rate since boot, times the device's activity.
    Grow {
        per_second: f64,
        whole: bool,
    },
    /// A gauge wobbling around `base`; `salt` sets its period and phase.
    Wobble {
        base: f64,
        salt: u64,
        whole: bool,
    },
    Time,
    BootTime,
    ProcessStart,
    LastGc,
    CpuSeconds {
        cpu: usize,
        mode: CpuMode,
    },
    Load(usize),
    ProcsRunning,
    Memory(MemoryField),
    MemoryShare(f64),
    FilesystemSize(usize),
    FilesystemFree(usize),
    FilesystemAvailable(usize),
    Files(usize),
    FilesFree(usize),
    ReceiveBytes(usize),
    TransmitBytes(usize),
    ReceivePackets(usize),
    TransmitPackets(usize),
    Celsius(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoryField {
    Total,
    Available,
    Free,
    Cached,
    Buffers,
    SwapTotal,
    SwapFree,
}

impl Slot {
    fn value(self, r: &Reading) -> f64 {
        let p = r.profile;
        match self {
            Slot::Fixed(value) => value,
            Slot::Grow { per_second, whole } => {
                let value = per_second * p.activity * r.uptime;
                if whole {
                    value.floor()
                } else {
                    value
                }
            }
            Slot::Wobble { base, salt, whole } => {
                let salt = mix(salt ^ p.index as u64);
                let period = WOBBLE_PERIOD.0 + (WOBBLE_PERIOD.1 - WOBBLE_PERIOD.0) * unit(salt);
                let phase = std::f64::consts::TAU * unit(mix(salt));
                let angle = std::f64::consts::TAU * r.uptime / period + phase;
                let value = base * (1.0 + WOBBLE_SHARE * angle.sin());
                if whole {
                    value.round()
                } else {
                    value
                }
            }
            Slot::Time => r.time,
            Slot::BootTime => p.boot_time,
            Slot::ProcessStart => p.boot_time + EXPORTER_START_SECONDS,
            Slot::LastGc => r.time - r.uptime % GC_PERIOD_SECONDS,
            Slot::CpuSeconds { cpu, mode } => r.cpu_seconds(cpu, mode),
            Slot::Load(window) => r.load_average(window),
            Slot::ProcsRunning => r.load_average(0).round() + 1.0,
            Slot::Memory(field) => {
                let available = r.memory_available_bytes();
                let kib = |bytes: f64| (bytes / 1024.0).floor() * 1024.0;
                match field {
                    MemoryField::Total => p.memory_bytes,
                    MemoryField::Available => available,
                    MemoryField::Cached => kib(available * CACHED_SHARE),
                    MemoryField::Buffers => kib(available * BUFFERS_SHARE),
                    MemoryField::Free => {
                        available - kib(available * CACHED_SHARE) - kib(available * BUFFERS_SHARE)
                    }
                    MemoryField::SwapTotal => p.swap_bytes,
                    MemoryField::SwapFree => p.swap_bytes - r.swap_used_bytes(),
                }
            }
            Slot::MemoryShare(share) => (share * p.memory_bytes / 1024.0).floor() * 1024.0,
            Slot::FilesystemSize(mount) => r.filesystem(mount).0,
            Slot::FilesystemFree(mount) => r.filesystem(mount).1,
            Slot::FilesystemAvailable(mount) => r.filesystem(mount).2,
            Slot::Files(mount) => (p.volumes[mount].size_bytes / BYTES_PER_INODE).floor(),
            Slot::FilesFree(mount) => {
                let files = (p.volumes[mount].size_bytes / BYTES_PER_INODE).floor();
                (files * (1.0 - r.disk_percent[mount] / 200.0)).floor()
            }
            Slot::ReceiveBytes(eth) => r.link_bytes(eth).0,
            Slot::TransmitBytes(eth) => r.link_bytes(eth).1,
            Slot::ReceivePackets(eth) => (r.link_bytes(eth).0 / RECEIVE_PACKET_BYTES).floor(),
            Slot::TransmitPackets(eth) => (r.link_bytes(eth).1 / TRANSMIT_PACKET_BYTES).floor(),
            Slot::Celsius(sensor) => r.celsius(sensor),
        }
    }
}

/// A device layout's exposition with its values left out: text, and where each value
/// goes.
#[derive(Debug)]
pub struct Template {
    text: String,
    /// Byte offsets into `text`, ascending, and what goes there.
    slots: Vec<(usize, Hole)>,
}

#[derive(Debug, Clone, Copy)]
enum Hole {
    Value(Slot),
    Hostname,
}

impl Template {
    /// Appends the exposition of `reading` for the device named `hostname` to `out`.
    pub fn render(&self, reading: &Reading, hostname: &str, out: &mut String) {
        out.reserve(self.text.len() + 16 * self.slots.len());
        let mut at = 0;
        for (offset, hole) in &self.slots {
            out.push_str(&self.text[at..*offset]);
            at = *offset;
            match hole {
                Hole::Value(slot) => write_value(out, slot.value(reading)),
                Hole::Hostname => out.push_str(hostname),
            }
        }
        out.push_str(&self.text[at..]);
    }
}

#[derive(Default)]
struct Builder {
    text: String,
    slots: Vec<(usize, Hole)>,
}

impl Builder {
    /// A family with HELP and TYPE, unless it has no samples (the exporter leaves
    /// such families out).
    fn family(&mut self, family: &Family, samples: &[Out]) {
        if samples.is_empty() {
            return;
        }
        let (name, kind) = (&family.name, &family.kind);
        self.text.push_str("# HELP ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(&family.help);
        self.text.push_str("\n# TYPE ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(kind);
        self.text.push('\n');
        for sample in samples {
            self.text.push_str(&sample.name);
            if !sample.labels.is_empty() {
                self.text.push('{');
                let labels = sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                if sample.hostname {
                    // Everything up to the nodename's value, the name, then the rest.
                    for (i, (key, value)) in labels.enumerate() {
                        if i > 0 {
                            self.text.push(',');
                        }
                        if key == "nodename" {
                            self.text.push_str("nodename=\"");
                            self.slots.push((self.text.len(), Hole::Hostname));
                            self.text.push('"');
                        } else {
                            write_labels(&mut self.text, [(key, value)]);
                        }
                    }
                } else {
                    write_labels(&mut self.text, labels);
                }
                self.text.push('}');
            }
            self.text.push(' ');
            match sample.slot {
                Slot::Fixed(value) => write_value(&mut self.text, value),
                slot => self.slots.push((self.text.len(), Hole::Value(slot))),
            }
            self.text.push('\n');
        }
    }

    fn finish(self) -> Template {
        Template {
            text: self.text,
            slots: self.slots,
        }
    }
}

/// The templates of every layout met so far, laid out on first use.
#[derive(Debug)]
pub struct Templates {
    reference: Reference,
    laid_out: RwLock<HashMap<Shape, Arc<Template>>>,
}

impl Templates {
    pub fn new(reference: Reference) -> Templates {
        Templates {
            reference,
            laid_out: RwLock::new(HashMap::new()),
        }
    }

    /// The template of layout `shape`.
    pub fn get(&self, shape: Shape) -> Arc<Template> {
        // A panic elsewhere while holding the lock leaves the map whole: every entry
        // is inserted complete.
        if let Some(template) = self
            .laid_out
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&shape)
        {
            return Arc::clone(template);
        }
        let template = Arc::new(self.reference.template(shape));
        let mut laid_out = self
            .laid_out
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(laid_out.entry(shape).or_insert(template))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::model::{Anchor, Setting};
    use crate::fleet::profile::{Profile, Shares, DEFAULT_SEED};
    use crate::probe::parse_exposition;

    fn render(index: usize, time: f64) -> (Profile, String) {
        let templates = Templates::new(Reference::builtin().unwrap());
        let profile = Profile::of(DEFAULT_SEED, &Shares::default(), index);
        let reading = Reading::at(&profile, Setting::Auto, &Anchor::BOOT, time);
        let mut out = String::new();
        templates
            .get(profile.shape())
            .render(&reading, "fleet-00001", &mut out);
        (profile, out)
    }

    #[test]
    fn the_reference_is_read_with_its_families_and_clock() {
        let reference = Reference::builtin().unwrap();
        assert!(
            reference.families.len() > 250,
            "{}",
            reference.families.len()
        );
        assert!(
            (600.0..1000.0).contains(&reference.uptime),
            "{}",
            reference.uptime
        );
        let names: Vec<&str> = reference.families.iter().map(|f| f.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn a_device_reads_like_a_node_exporter_of_its_own_layout() {
        const NOW: f64 = 1_760_000_000.5;
        for index in 0..40 {
            let (profile, text) = render(index, NOW);
            let parsed = parse_exposition(&text).unwrap();
            assert_eq!(parsed.skipped_lines, 0);
            let count = |name: &str| parsed.samples.iter().filter(|s| s.name() == name).count();
            assert_eq!(count("node_cpu_seconds_total"), profile.cpus * 8);
            assert_eq!(count("node_filesystem_size_bytes"), profile.mounts);
            assert_eq!(
                count("node_network_receive_bytes_total"),
                profile.interfaces
            );
            assert_eq!(count("node_hwmon_temp_celsius"), profile.sensors);
            assert!(
                (400..700).contains(&parsed.samples.len()),
                "{} samples",
                parsed.samples.len()
            );
            assert!(
                (40_000..80_000).contains(&text.len()),
                "{} bytes",
                text.len()
            );
            assert!(text.contains("nodename=\"fleet-00001\""));
            assert_eq!(parsed.value("node_time_seconds"), Some(NOW));
            let total = parsed.value("node_memory_MemTotal_bytes").unwrap();
            let available = parsed.value("node_memory_MemAvailable_bytes").unwrap();
            let reading = Reading::at(&profile, Setting::Auto, &Anchor::BOOT, NOW);
            let percent = 100.0 * (total - available) / total;
            assert!((percent - reading.memory_percent).abs() < 0.01);
        }
    }

    #[test]
    fn counters_grow_and_gauges_move_between_scrapes() {
        let (_, before) = render(3, 1_760_000_000.0);
        let (_, after) = render(3, 1_760_000_300.0);
        let (before, after) = (
            parse_exposition(&before).unwrap(),
            parse_exposition(&after).unwrap(),
        );
        let mut grew = 0;
        for (a, b) in before.samples.iter().zip(&after.samples) {
            assert_eq!(a.series(), b.series());
            if a.kind() == crate::probe::SampleKind::Counter {
                assert!(b.value() >= a.value(), "{} went back", a.series());
                grew += usize::from(b.value() > a.value());
            }
        }
        assert!(grew > 50, "only {grew} counters grew");
        for gauge in [
            "go_goroutines",
            "node_load1",
            "process_resident_memory_bytes",
        ] {
            assert_ne!(
                before.value(gauge),
                after.value(gauge),
                "{gauge} stood still"
            );
        }
    }
}
