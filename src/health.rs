//! Judging a device's health from its polls: `critical` when CPU, memory or any disk
//! is above `critical_threshold` percent, `alert` above `alert_threshold`, `normal`
//! otherwise, and `unreachable` after `unreachable_after` failed polls in a row.
//! A failed poll short of that leaves the state as it was.

use crate::domain::{HealthState, Metrics, MonitorConfig, PollResult};
use crate::metrics::series;

/// A change of state and why it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: HealthState,
    pub to: HealthState,
    pub reason: String,
}

/// The health of one device across its polls.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    state: HealthState,
    failures_in_a_row: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        HealthTracker {
            state: HealthState::Pending,
            failures_in_a_row: 0,
        }
    }
}

impl HealthTracker {
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Takes one poll's result, judged with `config` as it is now; returns the
    /// transition when the state changed.
    pub fn observe(&mut self, result: &PollResult, config: &MonitorConfig) -> Option<Transition> {
        let (to, reason) = if result.up {
            self.failures_in_a_row = 0;
            judge(&result.metrics, config)
        } else {
            self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
            if self.failures_in_a_row < config.unreachable_after.max(1) {
                return None;
            }
            let why = result.error.as_deref().unwrap_or("the poll failed");
            (
                HealthState::Unreachable,
                format!(
                    "{} failed polls in a row; last: {why}",
                    self.failures_in_a_row
                ),
            )
        };
        if to == self.state {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        Some(Transition { from, to, reason })
    }
}

/// The state a device that answered is in, by its CPU, memory and disk percentages,
/// with the reason in words.
pub fn judge(metrics: &Metrics, config: &MonitorConfig) -> (HealthState, String) {
    let watched = metrics.iter().filter(|(key, value)| {
        value.is_finite()
            && matches!(
                series::name(key),
                series::CPU_USAGE_PERCENT
                    | series::MEMORY_USAGE_PERCENT
                    | series::DISK_USAGE_PERCENT
            )
    });
    let mut worst: Option<(&String, f64)> = None;
    for (key, &value) in watched {
        if worst.is_none_or(|(_, w)| value > w) {
            worst = Some((key, value));
        }
    }
    let Some((key, value)) = worst else {
        return (HealthState::Normal, "answered".into());
    };
    let critical = f64::from(config.critical_threshold);
    let alert = f64::from(config.alert_threshold);
    if value > critical {
        (
            HealthState::Critical,
            format!("{key} is {value:.1}, above the critical threshold {critical}"),
        )
    } else if value > alert {
        (
            HealthState::Alert,
            format!("{key} is {value:.1}, above the alert threshold {alert}"),
        )
    } else {
        (
            HealthState::Normal,
            format!("highest usage {key} is {value:.1}, within the alert threshold {alert}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(alert: u8, critical: u8, unreachable_after: u32) -> MonitorConfig {
        MonitorConfig {
            poll_interval_ms: 1000,
            timeout_ms: 500,
            alert_threshold: alert,
            critical_threshold: critical,
            max_monitors_per_server: 10,
            unreachable_after,
        }
    }

    fn up(values: &[(&str, f64)]) -> PollResult {
        let mut result = PollResult::failed(1.0, "");
        result.up = true;
        result.error = None;
        result.metrics = values.iter().map(|(k, v)| ((*k).to_string(), *v)).collect();
        result
    }

    fn down() -> PollResult {
        PollResult::failed(1.0, "connection refused")
    }

    #[test]
    fn the_worst_of_cpu_memory_and_disks_decides() {
        let c = config(70, 90, 3);
        let (state, _) = judge(&up(&[("cpu_usage_percent", 10.0)]).metrics, &c);
        assert_eq!(state, HealthState::Normal);
        let m = up(&[
            ("cpu_usage_percent", 10.0),
            ("memory_usage_percent", 75.0),
            (r#"disk_usage_percent{mount="/"}"#, 50.0),
        ]);
        let (state, reason) = judge(&m.metrics, &c);
        assert_eq!(state, HealthState::Alert);
        assert!(reason.contains("memory_usage_percent"), "{reason}");
        let m = up(&[
            ("cpu_usage_percent", 10.0),
            (r#"disk_usage_percent{mount="/data"}"#, 95.5),
        ]);
        let (state, reason) = judge(&m.metrics, &c);
        assert_eq!(state, HealthState::Critical);
        assert!(
            reason.contains(r#"disk_usage_percent{mount="/data"} is 95.5"#),
            "{reason}"
        );
        // Exactly at a threshold is not above it; other series do not count.
        let m = up(&[("cpu_usage_percent", 70.0), ("swap_usage_percent", 99.0)]);
        assert_eq!(judge(&m.metrics, &c).0, HealthState::Normal);
        assert_eq!(judge(&Metrics::new(), &c).0, HealthState::Normal);
    }

    #[test]
    fn transitions_follow_thresholds_and_a_config_change_applies_to_the_next_poll() {
        let mut tracker = HealthTracker::default();
        let mut c = config(70, 90, 3);
        let t = tracker
            .observe(&up(&[("cpu_usage_percent", 50.0)]), &c)
            .unwrap();
        assert_eq!((t.from, t.to), (HealthState::Pending, HealthState::Normal));
        assert!(tracker
            .observe(&up(&[("cpu_usage_percent", 60.0)]), &c)
            .is_none());
        let t = tracker
            .observe(&up(&[("cpu_usage_percent", 80.0)]), &c)
            .unwrap();
        assert_eq!((t.from, t.to), (HealthState::Normal, HealthState::Alert));
        let t = tracker
            .observe(&up(&[("cpu_usage_percent", 95.0)]), &c)
            .unwrap();
        assert_eq!((t.from, t.to), (HealthState::Alert, HealthState::Critical));
        // The thresholds move up: the same reading is now only an alert...
        c.critical_threshold = 97;
        let t = tracker
            .observe(&up(&[("cpu_usage_percent", 95.0)]), &c)
            .unwrap();
        assert_eq!((t.from, t.to), (HealthState::Critical, HealthState::Alert));
        // ...and then normal.
        c.alert_threshold = 96;
        let t = tracker
            .observe(&up(&[("cpu_usage_percent", 95.0)]), &c)
            .unwrap();
        assert_eq!((t.from, t.to), (HealthState::Alert, HealthState::Normal));
    }

    #[test]
    fn unreachable_takes_that_many_failures_in_a_row() {
        let mut tracker = HealthTracker::default();
        let c = config(70, 90, 3);
        tracker.observe(&up(&[]), &c);
        assert!(tracker.observe(&down(), &c).is_none());
        assert!(tracker.observe(&down(), &c).is_none());
        assert_eq!(tracker.state(), HealthState::Normal);
        // A success in between starts the count again.
        assert!(tracker.observe(&up(&[]), &c).is_none());
        assert!(tracker.observe(&down(), &c).is_none());
        assert!(tracker.observe(&down(), &c).is_none());
        let t = tracker.observe(&down(), &c).unwrap();
        assert_eq!(
            (t.from, t.to),
            (HealthState::Normal, HealthState::Unreachable)
        );
        assert!(t
            .reason
            .contains("3 failed polls in a row; last: connection refused"));
        assert!(tracker.observe(&down(), &c).is_none());
        let t = tracker.observe(&up(&[]), &c).unwrap();
        assert_eq!(
            (t.from, t.to),
            (HealthState::Unreachable, HealthState::Normal)
        );
        // With unreachable_after 1, the first failure is enough.
        let mut tracker = HealthTracker::default();
        let t = tracker.observe(&down(), &config(70, 90, 1)).unwrap();
        assert_eq!(
            (t.from, t.to),
            (HealthState::Pending, HealthState::Unreachable)
        );
    }
}
