//! Series names: how one reading is named everywhere (samples table, history API,
//! Prometheus output). A name is written as Prometheus writes a series, the metric
//! name and then its labels in braces: `disk_usage_percent{mount="/"}`.

use std::fmt::Write as _;

/// Total CPU busy time, percent of all cores.
pub const CPU_USAGE_PERCENT: &str = "cpu_usage_percent";
/// One core's busy time, percent; label `core`.
pub const CPU_CORE_USAGE_PERCENT: &str = "cpu_core_usage_percent";
pub const MEMORY_USED_BYTES: &str = "memory_used_bytes";
pub const MEMORY_TOTAL_BYTES: &str = "memory_total_bytes";
pub const MEMORY_USAGE_PERCENT: &str = "memory_usage_percent";
pub const SWAP_USED_BYTES: &str = "swap_used_bytes";
pub const SWAP_TOTAL_BYTES: &str = "swap_total_bytes";
pub const SWAP_USAGE_PERCENT: &str = "swap_usage_percent";
/// Label `interface`.
pub const NETWORK_RECEIVE_BYTES_PER_SECOND: &str = "network_receive_bytes_per_second";
/// Label `interface`.
pub const NETWORK_TRANSMIT_BYTES_PER_SECOND: &str = "network_transmit_bytes_per_second";
/// Label `mount`.
pub const DISK_USED_BYTES: &str = "disk_used_bytes";
/// Label `mount`.
pub const DISK_TOTAL_BYTES: &str = "disk_total_bytes";
/// Label `mount`.
pub const DISK_USAGE_PERCENT: &str = "disk_usage_percent";
/// Label `sensor`.
pub const TEMPERATURE_CELSIUS: &str = "temperature_celsius";
pub const LOAD1: &str = "load1";
pub const LOAD5: &str = "load5";
pub const LOAD15: &str = "load15";
pub const UPTIME_SECONDS: &str = "uptime_seconds";
/// 1 when the poll succeeded, 0 when it failed; every poll has it.
pub const UP: &str = "up";
/// How long the poll took; every poll has it.
pub const LATENCY_SECONDS: &str = "latency_seconds";
/// The status an HTTP device answered.
pub const HTTP_STATUS_CODE: &str = "http_status_code";

/// How a device's series is named outside Vigil (its `/metrics`, remote write): the
/// family `vigil_device_<name>`, and the series' own labels after `ours` (the labels
/// that say whose it is), one that clashes with ours renamed `exported_<name>`, as
/// Prometheus does.
pub fn device_series(ours: &[(&str, &str)], key: &str) -> (String, Vec<(String, String)>) {
    let (name, written) = split(key);
    let family = format!("vigil_device_{}", sanitize_name(name));
    let mut own: Vec<(String, String)> = Vec::new();
    for (label, value) in parse_labels(written) {
        let mut label = sanitize_label_name(&label);
        while ours.iter().any(|(o, _)| *o == label) || own.iter().any(|(o, _)| *o == label) {
            label = format!("exported_{label}");
        }
        own.push((label, value));
    }
    (family, own)
}

/// A percentage as stored: to a hundredth. The digits beyond are the noise of a
/// division (a share of two byte counts, of two CPU time counters), and a stored block
/// holds a series of such values in about a quarter of the bytes (BENCHMARKS.md
/// `store`).
pub fn percentage(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A rate in bytes a second as stored: to a whole byte, for the same reason.
pub fn per_second(value: f64) -> f64 {
    value.round()
}

/// The names of the series that sum a device up (CPU, memory, swap, network, disks,
/// temperatures, load, uptime, and every poll's `up` and `latency_seconds`): what a
/// monitor keeps of its last poll and shows in device lists. Every other series a
/// device reports (a node_exporter's hundreds of raw series) goes to storage only.
pub const SUMMARY: &[&str] = &[
    CPU_USAGE_PERCENT,
    CPU_CORE_USAGE_PERCENT,
    MEMORY_USED_BYTES,
    MEMORY_TOTAL_BYTES,
    MEMORY_USAGE_PERCENT,
    SWAP_USED_BYTES,
    SWAP_TOTAL_BYTES,
    SWAP_USAGE_PERCENT,
    NETWORK_RECEIVE_BYTES_PER_SECOND,
    NETWORK_TRANSMIT_BYTES_PER_SECOND,
    DISK_USED_BYTES,
    DISK_TOTAL_BYTES,
    DISK_USAGE_PERCENT,
    TEMPERATURE_CELSIUS,
    LOAD1,
    LOAD5,
    LOAD15,
    UPTIME_SECONDS,
    UP,
    LATENCY_SECONDS,
    HTTP_STATUS_CODE,
];

/// Whether `series` is one of the [`SUMMARY`] series.
pub fn is_summary(series: &str) -> bool {
    SUMMARY.contains(&name(series))
}

/// The series `name` with `labels`, in the order given.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(name.len() + 16 * labels.len());
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        write_labels(&mut out, labels.iter().copied());
        out.push('}');
    }
    out
}

