//! `vigil bench monitors`: one monitor-server process holding 10k, 50k and 100k
//! monitors of the fleet's agents at a 60 s interval (resident memory, CPU, polls/s,
//! poll lateness, how evenly the polls of a start spread), then the peak polls/s it
//! sustains, storage included, as the interval shrinks, before lateness grows.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use awc::http::Method;
use serde_json::{json, Value};

use super::cluster::{
    exposition_value, histogram_buckets, quantile, BenchDb, ClusterOptions, VigilCluster,
};
use super::fleet::Fleet;
use super::report::{Better, Report, Row};
use super::settings::BenchSettings;

const LATENESS: &str = "vigil_poll_lateness_seconds";
/// Lateness p99 above this, or fewer polls than this share of the ideal, and the
/// server no longer sustains the rate.
const SUSTAINED_LATENESS_P99: f64 = 0.1;
const SUSTAINED_SHARE: f64 = 0.97;

struct Sizes {
    steps: Vec<usize>,
    interval: Duration,
    /// How long polls of a step are watched, second by second.
    window: Duration,
    /// Intervals to try for the peak, longest first, with the window of each.
    peak_intervals: Vec<Duration>,
    peak_window: Duration,
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let sizes = if settings.smoke {
        Sizes {
            steps: vec![200, 500],
            interval: Duration::from_secs(2),
            window: Duration::from_secs(4),
            peak_intervals: vec![Duration::from_secs(1), Duration::from_millis(500)],
            peak_window: Duration::from_secs(3),
        }
    } else {
        let most = settings.devices.unwrap_or(100_000);
        Sizes {
            steps: [10_000, 50_000, 100_000]
                .into_iter()
                .filter(|n| *n <= most)
                .collect(),
            interval: Duration::from_secs(60),
            window: Duration::from_secs(60),
            peak_intervals: [60, 30, 20, 15, 10, 5]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            peak_window: Duration::from_secs(30),
        }
    };
    let most = sizes.steps.iter().copied().max().context("no step")?;
    let mut report = Report::new("monitors");
    report.param("steps", json!(sizes.steps));
    report.param("interval_ms", sizes.interval.as_millis() as u64);
    report.param("window_s", sizes.window.as_secs());
    let logs = settings.logs("monitors");
    let fleet = Fleet::launch(most, &logs).await?;
    let db = BenchDb::new(None)?;
    let cluster = VigilCluster::launch(&db, 1, &ClusterOptions::default(), &logs).await;
    let cluster = match cluster {
        Ok(cluster) => cluster,
        Err(error) => {
            fleet.stop().await;
            return Err(error);
        }
    };
    let measured = measure(&cluster, &fleet, &sizes, &mut report).await;
    cluster.stop().await;
    fleet.stop().await;
    measured?;
    report.note(format!(
        "Agent devices of the fleet (seed 42) in one company, started by company starts as \
         each step adds devices; the monitor server alone is measured (SQLite). Lateness is \
         vigil_poll_lateness_seconds (how long after it was due a poll began), quantiles \
         interpolated in its buckets. A rate is sustained while lateness p99 ≤ {} ms and \
         polls ≥ {}% of the ideal.",
        SUSTAINED_LATENESS_P99 * 1000.0,
        SUSTAINED_SHARE * 100.0
    ));
    Ok(report)
}

/// Polls per second of the monitor server, read every second over `window`: each
/// count divided by the time between its two readings (a reading that comes late makes
/// one second longer and the next shorter, not one busier).
async fn polls_each_second(cluster: &VigilCluster, window: Duration) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::new();
    let began = Instant::now();
    let mut previous = (
        exposition_value(&cluster.server_metrics(0).await?, "vigil_polls_total"),
        Instant::now(),
    );
    for second in 1..=window.as_secs() {
        let due = began + Duration::from_secs(second);
        actix_rt::time::sleep(due.saturating_duration_since(Instant::now())).await;
        let now = (
            exposition_value(&cluster.server_metrics(0).await?, "vigil_polls_total"),
            Instant::now(),
        );
        let seconds = now.1.duration_since(previous.1).as_secs_f64();
        rates.push((now.0 - previous.0) / seconds.max(1e-3));
        previous = now;
    }
    tracing::info!(rates = ?rates.iter().map(|r| r.round() as u64).collect::<Vec<_>>(), "polls each second");
    Ok(rates)
}

