//! Writing the Prometheus text exposition format (version 0.0.4), as the agent, the
//! monitor servers and the coordinator serve it at `GET /metrics`.
//!
//! The format wants every sample of a metric family together, under one `# HELP` and
//! one `# TYPE` line; callers open a family with [`Exposition::family`] and write all of
//! its samples before the next.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::series::write_labels;

/// The `Content-Type` of a text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Opens the family `name`: its help text and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the open family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            write_labels(&mut self.out, labels.iter().copied());
            self.out.push('}');
        }
        self.value(value);
    }

    /// A whole histogram family's samples: cumulative `_bucket`s, `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &HistogramSnapshot,
    ) {
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count;
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket_name, &with_le, histogram.count as f64);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }

    fn value(&mut self, value: f64) {
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A value as the format spells it: `NaN`, `+Inf`, `-Inf` or a decimal number.
pub fn format_value(value: f64) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends [`format_value`]'s spelling of `value` to `out` without formatting
/// machinery: a whole number as an integer, any other as the shortest decimal that
/// reads back the same (`ryu`; an exponent beyond ±16 digits, as Go's exporters write).
/// Exporters write hundreds of values per scrape, so this is their hot path.
pub fn write_value(out: &mut String, value: f64) {
    /// Whole numbers below this are written with every digit (2^53: exact in an f64).
    const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if value.fract() == 0.0 && value.abs() < EXACT_INTEGER {
        // Exact: the value is whole and within i64's exactly representable range.
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(value));
    }
}

/// A histogram as read at one moment: per-bucket (not cumulative) counts for each
/// upper bound, plus the total count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// A histogram filled from many threads: fixed upper bounds, atomic counts. The total
/// is the sum of the buckets (one more catches what is above every bound), so a
/// snapshot taken while others observe stays cumulative.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the overflow.
    counts: Vec<AtomicU64>,
    /// The sum, in millionths, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let micros = (value.max(0.0) * 1e6).round();
        self.sum_micros.fetch_add(micros as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let count = counts.iter().sum();
        counts.truncate(self.bounds.len());
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts,
            count,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_are_written_in_the_text_format() {
        let mut e = Exposition::new();
        e.family(
            "vigil_polls_total",
            Kind::Counter,
            "Polls done.\nAll of them.",
        );
        e.sample("vigil_polls_total", &[("server", "1")], 3.0);
        e.sample(
            "vigil_polls_total",
            &[("server", "2"), ("kind", "http")],
            4.5,
        );
        e.family("vigil_poll_seconds", Kind::Histogram, "Poll latency.");
        e.histogram(
            "vigil_poll_seconds",
            &[],
            &HistogramSnapshot {
                bounds: vec![0.1, 1.0],
                counts: vec![2, 1],
                count: 4,
                sum: 3.25,
            },
        );
        e.family("g", Kind::Gauge, "odd values");
        e.sample("g", &[("v", "a\"b")], f64::NAN);
        e.sample("g", &[], f64::INFINITY);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP vigil_polls_total Polls done.\\nAll of them.\n\
             # TYPE vigil_polls_total counter\n\
             vigil_polls_total{server=\"1\"} 3\n\
             vigil_polls_total{server=\"2\",kind=\"http\"} 4.5\n\
             # HELP vigil_poll_seconds Poll latency.\n\
             # TYPE vigil_poll_seconds histogram\n\
             vigil_poll_seconds_bucket{le=\"0.1\"} 2\n\
             vigil_poll_seconds_bucket{le=\"1\"} 3\n\
             vigil_poll_seconds_bucket{le=\"+Inf\"} 4\n\
             vigil_poll_seconds_sum 3.25\n\
             vigil_poll_seconds_count 4\n\
             # HELP g odd values\n\
             # TYPE g gauge\n\
             g{v=\"a\\\"b\"} NaN\n\
             g +Inf\n"
        );
    }

    #[test]
    fn values_are_spelled_as_the_format_wants() {
        for (value, spelled) in [
            (0.0, "0"),
            (-0.0, "0"),
            (3.0, "3"),
            (-42.0, "-42"),
            (1_796_289_589.0, "1796289589"),
            (0.375, "0.375"),
            (1_700_000_000.25, "1700000000.25"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.8446744073709552e19, "1.8446744073709552e19"),
            (1e-7, "1e-7"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_value(value), spelled);
            if value.is_finite() {
                assert_eq!(spelled.parse::<f64>().unwrap(), value);
            }
        }
    }

    #[test]
    fn a_histogram_counts_into_the_first_bucket_that_holds_the_value() {
        static BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];
        let h = Histogram::new(&BOUNDS);
        for v in [0.005, 0.01, 0.05, 0.5, 5.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 1, 1]);
        assert_eq!(s.count, 5);
        assert!((s.sum - 5.565).abs() < 1e-9, "{}", s.sum);
    }
}
