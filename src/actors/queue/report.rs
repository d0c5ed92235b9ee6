//! The `report` kind: per device over a window of stored samples, its availability
//! (the share of its polls that answered), the least, mean, 95th percentile and
//! greatest CPU, memory and disk use (a poll's disk use is its fullest disk's), the
//! time it spent in each health state, and its events; kept with the job as JSON and
//! downloadable as CSV.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::series;

/// What a report says of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub device_id: i64,
    pub name: String,
    /// Polls stored in the window.
    pub polls: u64,
    /// Polls that answered (`up` = 1), in percent of `polls`; `None` without polls.
    pub availability_percent: Option<f64>,
    pub cpu_percent: Option<Spread>,
    pub memory_percent: Option<Spread>,
    pub disk_percent: Option<Spread>,
    /// Seconds in each state within the window, as its events tell.
    pub seconds_in_state: BTreeMap<String, f64>,
    /// Events (health changes and moves) within the window.
    pub events: u64,
}

/// The least, mean, 95th percentile (nearest rank) and greatest of some readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: f64,
    pub avg: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        // Nearest rank: the smallest value with at least 95% of the values at or below it.
        let rank = (0.95 * n as f64).ceil() as usize;
        Some(Spread {
            min: values[0],
            avg: values.iter().sum::<f64>() / n as f64,
            p95: values[rank.clamp(1, n) - 1],
            max: values[n - 1],
        })
    }
}

/// The readings of one device a report is made of, gathered poll by poll.
#[derive(Debug, Default)]
pub struct Readings {
    /// `up` of every poll, by poll time.
    up: BTreeMap<i64, f64>,
    cpu: Vec<f64>,
    memory: Vec<f64>,
    /// The fullest disk of every poll, by poll time.
    disk: BTreeMap<i64, f64>,
}

impl Readings {
    /// Whether a series is one a report reads.
    pub fn wants(name: &str) -> bool {
        name == series::UP
            || name == series::CPU_USAGE_PERCENT
            || name == series::MEMORY_USAGE_PERCENT
            || series::split(name).0 == series::DISK_USAGE_PERCENT
    }

    pub fn add(&mut self, at_ms: i64, name: &str, value: f64) {
        if name == series::UP {
            self.up.insert(at_ms, value);
        } else if name == series::CPU_USAGE_PERCENT {
            self.cpu.push(value);
        } else if name == series::MEMORY_USAGE_PERCENT {
            self.memory.push(value);
        } else if series::split(name).0 == series::DISK_USAGE_PERCENT {
            let fullest = self.disk.entry(at_ms).or_insert(value);
            *fullest = fullest.max(value);
        }
    }

    /// The device's report over `[from_ms, to_ms)`, its state when the window began
    /// being `initial` and its health changes within it `(at_ms, to state)` in time
    /// order, `events` events in all.
    pub fn report(
        self,
        (device_id, name): (i64, String),
        (from_ms, to_ms): (i64, i64),
        initial: &str,
        changes: &[(i64, String)],
        events: u64,
    ) -> DeviceReport {
        let polls = self.up.len() as u64;
        let answered = self.up.values().filter(|v| **v >= 1.0).count() as f64;
        DeviceReport {
            device_id,
            name,
            polls,
            availability_percent: (polls > 0).then(|| 100.0 * answered / polls as f64),
            cpu_percent: Spread::of(self.cpu),
            memory_percent: Spread::of(self.memory),
            disk_percent: Spread::of(self.disk.into_values().collect()),
            seconds_in_state: seconds_in_state((from_ms, to_ms), initial, changes),
            events,
        }
    }
}

/// Seconds in each state over `[from_ms, to_ms)`: `initial` from the start, then each
/// change's state from its time.
pub fn seconds_in_state(
    (from_ms, to_ms): (i64, i64),
    initial: &str,
    changes: &[(i64, String)],
) -> BTreeMap<String, f64> {
    let mut seconds = BTreeMap::new();
    let mut state = initial.to_string();
    let mut since = from_ms;
    for (at_ms, to) in changes {
        let at_ms = (*at_ms).clamp(from_ms, to_ms);
        *seconds.entry(state).or_insert(0.0) += (at_ms - since) as f64 / 1000.0;
        state = to.clone();
        since = at_ms;
    }
    *seconds.entry(state).or_insert(0.0) += (to_ms - since).max(0) as f64 / 1000.0;
    seconds.retain(|_, s| *s > 0.0);
    seconds
}