async fn measure(
    cluster: &VigilCluster,
    fleet: &Fleet,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let most = sizes.steps.iter().copied().max().unwrap_or(0);
    let interval_ms = sizes.interval.as_millis() as u64;
    cluster
        .configure(json!({
            "poll_interval_ms": interval_ms,
            "timeout_ms": 3000.min(interval_ms),
            "max_monitors_per_server": most,
        }))
        .await?;
    let devices: Vec<Value> = fleet.devices("agent").await?;
    let idle_rss = cluster.server_usage(0)?.rss_bytes as f64;
    report.row(Row::new(
        "resident memory with no monitor",
        "MiB",
        Better::Lower,
        idle_rss / 1024.0 / 1024.0,
    ));
    let mut created = 0;
    for (step, &count) in sizes.steps.iter().enumerate() {
        let company = cluster.company(&format!("step-{step}")).await?;
        cluster
            .create_devices(company, &devices[created..count])
            .await?;
        let began = Instant::now();
        let started = cluster
            .ok(Method::POST, &format!("companies/{company}/start"), None)
            .await?;
        let start_took = began.elapsed();
        if started["started"].as_u64() != Some((count - created) as u64) {
            bail!("company start: {}", started["message"]);
        }
        created = count;
        tracing::info!(
            monitors = count,
            start_ms = start_took.as_millis() as u64,
            "step started"
        );
        // The first interval: the new monitors' first polls, spread over it.
        let text = cluster.server_metrics(0).await?;
        let usage = cluster.server_usage(0)?;
        let first = polls_each_second(cluster, sizes.interval).await?;
        let text_after = cluster.server_metrics(0).await?;
        let usage_after = cluster.server_usage(0)?;
        let seconds = sizes.interval.as_secs_f64();
        let polls = exposition_value(&text_after, "vigil_polls_total")
            - exposition_value(&text, "vigil_polls_total");
        let mean = first.iter().sum::<f64>() / first.len().max(1) as f64;
        let peak = first.iter().copied().fold(0.0, f64::max);
        let buckets = (
            histogram_buckets(&text, LATENESS),
            histogram_buckets(&text_after, LATENESS),
        );
        let p = |q| quantile(q, &buckets.0, &buckets.1).unwrap_or(0.0) * 1000.0;
        let rss = usage_after.rss_bytes as f64;
        let label =
            |what: &str| format!("{count} monitors at {} s: {what}", sizes.interval.as_secs());
        report.row(Row::new(
            label("resident memory"),
            "MiB",
            Better::Lower,
            rss / 1024.0 / 1024.0,
        ));
        report.row(Row::new(
            label("resident memory per monitor"),
            "KiB",
            Better::Lower,
            (rss - idle_rss) / count as f64 / 1024.0,
        ));
        report.row(Row::new(
            label("CPU"),
            "% of one core",
            Better::Lower,
            usage_after.cpu_since(&usage).as_secs_f64() * 100.0 / seconds,
        ));
        report.row(
            Row::new(
                label("polls per second"),
                "polls/s",
                Better::Higher,
                polls / seconds,
            )
            .at_least(count as f64 / sizes.interval.as_secs_f64() * SUSTAINED_SHARE),
        );
        report.row(Row::new(
            label("poll lateness p50"),
            "ms",
            Better::Lower,
            p(0.5),
        ));
        report
            .row(Row::new(label("poll lateness p99"), "ms", Better::Lower, p(0.99)).at_most(100.0));
        report.row(
            Row::new(
                label("busiest second of the start ÷ mean"),
                "×",
                Better::Lower,
                peak / mean.max(1e-9),
            )
            .at_most(1.3),
        );
        if count == 100_000 {
            report.row(
                Row::new(
                    label("resident memory (target)"),
                    "MiB",
                    Better::Lower,
                    rss / 1024.0 / 1024.0,
                )
                .at_most(1024.0),
            );
        }
    }
    peak(cluster, sizes, most, report).await
}

/// Shrinks the interval step by step until the server no longer keeps up.
async fn peak(
    cluster: &VigilCluster,
    sizes: &Sizes,
    devices: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut best: Option<(f64, Duration)> = None;
    for &interval in &sizes.peak_intervals {
        let interval_ms = interval.as_millis() as u64;
        cluster
            .configure(
                json!({ "poll_interval_ms": interval_ms, "timeout_ms": 3000.min(interval_ms) }),
            )
            .await?;
        // Let the monitors settle into the new interval.
        actix_rt::time::sleep(interval.max(Duration::from_secs(2))).await;
        let text = cluster.server_metrics(0).await?;
        let began = Instant::now();
        actix_rt::time::sleep(sizes.peak_window).await;
        let text_after = cluster.server_metrics(0).await?;
        let seconds = began.elapsed().as_secs_f64();
        let polls = exposition_value(&text_after, "vigil_polls_total")
            - exposition_value(&text, "vigil_polls_total");
        let rate = polls / seconds;
        let ideal = devices as f64 / interval.as_secs_f64();
        let p99 = quantile(
            0.99,
            &histogram_buckets(&text, LATENESS),
            &histogram_buckets(&text_after, LATENESS),
        )
        .unwrap_or(f64::INFINITY);
        let dropped = exposition_value(&text_after, "vigil_writer_dropped_samples_total")
            - exposition_value(&text, "vigil_writer_dropped_samples_total");
        let sustained =
            rate >= ideal * SUSTAINED_SHARE && p99 <= SUSTAINED_LATENESS_P99 && dropped == 0.0;
        tracing::info!(
            interval_ms,
            rate,
            ideal,
            p99_ms = p99 * 1000.0,
            dropped,
            sustained,
            "peak step"
        );
        report.row(Row::new(
            format!(
                "{devices} monitors at {} ms: polls/s (ideal {:.0}), lateness p99 {:.0} ms{}{}",
                interval_ms,
                ideal,
                p99 * 1000.0,
                if dropped > 0.0 {
                    format!(", {dropped} samples dropped by the writer")
                } else {
                    String::new()
                },
                if sustained { "" } else { ", not sustained" }
            ),
            "polls/s",
            Better::Higher,
            rate,
        ));
        if !sustained {
            break;
        }
        best = Some((rate, interval));
    }
    let (rate, interval) = best.unwrap_or((0.0, Duration::ZERO));
    report.row(
        Row::new(
            format!(
                "peak polls/s sustained with storage (agent reports, at {} ms)",
                interval.as_millis()
            ),
            "polls/s",
            Better::Higher,
            rate,
        )
        .at_least(5000.0),
    );
    cluster
        .configure(json!({ "poll_interval_ms": sizes.interval.as_millis() as u64 }))
        .await?;
    Ok(())
}
