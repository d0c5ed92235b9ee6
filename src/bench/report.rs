//! What a benchmark found: rows of measures, each with Vigil's figure, the peer's from
//! the same run where there is one, their ratio, and the target it is held against;
//! printed as a Markdown table and written as JSON under `target/bench/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// The machine a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
}

impl Machine {
    pub fn this() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        Machine {
            cores: crate::config::default_poll_threads(),
            memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            cpu,
        }
    }
}

/// Which way is better for a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A target a measure is held against.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// As the issue states it, e.g. `≤ 0.5 × Prometheus` or `≥ 5000 polls/s`.
    pub text: String,
    pub met: bool,
}

/// One measure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub measure: String,
    pub unit: String,
    pub better: Better,
    pub vigil: f64,
    /// The peer's figure from the same run: (peer's name, value).
    pub peer: Option<(String, f64)>,
    /// Vigil's figure ÷ the peer's.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(measure: impl Into<String>, unit: &str, better: Better, vigil: f64) -> Row {
        Row {
            measure: measure.into(),
            unit: unit.into(),
            better,
            vigil,
            peer: None,
            ratio: None,
            target: None,
        }
    }

    /// The peer's figure for the same measure, from the same run.
    pub fn peer(mut self, name: &str, value: f64) -> Row {
        self.ratio = (value != 0.0).then(|| self.vigil / value);
        self.peer = Some((name.into(), value));
        self
    }

    /// Held against `text`; `met` says whether it is reached.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Row {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }

    /// Target: Vigil's figure is at most `limit` (its own unit).
    pub fn at_most(self, limit: f64) -> Row {
        let met = self.vigil <= limit;
        let text = format!("≤ {} {}", number(limit), self.unit);
        self.target(text, met)
    }

    /// Target: Vigil's figure is at least `limit` (its own unit).
    pub fn at_least(self, limit: f64) -> Row {
        let met = self.vigil >= limit;
        let text = format!("≥ {} {}", number(limit), self.unit);
        self.target(text, met)
    }

    /// Target: the ratio to the peer is at most `limit`.
    pub fn ratio_at_most(self, limit: f64) -> Row {
        let met = self.ratio.is_some_and(|r| r <= limit);
        let peer = self.peer.as_ref().map_or("peer", |(name, _)| name.as_str());
        let text = format!("≤ {} × {peer}", number(limit));
        self.target(text, met)
    }

    /// Target: the ratio to the peer is at least `limit`.
    pub fn ratio_at_least(self, limit: f64) -> Row {
        let met = self.ratio.is_some_and(|r| r >= limit);
        let peer = self.peer.as_ref().map_or("peer", |(name, _)| name.as_str());
        let text = format!("≥ {} × {peer}", number(limit));
        self.target(text, met)
    }
}

/// A benchmark's findings.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The command that produced it.
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub machine: Machine,
    /// Sizes and settings of the run.
    pub params: BTreeMap<String, Value>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.into(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_at: Utc::now(),
            machine: Machine::this(),
            params: BTreeMap::new(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn param(&mut self, key: &str, value: impl Into<Value>) {
        self.params.insert(key.into(), value.into());
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The report as Markdown: a heading line, the table, the notes.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} — {} ({} cores, {} GiB, {})\n`{}`\n\n",
            self.scenario,
            self.started_at.format("%Y-%m-%d %H:%M UTC"),
            self.machine.cores,
            self.machine.memory_gib,
            self.machine.cpu,
            self.command
        );
        if !self.params.is_empty() {
            let params: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("{}\n\n", params.join(", ")));
        }
        out.push_str("| measure | Vigil | peer (same run) | Vigil ÷ peer | target |\n");
        out.push_str("|---|---|---|---|---|\n");
        for row in &self.rows {
            let peer = row.peer.as_ref().map_or("—".to_string(), |(name, value)| {
                format!("{name}: {} {}", number(*value), row.unit)
            });
            let ratio = row.ratio.map_or("—".to_string(), |r| format!("{r:.2}"));
            let target = row.target.as_ref().map_or("—".to_string(), |t| {
                format!("{} {}", t.text, if t.met { "(met)" } else { "(missed)" })
            });
            out.push_str(&format!(
                "| {} | {} {} | {peer} | {ratio} | {target} |\n",
                row.measure,
                number(row.vigil),
                row.unit
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        out.push('\n');
        out
    }

    /// Writes the report as `<dir>/<name>.json` and answers the path.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{name}.json"));
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// A figure as a person reads it: thousands separated, at most three significant
/// decimals for small ones.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.fract() == 0.0 {
        // Counts (batches, samples dropped) read as whole numbers.
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The median of some timings (zero for none).
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_a_person_writes_them() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(-5300.0), "-5,300");
        assert_eq!(number(549.2), "549");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(3.7), "3.70");
        assert_eq!(number(0.16), "0.160");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(4.0), "4");
    }

    #[test]
    fn targets_say_whether_they_are_met() {
        let row = Row::new("CPU per poll", "ms", Better::Lower, 0.4)
            .peer("Prometheus", 0.96)
            .ratio_at_most(0.5);
        let target = row.target.unwrap();
        assert!(target.met);
        assert_eq!(target.text, "≤ 0.500 × Prometheus");
        let row = Row::new("polls", "polls/s", Better::Higher, 4000.0).at_least(5000.0);
        assert!(!row.target.unwrap().met);
    }
}