/// Appends `k="v",…` with label values escaped as the exposition format wants.
pub fn write_labels<'a>(out: &mut String, labels: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (i, (key, value)) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{key}=\"");
        escape_label_value(out, value);
        out.push('"');
    }
}

/// Escapes backslash, double quote and newline, the three characters a label value
/// cannot hold as they are.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Splits a series into its metric name and the inside of its braces (empty when it
/// has no labels): `disk_usage_percent{mount="/"}` → (`disk_usage_percent`, `mount="/"`).
pub fn split(series: &str) -> (&str, &str) {
    match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or(rest)),
        None => (series, ""),
    }
}

/// The labels of a series' brace part (as [`split`] returns it), unescaped. Text that is
/// not `k="v"` pairs yields the pairs before it.
pub fn parse_labels(inner: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = inner;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some((key, after)) = rest.split_once("=\"") else {
            return labels;
        };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return labels,
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { return labels };
        labels.push((key.trim().to_string(), value));
        rest = &after[end..];
    }
}

/// The metric name of a series, without its labels.
pub fn name(series: &str) -> &str {
    split(series).0
}

/// A metric name with every character Prometheus does not allow replaced by `_`.
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// A label name with every character Prometheus does not allow there (a colon
/// included) replaced by `_`.
pub fn sanitize_label_name(name: &str) -> String {
    sanitize_name(name).replace(':', "_")
}

#[cfg(test)]
mod tests {

    #[test]
    fn stored_percentages_and_rates_drop_the_digits_of_a_division() {
        assert_eq!(percentage(37.123_456_789), 37.12);
        assert_eq!(percentage(99.995_1), 100.0);
        assert_eq!(percentage(f64::from(12.345_67_f32)), 12.35);
        assert_eq!(per_second(1_234.567_8), 1_235.0);
        assert_eq!(per_second(0.4), 0.0);
    }
    use super::*;

    #[test]
    fn series_are_written_and_split_back() {
        let s = series("disk_usage_percent", &[("mount", "/"), ("device", "sda1")]);
        assert_eq!(s, r#"disk_usage_percent{mount="/",device="sda1"}"#);
        assert_eq!(
            split(&s),
            ("disk_usage_percent", r#"mount="/",device="sda1""#)
        );
        assert_eq!(series("load1", &[]), "load1");
        assert_eq!(split("load1"), ("load1", ""));
        assert_eq!(name(&s), "disk_usage_percent");
    }

    #[test]
    fn label_values_are_escaped_and_parsed_back() {
        let s = series(
            "temperature_celsius",
            &[("sensor", "a\"b\\c\nd"), ("chip", "x,y=\"")],
        );
        assert_eq!(
            s,
            r#"temperature_celsius{sensor="a\"b\\c\nd",chip="x,y=\""}"#
        );
        assert_eq!(
            parse_labels(split(&s).1),
            vec![
                ("sensor".to_string(), "a\"b\\c\nd".to_string()),
                ("chip".to_string(), "x,y=\"".to_string())
            ]
        );
        assert!(parse_labels("").is_empty());
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(sanitize_name("node.load-1"), "node_load_1");
        assert_eq!(sanitize_name("1x"), "_1x");
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
    }
}
