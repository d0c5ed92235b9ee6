//! `GET /metrics` of the coordinator and of the monitor servers: Vigil's own metrics
//! and the latest reading of every monitored device, in the Prometheus text format.
//!
//! Device series keep their own name and labels under a `vigil_device_` prefix, with
//! the labels that say whose they are put first:
//! `vigil_device_disk_usage_percent{device="web-1",company="acme",device_id="7",mount="/"}`;
//! a series label that clashes with one of those is renamed `exported_<name>`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::HttpResponse;

use crate::actors::device_monitor::PollStats;
use crate::actors::reconciler::ReconcileStats;
use crate::actors::remote_writer::RemoteWriteStats;
use crate::actors::writer::WriterStats;
use crate::metrics::exposition::{self, Exposition, Kind};
use crate::metrics::series;

/// One device's latest reading and the labels that name the device.
pub struct DeviceReading {
    /// `(label, value)` pairs put before the series' own labels.
    pub labels: Vec<(&'static str, String)>,
    pub metrics: BTreeMap<String, f64>,
}

/// The answer to a scrape.
pub fn respond(text: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(exposition::CONTENT_TYPE)
        .body(text)
}

/// What this node's reconciler did while it was master (any node may be).
pub fn write_reconcile(out: &mut Exposition, stats: &ReconcileStats) {
    for (name, help, value) in [
        (
            "vigil_reconcile_started_total",
            "Devices this node, as master, started again because their server did not run them.",
            &stats.started,
        ),
        (
            "vigil_reconcile_stopped_total",
            "Monitor copies this node, as master, stopped because no record named them or their device was not wanted.",
            &stats.stopped,
        ),
    ] {
        out.family(name, Kind::Counter, help);
        out.sample(name, &[], value.load(Ordering::Relaxed) as f64);
    }
}

/// What a monitor server's remote writer has done.
pub fn write_remote_write(out: &mut Exposition, server_id: i64, stats: &RemoteWriteStats) {
    let server = server_id.to_string();
    let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed) as f64;
    let name = "vigil_remote_write_samples_total";
    out.family(
        name,
        Kind::Counter,
        "Readings sent by remote write, by outcome: sent (accepted), dropped (queue full), refused (a 4xx other than 429).",
    );
    for (outcome, value) in [
        ("sent", &stats.sent),
        ("dropped", &stats.dropped),
        ("refused", &stats.refused),
    ] {
        out.sample(
            name,
            &[("server_id", server.as_str()), ("outcome", outcome)],
            load(value),
        );
    }
    for (name, kind, help, value) in [
        (
            "vigil_remote_write_retries_total",
            Kind::Counter,
            "Remote-write requests sent again after the endpoint could not take them.",
            &stats.retries,
        ),
        (
            "vigil_remote_write_pending_samples",
            Kind::Gauge,
            "Readings waiting to go by remote write.",
            &stats.pending,
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[("server_id", server.as_str())], load(value));
    }
}

