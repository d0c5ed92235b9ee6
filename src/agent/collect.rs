//! Sampling this host with sysinfo on a thread of its own: every interval the
//! [`Collector`] refreshes CPU, memory, networks, disks and sensors and publishes an
//! [`AgentReport`] as the latest sample, which readers take without waiting.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use sysinfo::{
    Components, CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, System,
    MINIMUM_CPU_UPDATE_INTERVAL,
};
use tokio::sync::watch;

use crate::metrics::agent_report::{
    disk_usage, percent, AgentReport, Cpu, CpuCore, Disk, LoadAverage, Memory, Network, Temperature,
};

/// How often the agent samples unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest interval that gives real CPU percentages: sysinfo needs this much time
/// between two CPU refreshes.
pub const MIN_INTERVAL: Duration = MINIMUM_CPU_UPDATE_INTERVAL;

/// Why there is no sample to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSample {
    /// The collector has not finished its first sample yet.
    NotYet,
    /// The collector thread is gone (stopped, or died: the log says which).
    Stopped,
}

/// A reader of the latest sample; clones are cheap and share the one collector.
#[derive(Debug, Clone)]
pub struct Latest(watch::Receiver<Option<Arc<AgentReport>>>);

/// The collector's end of a [`Latest`].
pub(crate) type Publish = watch::Sender<Option<Arc<AgentReport>>>;

impl Latest {
    /// A reader and the sender that feeds it; the reader sees [`NoSample::Stopped`]
    /// once the sender is dropped.
    pub(crate) fn channel() -> (Publish, Latest) {
        let (publish, latest) = watch::channel(None);
        (publish, Latest(latest))
    }

    /// The newest sample. Never waits on a collection: it only clones an `Arc`.
    pub fn get(&self) -> Result<Arc<AgentReport>, NoSample> {
        // A sample of a collector that is gone would go stale without anyone noticing.
        if self.0.has_changed().is_err() {
            return Err(NoSample::Stopped);
        }
        self.0.borrow().clone().ok_or(NoSample::NotYet)
    }
}

