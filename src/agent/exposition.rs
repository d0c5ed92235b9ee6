//! An [`AgentReport`] in the Prometheus text exposition format (`GET /metrics`), named
//! and scaled as Prometheus wants: base units (`_bytes`, `_seconds`, `_celsius`,
//! `_hertz`), ratios 0–1 rather than percentages, `_total` on counters.

use crate::metrics::exposition::{Exposition, Kind};

use crate::metrics::agent_report::{AgentReport, CpuCore, Disk, Network, Temperature};

/// The prefix of every family the agent serves.
pub const PREFIX: &str = "vigil_agent_";

impl AgentReport {
    /// The report as a Prometheus text exposition, every family with HELP and TYPE;
    /// families with no sample (no temperature sensors, say) are left out.
    pub fn to_exposition(&self) -> String {
        render(self)
    }
}

/// The whole report as a text exposition. Families with no sample (no temperature
/// sensors, say) are left out rather than written as a bare `# TYPE`.
pub fn render(report: &AgentReport) -> String {
    let mut out = Writer(Exposition::new());
    let info = [(
        ("hostname", report.hostname.as_str()),
        ("version", report.agent_version.as_str()),
    )];
    out.each(
        "info",
        Kind::Gauge,
        "Always 1; the labels name the host and the agent version.",
        &info,
        |(host, version)| vec![*host, *version],
        |_| Some(1.0),
    );
    out.gauge(
        "collected_timestamp_seconds",
        "When this sample was taken, in seconds since the Unix epoch.",
        report.collected_at.timestamp_millis() as f64 / 1000.0,
    );
    out.gauge(
        "sample_interval_seconds",
        "How often the agent samples the host.",
        report.interval_ms as f64 / 1000.0,
    );
    out.gauge(
        "uptime_seconds",
        "Time since the host booted.",
        report.uptime_seconds as f64,
    );
    let load = &report.load_average;
    out.gauge("load1", "Load average over 1 minute.", load.one);
    out.gauge("load5", "Load average over 5 minutes.", load.five);
    out.gauge("load15", "Load average over 15 minutes.", load.fifteen);

    out.gauge(
        "cpu_usage_ratio",
        "Busy share of all cores together over the last interval, 0 to 1.",
        report.cpu.usage_percent / 100.0,
    );
    // Cores are labelled by position, as the JSON's series are (`core="0"`, …).
    let cores: Vec<(String, &CpuCore)> = report
        .cpu
        .cores
        .iter()
        .enumerate()
        .map(|(i, core)| (i.to_string(), core))
        .collect();
    out.each(
        "cpu_core_usage_ratio",
        Kind::Gauge,
        "Busy share of one core over the last interval, 0 to 1.",
        &cores,
        |(i, _)| vec![("core", i.as_str())],
        |(_, core)| Some(core.usage_percent / 100.0),
    );
    out.each(
        "cpu_core_frequency_hertz",
        Kind::Gauge,
        "Current frequency of one core.",
        &cores,
        |(i, _)| vec![("core", i.as_str())],
        |(_, core)| Some(core.frequency_mhz as f64 * 1e6),
    );

    for (what, memory) in [("memory", &report.memory), ("swap", &report.swap)] {
        out.gauge(
            &format!("{what}_used_bytes"),
            &format!("Bytes of {what} in use."),
            memory.used_bytes as f64,
        );
        out.gauge(
            &format!("{what}_total_bytes"),
            &format!("Bytes of {what} the host has."),
            memory.total_bytes as f64,
        );
        out.gauge(
            &format!("{what}_usage_ratio"),
            &format!("Share of {what} in use, 0 to 1 (0 when there is none)."),
            memory.usage_percent / 100.0,
        );
    }

    let interface: Labels<Network> = |net| vec![("interface", net.interface.as_str())];
    let networks = &report.networks;
    out.each(
        "network_receive_bytes_total",
        Kind::Counter,
        "Bytes received on the interface since it came up.",
        networks,
        interface,
        |net| Some(net.receive_bytes_total as f64),
    );
    out.each(
        "network_transmit_bytes_total",
        Kind::Counter,
        "Bytes sent on the interface since it came up.",
        networks,
        interface,
        |net| Some(net.transmit_bytes_total as f64),
    );
    out.each(
        "network_receive_bytes_per_second",
        Kind::Gauge,
        "Bytes received per second over the last interval.",
        networks,
        interface,
        |net| Some(net.receive_bytes_per_second),
    );
    out.each(
        "network_transmit_bytes_per_second",
        Kind::Gauge,
        "Bytes sent per second over the last interval.",
        networks,
        interface,
        |net| Some(net.transmit_bytes_per_second),
    );

    let mount: Labels<Disk> = |disk| {
        vec![
            ("mount", disk.mount.as_str()),
            ("device", disk.device.as_str()),
            ("fstype", disk.file_system.as_str()),
        ]
    };
    out.each(
        "filesystem_used_bytes",
        Kind::Gauge,
        "Bytes in use on the file system (its size less what is available to users).",
        &report.disks,
        mount,
        |disk| Some(disk.used_bytes as f64),
    );
    out.each(
        "filesystem_size_bytes",
        Kind::Gauge,
        "Size of the file system in bytes.",
        &report.disks,
        mount,
        |disk| Some(disk.total_bytes as f64),
    );
    out.each(
        "filesystem_usage_ratio",
        Kind::Gauge,
        "Share of the file system in use, 0 to 1.",
        &report.disks,
        mount,
        |disk| Some(disk.usage_percent / 100.0),
    );

    let sensor: Labels<Temperature> = |t| vec![("sensor", t.sensor.as_str())];
    out.each(
        "temperature_celsius",
        Kind::Gauge,
        "Temperature the sensor reads.",
        &report.temperatures,
        sensor,
        |t| Some(t.celsius),
    );
    out.each(
        "temperature_max_celsius",
        Kind::Gauge,
        "Highest temperature the sensor has read, where the host tells.",
        &report.temperatures,
        sensor,
        |t| t.max_celsius,
    );
    out.each(
        "temperature_critical_celsius",
        Kind::Gauge,
        "The sensor's critical temperature, where the host tells.",
        &report.temperatures,
        sensor,
        |t| t.critical_celsius,
    );
    out.0.finish()
}