/// A report as CSV: a header and a row per device.
pub fn csv(devices: &[DeviceReport]) -> String {
    let states = ["pending", "normal", "alert", "critical", "unreachable"];
    let mut out = String::from(
        "device_id,name,polls,availability_percent,\
         cpu_min,cpu_avg,cpu_p95,cpu_max,memory_min,memory_avg,memory_p95,memory_max,\
         disk_min,disk_avg,disk_p95,disk_max,",
    );
    out.push_str(
        &states
            .iter()
            .map(|s| format!("seconds_{s}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str(",events\n");
    let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for d in devices {
        let mut fields = vec![
            d.device_id.to_string(),
            quoted(&d.name),
            d.polls.to_string(),
            number(d.availability_percent),
        ];
        for spread in [d.cpu_percent, d.memory_percent, d.disk_percent] {
            for pick in [
                |s: Spread| s.min,
                |s: Spread| s.avg,
                |s: Spread| s.p95,
                |s: Spread| s.max,
            ] {
                fields.push(number(spread.map(pick)));
            }
        }
        for state in states {
            fields.push(number(d.seconds_in_state.get(state).copied()));
        }
        fields.push(d.events.to_string());
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field: quoted, inner quotes doubled, when it holds a comma, quote or line
/// break.
pub(super) fn quoted(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_are_computed_as_by_hand() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Spread::of(values).unwrap();
        // 95% of 20 is 19: the 19th smallest.
        assert_eq!((s.min, s.avg, s.p95, s.max), (1.0, 10.5, 19.0, 20.0));
        let one = Spread::of(vec![42.0]).unwrap();
        assert_eq!((one.min, one.p95, one.max), (42.0, 42.0, 42.0));
        assert_eq!(Spread::of(vec![f64::NAN]), None);
    }

    #[test]
    fn time_in_each_state_follows_the_changes_within_the_window() {
        let changes = vec![
            (4_000, "critical".to_string()),
            (7_000, "normal".to_string()),
        ];
        let seconds = seconds_in_state((0, 10_000), "normal", &changes);
        assert_eq!(seconds.get("normal"), Some(&7.0));
        assert_eq!(seconds.get("critical"), Some(&3.0));
        assert_eq!(
            seconds_in_state((0, 10_000), "alert", &[]).get("alert"),
            Some(&10.0)
        );
    }

    #[test]
    fn a_poll_counts_its_fullest_disk_and_availability_is_the_share_answered() {
        let mut readings = Readings::default();
        for (at, up, root, data) in [
            (1, 1.0, 10.0, 40.0),
            (2, 1.0, 20.0, 5.0),
            (3, 0.0, 30.0, 1.0),
            (4, 1.0, 50.0, 2.0),
        ] {
            readings.add(at, "up", up);
            readings.add(at, r#"disk_usage_percent{mount="/"}"#, root);
            readings.add(at, r#"disk_usage_percent{mount="/data"}"#, data);
            readings.add(at, "cpu_usage_percent", up * 10.0);
        }
        assert!(Readings::wants(r#"disk_usage_percent{mount="/"}"#));
        assert!(!Readings::wants("disk_used_bytes"));
        let report = readings.report((7, "web".into()), (0, 1000), "normal", &[], 2);
        assert_eq!(report.polls, 4);
        assert_eq!(report.availability_percent, Some(75.0));
        let disk = report.disk_percent.unwrap();
        assert_eq!((disk.min, disk.max, disk.avg), (20.0, 50.0, 35.0));
        assert_eq!(report.cpu_percent.unwrap().avg, 7.5);
        let text = csv(&[report]);
        assert!(text.starts_with("device_id,name,polls,availability_percent,cpu_min"));
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("7,web,4,75,0,7.5,10,10,,,,,20,35,50,50,"));
        assert_eq!(quoted("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