/// What a monitor server's monitors and writer have done.
pub fn write_runtime(
    out: &mut Exposition,
    server_id: i64,
    running: usize,
    limit: u32,
    polls: &PollStats,
    writer: &WriterStats,
) {
    let server = server_id.to_string();
    let labels = [("server_id", server.as_str())];
    let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed) as f64;
    let mut family = |name: &str, kind: Kind, help: &str, value: f64| {
        out.family(name, kind, help);
        out.sample(name, &labels, value);
    };
    family(
        "vigil_monitors_running",
        Kind::Gauge,
        "Device monitors running on this monitor server.",
        running as f64,
    );
    family(
        "vigil_monitors_limit",
        Kind::Gauge,
        "Most monitors this monitor server takes (max_monitors_per_server).",
        f64::from(limit),
    );
    family(
        "vigil_polls_total",
        Kind::Counter,
        "Polls done by this server's monitors.",
        load(&polls.polls),
    );
    family(
        "vigil_poll_failures_total",
        Kind::Counter,
        "Polls that failed (no answer, refused, wrong status, unreadable document).",
        load(&polls.failures),
    );
    family(
        "vigil_writer_batches_total",
        Kind::Counter,
        "Batches the metrics writer committed.",
        load(&writer.batches),
    );
    family(
        "vigil_writer_samples_written_total",
        Kind::Counter,
        "Samples (one per poll) the metrics writer stored.",
        load(&writer.samples_written),
    );
    family(
        "vigil_writer_rows_written_total",
        Kind::Counter,
        "Rows (one per series per poll) the metrics writer stored.",
        load(&writer.rows_written),
    );
    family(
        "vigil_writer_events_written_total",
        Kind::Counter,
        "State changes the metrics writer stored.",
        load(&writer.events_written),
    );
    family(
        "vigil_writer_failed_writes_total",
        Kind::Counter,
        "Batches that failed to write and were kept to retry.",
        load(&writer.failed_writes),
    );
    family(
        "vigil_writer_stale_rows_total",
        Kind::Counter,
        "Readings the database refused because their monitor's epoch was no longer their device's.",
        load(&writer.stale_rows),
    );
    family(
        "vigil_writer_stale_events_total",
        Kind::Counter,
        "State changes the database refused because their monitor's epoch was no longer their device's.",
        load(&writer.stale_events),
    );
    family(
        "vigil_writer_dropped_samples_total",
        Kind::Counter,
        "Samples dropped because the buffer was full while writes failed.",
        load(&writer.dropped_samples),
    );
    family(
        "vigil_writer_dropped_events_total",
        Kind::Counter,
        "State changes dropped because the buffer was full while writes failed.",
        load(&writer.dropped_events),
    );
    family(
        "vigil_writer_buffered_samples",
        Kind::Gauge,
        "Samples waiting to be written.",
        load(&writer.buffered_samples),
    );
    family(
        "vigil_writer_buffered_rows",
        Kind::Gauge,
        "Series readings those samples hold (the buffer is bounded by these).",
        load(&writer.buffered_rows),
    );
    family(
        "vigil_writer_lag_seconds",
        Kind::Gauge,
        "Age of the oldest sample of the last batch when it was written.",
        load(&writer.lag_ms) / 1000.0,
    );
    out.family(
        "vigil_poll_duration_seconds",
        Kind::Histogram,
        "Time a poll took, answer or not.",
    );
    out.histogram(
        "vigil_poll_duration_seconds",
        &labels,
        &polls.latency.snapshot(),
    );
    out.family(
        "vigil_poll_lateness_seconds",
        Kind::Histogram,
        "Time a poll began after it was due.",
    );
    out.histogram(
        "vigil_poll_lateness_seconds",
        &labels,
        &polls.lateness.snapshot(),
    );
    out.family(
        "vigil_writer_batch_samples",
        Kind::Histogram,
        "Samples per batch the metrics writer committed.",
    );
    out.histogram(
        "vigil_writer_batch_samples",
        &labels,
        &writer.batch_sizes.snapshot(),
    );
}

/// The latest reading of each device, one family per series name. A series label
/// that has the name of one of ours is renamed `exported_<name>`, as Prometheus does.
pub fn write_devices(out: &mut Exposition, devices: &[DeviceReading]) {
    // family → (device index, the series' own labels, value), so each family is
    // written whole.
    type Own = Vec<(String, String)>;
    let mut families: BTreeMap<String, Vec<(usize, Own, f64)>> = BTreeMap::new();
    for (i, device) in devices.iter().enumerate() {
        let ours: Vec<(&str, &str)> = device
            .labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        for (key, value) in &device.metrics {
            let (family, own) = series::device_series(&ours, key);
            families.entry(family).or_default().push((i, own, *value));
        }
    }
    for (family, samples) in families {
        out.family(
            &family,
            Kind::Gauge,
            "Latest reading of a monitored device.",
        );
        for (i, own, value) in samples {
            let labels: Vec<(&str, &str)> = devices[i]
                .labels
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .chain(own.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .collect();
            out.sample(&family, &labels, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_series_get_our_labels_first_and_clashing_ones_renamed() {
        let devices = vec![DeviceReading {
            labels: vec![("device", "web \"1\"".into()), ("company", "acme".into())],
            metrics: [
                (r#"disk_usage_percent{mount="/"}"#.to_string(), 41.5),
                (r#"node_network_up{device="eth0"}"#.to_string(), 1.0),
                (
                    r#"odd{device="a",exported_device="b",x:y="c"}"#.to_string(),
                    2.0,
                ),
                ("cpu_usage_percent".to_string(), 3.0),
            ]
            .into_iter()
            .collect(),
        }];
        let mut out = Exposition::new();
        write_devices(&mut out, &devices);
        let text = out.finish();
        assert!(text.contains(
            "vigil_device_disk_usage_percent{device=\"web \\\"1\\\"\",company=\"acme\",mount=\"/\"} 41.5\n"
        ), "{text}");
        assert!(text.contains(
            "vigil_device_node_network_up{device=\"web \\\"1\\\"\",company=\"acme\",exported_device=\"eth0\"} 1\n"
        ), "{text}");
        assert!(text.contains("# TYPE vigil_device_cpu_usage_percent gauge\n"));
        assert!(
            text.contains(
                "vigil_device_odd{device=\"web \\\"1\\\"\",company=\"acme\",exported_device=\"a\",exported_exported_device=\"b\",x_y=\"c\"} 2\n"
            ),
            "{text}"
        );
    }
}
