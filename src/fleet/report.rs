//! A device's reading as the Vigil agent reports it ([`AgentReport`]), named so that the
//! canonical series Vigil derives from it match those from the device's node_exporter
//! text: the same interfaces, mounts and sensor names (`chip/sensor`, as the
//! prometheus probe names hwmon sensors), values rounded alike.

use chrono::{DateTime, Utc};

use super::model::{Reading, AGENT_INTERVAL_SECONDS, CRITICAL_CELSIUS, MAX_CELSIUS};
use super::node_exporter::SENSOR_CHIP;
use super::profile::MOUNTS;
use crate::metrics::agent_report::{
    disk_usage, percent, AgentReport, Cpu, CpuCore, Disk, LoadAverage, Memory, Network, Temperature,
};

/// The agent's report of `reading`, for the device named `hostname`.
pub fn agent_report(reading: &Reading, hostname: &str) -> AgentReport {
    let p = reading.profile;
    let millis = (reading.time * 1000.0).round() as i64;
    let memory = |used: f64, total: f64| Memory {
        used_bytes: used as u64,
        total_bytes: total as u64,
        usage_percent: percent(used as u64, total as u64),
    };
    AgentReport {
        hostname: hostname.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        collected_at: DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default(),
        interval_ms: (AGENT_INTERVAL_SECONDS * 1000.0) as u64,
        uptime_seconds: reading.uptime as u64,
        load_average: LoadAverage {
            one: reading.load_average(0),
            five: reading.load_average(1),
            fifteen: reading.load_average(2),
        },
        cpu: Cpu {
            usage_percent: reading.cpu_percent,
            cores: (0..p.cpus)
                .map(|core| CpuCore {
                    name: format!("cpu{core}"),
                    usage_percent: reading.core_percent(core),
                    frequency_mhz: p.cpu_mhz,
                })
                .collect(),
        },
        memory: memory(reading.memory_used_bytes(), p.memory_bytes),
        swap: memory(reading.swap_used_bytes(), p.swap_bytes),
        networks: (0..p.interfaces)
            .map(|eth| {
                let (received, transmitted) = reading.link_bytes(eth);
                let (receive_rate, transmit_rate) = reading.link_rates(eth);
                Network {
                    interface: format!("eth{eth}"),
                    receive_bytes_per_second: receive_rate,
                    transmit_bytes_per_second: transmit_rate,
                    receive_bytes_total: received as u64,
                    transmit_bytes_total: transmitted as u64,
                }
            })
            .collect(),
        disks: MOUNTS[..p.mounts]
            .iter()
            .enumerate()
            .map(|(index, mount)| {
                let (size, free, available) = reading.filesystem(index);
                let (used, usage_percent) = disk_usage(size, free, available);
                Disk {
                    mount: mount.path.to_string(),
                    device: mount.device.to_string(),
                    file_system: mount.fstype.to_string(),
                    used_bytes: used as u64,
                    total_bytes: size as u64,
                    usage_percent,
                }
            })
            .collect(),
        temperatures: (0..p.sensors)
            .map(|sensor| Temperature {
                sensor: format!("{SENSOR_CHIP}/temp{}", sensor + 1),
                celsius: reading.celsius(sensor),
                max_celsius: Some(MAX_CELSIUS),
                critical_celsius: Some(CRITICAL_CELSIUS),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::model::{Anchor, Setting};
    use crate::fleet::node_exporter::{Reference, Templates};
    use crate::fleet::profile::{Profile, Shares, DEFAULT_SEED};
    use crate::metrics::series;

    /// Vigil's canonical series from the node_exporter text at two moments (CPU usage
    /// and rates need two), as the prometheus probe reads them.
    #[test]
    fn both_documents_give_the_same_gauges_and_sensors() {
        let templates = Templates::new(Reference::builtin().unwrap());
        for index in 0..30 {
            let profile = Profile::of(DEFAULT_SEED, &Shares::default(), index);
            let time = 1_760_000_000.0 + index as f64 * 97.0;
            let reading = Reading::at(&profile, Setting::Auto, &Anchor::BOOT, time);
            let report = agent_report(&reading, "fleet-00000");
            let mut text = String::new();
            templates
                .get(profile.shape())
                .render(&reading, "fleet-00000", &mut text);
            let parsed = crate::probe::parse_exposition(&text).unwrap();
            let from_agent = report.to_metrics();
            let value = |name: &str| parsed.value(name).unwrap();
            let used =
                value("node_memory_MemTotal_bytes") - value("node_memory_MemAvailable_bytes");
            assert_eq!(from_agent[series::MEMORY_USED_BYTES], used);
            for (i, mount) in MOUNTS[..profile.mounts].iter().enumerate() {
                let labels = format!(
                    "{{device=\"{}\",fstype=\"{}\",mountpoint=\"{}\"}}",
                    mount.device, mount.fstype, mount.path
                );
                let (_, percent) = disk_usage(
                    value(&format!("node_filesystem_size_bytes{labels}")),
                    value(&format!("node_filesystem_free_bytes{labels}")),
                    value(&format!("node_filesystem_avail_bytes{labels}")),
                );
                assert_eq!(report.disks[i].usage_percent, percent);
            }
            for t in &report.temperatures {
                let (chip, sensor) = t.sensor.split_once('/').unwrap();
                let series =
                    format!("node_hwmon_temp_celsius{{chip=\"{chip}\",sensor=\"{sensor}\"}}");
                assert_eq!(value(&series), t.celsius);
            }
            assert_eq!(value("node_load1"), report.load_average.one);
            for net in &report.networks {
                let series = format!(
                    "node_network_receive_bytes_total{{device=\"{}\"}}",
                    net.interface
                );
                assert_eq!(value(&series), net.receive_bytes_total as f64);
            }
        }
    }
}