/// What keeps [`Collector::start`] from starting.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read this host's metrics: {0}")]
    Unsupported(#[from] sysinfo::Error),
    #[error("cannot start the collector thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The sampling thread and the reader of what it publishes. Dropping it stops the
/// thread at its next wake-up, which comes at once: it waits on the stop channel.
#[derive(Debug)]
pub struct Collector {
    latest: Latest,
    interval: Duration,
    /// Dropped to stop the thread: its wait then ends with `Disconnected`.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Starts sampling every `interval` (raised to [`MIN_INTERVAL`] if shorter). The
    /// first sample is published [`MIN_INTERVAL`] after the start, so its CPU
    /// percentages are real. Cheap: every sysinfo refresh happens on the new thread.
    pub fn start(interval: Duration) -> Result<Collector, CollectError> {
        let interval = interval.max(MIN_INTERVAL);
        let sampler = Sampler::new(interval)?;
        let (publish, latest) = Latest::channel();
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vigil-agent-collector".into())
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    run(sampler, interval, &publish, &stopped)
                }));
                if outcome.is_err() {
                    tracing::error!(
                        "the agent's collector panicked; the agent answers 503 from now on"
                    );
                }
            })?;
        Ok(Collector {
            latest,
            interval,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn latest(&self) -> Latest {
        self.latest.clone()
    }

    /// The interval actually used.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Stops the thread and waits for it to end (at most one sample's work).
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Whether the thread has ended.
    pub fn is_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

/// The thread's loop: prime, then one sample per tick until told to stop.
fn run(mut sampler: Sampler, interval: Duration, publish: &Publish, stop: &mpsc::Receiver<()>) {
    sampler.prime();
    let mut next = Instant::now() + MIN_INTERVAL;
    // Anything but a timeout (a stop message, or the stop sender dropped) ends the loop.
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(next.saturating_duration_since(Instant::now()))
    {
        publish.send_replace(Some(Arc::new(sampler.sample())));
        next += interval;
        let now = Instant::now();
        if next < now {
            // A slow refresh (a hung network mount): skip the ticks it ate.
            tracing::warn!(
                interval_ms = interval.as_millis() as u64,
                "sampling took longer than the interval"
            );
            next = now + interval;
        }
    }
    tracing::debug!("agent collector stopped");
}

/// The sysinfo state kept between samples: CPU usage and network rates are deltas
/// against the previous refresh.
struct Sampler {
    system: System,
    networks: Networks,
    disks: Disks,
    components: Components,
    interval: Duration,
    /// When the networks were last refreshed: sysinfo's `received()`/`transmitted()`
    /// count bytes since then, and rates divide by the time actually elapsed.
    networks_at: Instant,
}

impl Sampler {
    /// Empty sysinfo collections; nothing is read from the host yet.
    fn new(interval: Duration) -> Result<Sampler, sysinfo::Error> {
        Ok(Sampler {
            system: System::new()?,
            networks: Networks::new()?,
            disks: Disks::new()?,
            components: Components::new()?,
            interval,
            networks_at: Instant::now(),
        })
    }

    /// The first refresh, the baseline of the first sample's deltas.
    fn prime(&mut self) {
        self.refresh();
    }

    /// Refreshes everything; returns the seconds since the previous network refresh.
    fn refresh(&mut self) -> Duration {
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::everything());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        self.networks.refresh(true);
        let now = Instant::now();
        let elapsed = now.duration_since(self.networks_at);
        self.networks_at = now;
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        self.components.refresh(true);
        elapsed
    }

    fn sample(&mut self) -> AgentReport {
        let elapsed = self.refresh();
        let load = System::load_average().ok();
        AgentReport {
            hostname: hostname(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            collected_at: Utc::now(),
            interval_ms: self.interval.as_millis() as u64,
            uptime_seconds: System::uptime().unwrap_or(0),
            load_average: LoadAverage {
                one: load.as_ref().map_or(0.0, |l| l.one),
                five: load.as_ref().map_or(0.0, |l| l.five),
                fifteen: load.as_ref().map_or(0.0, |l| l.fifteen),
            },
            cpu: Cpu {
                usage_percent: f64::from(self.system.global_cpu_usage()),
                cores: self
                    .system
                    .cpus()
                    .iter()
                    .map(|cpu| CpuCore {
                        name: cpu.name().into(),
                        usage_percent: f64::from(cpu.usage()),
                        frequency_mhz: cpu.frequency(),
                    })
                    .collect(),
            },
            memory: memory(self.system.used_memory(), self.system.total_memory()),
            swap: memory(self.system.used_swap(), self.system.total_swap()),
            networks: self.networks(elapsed),
            disks: self.disks(),
            temperatures: self.temperatures(),
        }
    }

    fn networks(&self, elapsed: Duration) -> Vec<Network> {
        let mut networks: Vec<Network> = self
            .networks
            .iter()
            .map(|(name, data)| Network {
                interface: name.to_string_lossy().into_owned(),
                receive_bytes_per_second: rate(data.received(), elapsed),
                transmit_bytes_per_second: rate(data.transmitted(), elapsed),
                receive_bytes_total: data.total_received(),
                transmit_bytes_total: data.total_transmitted(),
            })
            .collect();
        networks.sort_by(|a, b| a.interface.cmp(&b.interface));
        networks
    }

    fn disks(&self) -> Vec<Disk> {
        disks(self.disks.iter())
    }

    fn temperatures(&self) -> Vec<Temperature> {
        temperatures(self.components.iter())
    }
}

/// One entry per mount point (the first sysinfo lists wins: a file system mounted
/// twice at one place would otherwise be two series with the same labels).
pub fn disks<'a>(listed: impl IntoIterator<Item = &'a sysinfo::Disk>) -> Vec<Disk> {
    let mut seen = HashSet::new();
    listed
        .into_iter()
        .filter(|disk| seen.insert(disk.mount_point().to_path_buf()))
        .map(|disk| {
            let total = disk.total_space();
            let available = disk.available_space();
            // sysinfo does not tell free blocks (reserved ones included); statvfs does.
            // Without them, reserved blocks count as used.
            let free = rustix::fs::statvfs(disk.mount_point())
                .map(|fs| fs.f_bfree.saturating_mul(fs.f_frsize))
                .unwrap_or(available);
            let (used, usage_percent) = disk_usage(total as f64, free as f64, available as f64);
            Disk {
                mount: disk.mount_point().to_string_lossy().into_owned(),
                device: disk.name().to_string_lossy().into_owned(),
                file_system: disk.file_system().to_string_lossy().into_owned(),
                used_bytes: used as u64,
                total_bytes: total,
                usage_percent,
            }
        })
        .collect()
}

/// The sensors that have a reading; a label seen before gets ` #2`, ` #3`, … so each
/// sensor stays one series.
pub fn temperatures<'a>(
    components: impl IntoIterator<Item = &'a sysinfo::Component>,
) -> Vec<Temperature> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for component in components {
        let Some(celsius) = finite(component.temperature()) else {
            continue;
        };
        let label = component.label();
        let mut sensor = label.to_string();
        let mut n = 1;
        while !seen.insert(sensor.clone()) {
            n += 1;
            sensor = format!("{label} #{n}");
        }
        out.push(Temperature {
            sensor,
            celsius,
            max_celsius: finite(component.max()),
            critical_celsius: finite(component.critical()),
        });
    }
    out
}