/// The labels of an item's sample.
type Labels<T> = fn(&T) -> Vec<(&'static str, &str)>;

/// Writes families under [`PREFIX`], leaving out those without samples.
struct Writer(Exposition);

impl Writer {
    /// One family with a sample per item that has a value.
    fn each<T>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        items: &[T],
        labels: Labels<T>,
        value: impl Fn(&T) -> Option<f64>,
    ) {
        let samples: Vec<(&T, f64)> = items
            .iter()
            .filter_map(|item| Some((item, value(item)?)))
            .collect();
        if samples.is_empty() {
            return;
        }
        let name = format!("{PREFIX}{name}");
        self.0.family(&name, kind, help);
        for (item, value) in samples {
            self.0.sample(&name, &labels(item), value);
        }
    }

    /// A family of one unlabelled gauge.
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let name = format!("{PREFIX}{name}");
        self.0.family(&name, Kind::Gauge, help);
        self.0.sample(&name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::metrics::agent_report::{Cpu, LoadAverage, Memory};

    fn report() -> AgentReport {
        AgentReport {
            hostname: "box".into(),
            agent_version: "1.2.3".into(),
            collected_at: Utc.timestamp_millis_opt(1_700_000_000_250).unwrap(),
            interval_ms: 1000,
            uptime_seconds: 3600,
            load_average: LoadAverage {
                one: 0.5,
                five: 0.25,
                fifteen: 0.125,
            },
            cpu: Cpu {
                usage_percent: 37.5,
                cores: vec![
                    CpuCore {
                        name: "cpu0".into(),
                        usage_percent: 50.0,
                        frequency_mhz: 2400,
                    },
                    CpuCore {
                        name: "cpu1".into(),
                        usage_percent: 25.0,
                        frequency_mhz: 1200,
                    },
                ],
            },
            memory: Memory {
                used_bytes: 1024,
                total_bytes: 4096,
                usage_percent: 25.0,
            },
            swap: Memory {
                used_bytes: 0,
                total_bytes: 0,
                usage_percent: 0.0,
            },
            networks: vec![Network {
                interface: "eth0".into(),
                receive_bytes_per_second: 1500.5,
                transmit_bytes_per_second: 20.0,
                receive_bytes_total: 123_456,
                transmit_bytes_total: 789,
            }],
            disks: vec![Disk {
                mount: "/".into(),
                device: "/dev/vda".into(),
                file_system: "ext4".into(),
                used_bytes: 750,
                total_bytes: 1000,
                usage_percent: 75.0,
            }],
            temperatures: vec![Temperature {
                sensor: "Core \"0\"".into(),
                celsius: 45.5,
                max_celsius: None,
                critical_celsius: Some(100.0),
            }],
        }
    }

    #[test]
    fn a_report_is_written_with_prometheus_names_units_and_ratios() {
        let text = render(&report());
        for expected in [
            "# TYPE vigil_agent_info gauge\nvigil_agent_info{hostname=\"box\",version=\"1.2.3\"} 1\n",
            "# TYPE vigil_agent_collected_timestamp_seconds gauge\nvigil_agent_collected_timestamp_seconds 1700000000.25\n",
            "vigil_agent_sample_interval_seconds 1\n",
            "vigil_agent_uptime_seconds 3600\n",
            "vigil_agent_load1 0.5\n",
            "vigil_agent_load5 0.25\n",
            "vigil_agent_load15 0.125\n",
            "# TYPE vigil_agent_cpu_usage_ratio gauge\nvigil_agent_cpu_usage_ratio 0.375\n",
            "# TYPE vigil_agent_cpu_core_usage_ratio gauge\n\
             vigil_agent_cpu_core_usage_ratio{core=\"0\"} 0.5\n\
             vigil_agent_cpu_core_usage_ratio{core=\"1\"} 0.25\n",
            "vigil_agent_cpu_core_frequency_hertz{core=\"0\"} 2400000000\n",
            "vigil_agent_memory_used_bytes 1024\n",
            "vigil_agent_memory_total_bytes 4096\n",
            "vigil_agent_memory_usage_ratio 0.25\n",
            "vigil_agent_swap_used_bytes 0\n",
            "vigil_agent_swap_total_bytes 0\n",
            "vigil_agent_swap_usage_ratio 0\n",
            "# TYPE vigil_agent_network_receive_bytes_total counter\n\
             vigil_agent_network_receive_bytes_total{interface=\"eth0\"} 123456\n",
            "# TYPE vigil_agent_network_transmit_bytes_total counter\n\
             vigil_agent_network_transmit_bytes_total{interface=\"eth0\"} 789\n",
            "# TYPE vigil_agent_network_receive_bytes_per_second gauge\n\
             vigil_agent_network_receive_bytes_per_second{interface=\"eth0\"} 1500.5\n",
            "vigil_agent_network_transmit_bytes_per_second{interface=\"eth0\"} 20\n",
            "vigil_agent_filesystem_used_bytes{mount=\"/\",device=\"/dev/vda\",fstype=\"ext4\"} 750\n",
            "vigil_agent_filesystem_size_bytes{mount=\"/\",device=\"/dev/vda\",fstype=\"ext4\"} 1000\n",
            "vigil_agent_filesystem_usage_ratio{mount=\"/\",device=\"/dev/vda\",fstype=\"ext4\"} 0.75\n",
            "# TYPE vigil_agent_temperature_celsius gauge\n\
             vigil_agent_temperature_celsius{sensor=\"Core \\\"0\\\"\"} 45.5\n",
            "vigil_agent_temperature_critical_celsius{sensor=\"Core \\\"0\\\"\"} 100\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // No max reading: the family is left out, not written empty.
        assert!(!text.contains("temperature_max_celsius"), "{text}");
    }

    #[test]
    fn every_family_has_help_and_type_once_before_its_samples() {
        let text = render(&report());
        let mut typed = Vec::new();
        let mut helped = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!typed.contains(&name), "{name} typed twice");
                assert_eq!(
                    helped.last(),
                    Some(&name),
                    "HELP must precede TYPE of {name}"
                );
                typed.push(name);
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with(PREFIX), "{line}");
                assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
            }
        }
        assert_eq!(typed.len(), 25, "{typed:?}");
    }

    #[test]
    fn a_host_without_sensors_has_no_temperature_families() {
        let mut bare = report();
        bare.temperatures.clear();
        let text = render(&bare);
        assert!(!text.contains("temperature"), "{text}");
        assert!(text.contains("vigil_agent_memory_total_bytes 4096\n"));
    }
}
