//! What a node reports about its own load with each heartbeat, for the balancing
//! methods that need it: the process's resident memory and thread count, and the
//! host's CPU use averaged over the last [`CPU_WINDOW`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, MINIMUM_CPU_UPDATE_INTERVAL};

use crate::domain::LoadReport;

/// CPU use is averaged over this long.
pub const CPU_WINDOW: Duration = Duration::from_secs(5);

/// Reads this process's load; one per heartbeat thread.
pub struct LoadReader {
    system: System,
    pid: Pid,
    /// `(when, CPU % since the reading before, how long that was)`, newest last.
    cpu: VecDeque<(Instant, f64, Duration)>,
    last_cpu_refresh: Instant,
}

impl LoadReader {
    /// `None` where sysinfo cannot read this system or process.
    pub fn new() -> Option<LoadReader> {
        let mut system = System::new().ok()?;
        let pid = sysinfo::get_current_pid().ok()?;
        system.refresh_cpu_usage();
        Some(LoadReader {
            system,
            pid,
            cpu: VecDeque::new(),
            last_cpu_refresh: Instant::now(),
        })
    }

    /// The load now; `None` until the CPU has been read over at least sysinfo's
    /// minimum interval, or when the process cannot be read.
    pub fn read(&mut self) -> Option<LoadReport> {
        let now = Instant::now();
        let since = now.duration_since(self.last_cpu_refresh);
        if since >= MINIMUM_CPU_UPDATE_INTERVAL {
            self.system.refresh_cpu_usage();
            self.last_cpu_refresh = now;
            self.cpu
                .push_back((now, f64::from(self.system.global_cpu_usage()), since));
            while self
                .cpu
                .front()
                .is_some_and(|(at, _, _)| now.duration_since(*at) > CPU_WINDOW)
            {
                self.cpu.pop_front();
            }
        }
        let cpu_percent = average(&self.cpu)?;
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let process = self.system.process(self.pid)?;
        let threads = process.tasks().map_or(1, |tasks| tasks.len().max(1));
        Some(LoadReport {
            memory_bytes: i64::try_from(process.memory()).unwrap_or(i64::MAX),
            cpu_percent,
            threads: i32::try_from(threads).unwrap_or(i32::MAX),
        })
    }
}

/// The time-weighted mean of the readings; `None` without any.
fn average(readings: &VecDeque<(Instant, f64, Duration)>) -> Option<f64> {
    let total: f64 = readings.iter().map(|(_, _, d)| d.as_secs_f64()).sum();
    if readings.is_empty() || total <= 0.0 {
        return None;
    }
    let weighted: f64 = readings
        .iter()
        .map(|(_, percent, d)| percent * d.as_secs_f64())
        .sum();
    Some((weighted / total).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_weighted_by_how_long_each_reading_covers() {
        let now = Instant::now();
        let readings: VecDeque<_> = [
            (now, 10.0, Duration::from_secs(3)),
            (now, 50.0, Duration::from_secs(1)),
        ]
        .into_iter()
        .collect();
        assert_eq!(average(&readings), Some(20.0));
        assert_eq!(average(&VecDeque::new()), None);
    }

    #[test]
    fn this_process_reports_memory_threads_and_cpu() {
        let mut reader = LoadReader::new().expect("sysinfo reads this system");
        assert_eq!(
            reader.read(),
            None,
            "no CPU reading before the minimum interval"
        );
        std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
        let report = reader.read().expect("a report after the minimum interval");
        assert!(report.memory_bytes > 1_000_000, "{report:?}");
        assert!(report.threads >= 1, "{report:?}");
        assert!((0.0..=100.0).contains(&report.cpu_percent), "{report:?}");
    }
}