fn finite(reading: Option<f32>) -> Option<f64> {
    reading.map(f64::from).filter(|value| value.is_finite())
}

fn memory(used: u64, total: u64) -> Memory {
    Memory {
        used_bytes: used,
        total_bytes: total,
        usage_percent: percent(used, total),
    }
}

/// This host's name as sysinfo reads it, else as the C library does.
pub fn hostname() -> String {
    System::host_name()
        .unwrap_or_else(|_| gethostname::gethostname().to_string_lossy().into_owned())
}

/// Bytes per second over `elapsed`; 0 when no time has passed.
pub fn rate(bytes: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_divide_the_bytes_by_the_elapsed_time() {
        assert_eq!(rate(1000, Duration::from_secs(1)), 1000.0);
        assert_eq!(rate(1000, Duration::from_millis(250)), 4000.0);
        assert_eq!(rate(0, Duration::from_secs(2)), 0.0);
        assert_eq!(rate(1000, Duration::ZERO), 0.0);
    }

    #[test]
    fn the_first_sample_comes_after_the_cpu_minimum_and_then_every_interval() {
        let collector = Collector::start(MIN_INTERVAL).unwrap();
        let latest = collector.latest();
        assert_eq!(latest.get(), Err(NoSample::NotYet));
        let started = Instant::now();
        let first = loop {
            if let Ok(report) = latest.get() {
                break report;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no sample");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(started.elapsed() >= MIN_INTERVAL - Duration::from_millis(20));
        assert_eq!(first.interval_ms, MIN_INTERVAL.as_millis() as u64);
        assert!(!first.cpu.cores.is_empty());
        assert!((0.0..=100.0).contains(&first.cpu.usage_percent));
        assert!(first.memory.total_bytes > 0);
        assert!(first.networks.iter().any(|n| n.interface == "lo") || !cfg!(target_os = "linux"));
        let second = loop {
            let report = latest.get().unwrap();
            if report.collected_at > first.collected_at {
                break report;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no second sample"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(second.collected_at > first.collected_at);
        collector.stop();
    }

    #[test]
    fn dropping_the_collector_ends_its_thread_and_readers_see_it_stopped() {
        let collector = Collector::start(Duration::from_secs(3600)).unwrap();
        let latest = collector.latest();
        assert!(!collector.is_stopped());
        collector.stop();
        assert_eq!(latest.get(), Err(NoSample::Stopped));

        let collector = Collector::start(Duration::from_secs(3600)).unwrap();
        let latest = collector.latest();
        drop(collector);
        let started = Instant::now();
        while latest.get() != Err(NoSample::Stopped) {
            assert!(started.elapsed() < Duration::from_secs(5), "still running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_interval_below_the_cpu_minimum_is_raised_to_it() {
        let collector = Collector::start(Duration::from_millis(1)).unwrap();
        assert_eq!(collector.interval(), MIN_INTERVAL);
    }
}
