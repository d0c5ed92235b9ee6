//! The agent's JSON document (`GET /metrics.json`): what the agent serves and what the
//! `agent` probe reads. One type for both ends, so they cannot disagree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Metrics;
use crate::metrics::series::{self, series};

/// One sample of the host, taken by the agent's collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub hostname: String,
    /// The agent's version.
    pub agent_version: String,
    pub collected_at: DateTime<Utc>,
    /// How often the agent samples.
    pub interval_ms: u64,
    pub uptime_seconds: u64,
    pub load_average: LoadAverage,
    pub cpu: Cpu,
    pub memory: Memory,
    pub swap: Memory,
    pub networks: Vec<Network>,
    pub disks: Vec<Disk>,
    /// Empty when the host has no temperature sensors the agent can read.
    pub temperatures: Vec<Temperature>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Busy time of all cores together since the previous sample, 0–100.
    pub usage_percent: f64,
    pub cores: Vec<CpuCore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuCore {
    /// The core's name as the host calls it (`cpu0`, …).
    pub name: String,
    pub usage_percent: f64,
    pub frequency_mhz: u64,
}

/// RAM or swap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub used_bytes: u64,
    pub total_bytes: u64,
    /// `used_bytes` of `total_bytes`, 0–100 (0 when there is none).
    pub usage_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub interface: String,
    /// Rates over the interval since the previous sample.
    pub receive_bytes_per_second: f64,
    pub transmit_bytes_per_second: f64,
    /// Counters since the interface came up.
    pub receive_bytes_total: u64,
    pub transmit_bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub mount: String,
    /// The device or source the file system lives on.
    pub device: String,
    pub file_system: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
    pub usage_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
    /// The highest the sensor has read, where the host tells.
    pub max_celsius: Option<f64>,
    /// The sensor's critical mark, where the host tells.
    pub critical_celsius: Option<f64>,
}

/// `part` of `total` in percent, 0 when `total` is 0.
pub fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// Disk usage as `df` counts it: used is `total − free`, and the percentage is of what
/// users can have (`used + available`), so blocks reserved for root count neither as
/// used nor as room. Returns (used bytes, percent).
pub fn disk_usage(total: f64, free: f64, available: f64) -> (f64, f64) {
    let used = (total - free).max(0.0);
    let usable = used + available.max(0.0);
    let percent = if usable > 0.0 {
        used * 100.0 / usable
    } else {
        0.0
    };
    (used, percent)
}

impl AgentReport {
    /// The report as Vigil series (see [`crate::metrics::series`]), percentages and
    /// rates as stored (`series::percentage`, `series::per_second`); non-finite values
    /// are left out.
    pub fn to_metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        let mut put = |key: String, value: f64| {
            if value.is_finite() {
                m.insert(key, value);
            }
        };
        let percent = series::percentage;
        let per_second = series::per_second;
        put(
            series::CPU_USAGE_PERCENT.into(),
            percent(self.cpu.usage_percent),
        );
        for (i, core) in self.cpu.cores.iter().enumerate() {
            put(
                series(series::CPU_CORE_USAGE_PERCENT, &[("core", &i.to_string())]),
                percent(core.usage_percent),
            );
        }
        put(
            series::MEMORY_USED_BYTES.into(),
            self.memory.used_bytes as f64,
        );
        put(
            series::MEMORY_TOTAL_BYTES.into(),
            self.memory.total_bytes as f64,
        );
        put(
            series::MEMORY_USAGE_PERCENT.into(),
            percent(self.memory.usage_percent),
        );
        put(series::SWAP_USED_BYTES.into(), self.swap.used_bytes as f64);
        put(
            series::SWAP_TOTAL_BYTES.into(),
            self.swap.total_bytes as f64,
        );
        put(
            series::SWAP_USAGE_PERCENT.into(),
            percent(self.swap.usage_percent),
        );
        for net in &self.networks {
            let labels = [("interface", net.interface.as_str())];
            put(
                series(series::NETWORK_RECEIVE_BYTES_PER_SECOND, &labels),
                per_second(net.receive_bytes_per_second),
            );
            put(
                series(series::NETWORK_TRANSMIT_BYTES_PER_SECOND, &labels),
                per_second(net.transmit_bytes_per_second),
            );
        }
        for disk in &self.disks {
            let labels = [("mount", disk.mount.as_str())];
            put(
                series(series::DISK_USED_BYTES, &labels),
                disk.used_bytes as f64,
            );
            put(
                series(series::DISK_TOTAL_BYTES, &labels),
                disk.total_bytes as f64,
            );
            put(
                series(series::DISK_USAGE_PERCENT, &labels),
                percent(disk.usage_percent),
            );
        }
        for t in &self.temperatures {
            put(
                series(
                    series::TEMPERATURE_CELSIUS,
                    &[("sensor", t.sensor.as_str())],
                ),
                t.celsius,
            );
        }
        put(series::LOAD1.into(), self.load_average.one);
        put(series::LOAD5.into(), self.load_average.five);
        put(series::LOAD15.into(), self.load_average.fifteen);
        put(series::UPTIME_SECONDS.into(), self.uptime_seconds as f64);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::disk_usage;

    #[test]
    fn disk_usage_counts_as_df_does() {
        // A disk with a large share reserved for root: df says 21%, not 70%.
        let (used, percent) = disk_usage(270_553_174_016.0, 250_440_073_216.0, 77_459_652_608.0);
        assert_eq!(used, 20_113_100_800.0);
        assert!((percent - 20.6).abs() < 0.05, "{percent}");
        assert_eq!(disk_usage(0.0, 0.0, 0.0), (0.0, 0.0));
        // Full for users: 100%, though root still has room.
        assert_eq!(disk_usage(100.0, 5.0, 0.0).1, 100.0);
    }
}
