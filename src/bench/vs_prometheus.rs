//! `vigil bench vs-prometheus`: Debian's Prometheus scraping N devices of the fleet,
//! then one Vigil monitor server (SQLite) polling the same N at the same interval over
//! the same window: polls achieved, CPU per poll, memory, samples stored. Twice: with
//! node_exporter-shaped bodies (Vigil's `prometheus` devices), and with the agent's own
//! report (Vigil's `agent` devices against Prometheus scraping the agent's `/metrics`).

use std::time::{Duration, Instant};

use anyhow::bail;
use awc::http::Method;
use serde_json::json;

use super::cluster::{exposition_value, BenchDb, ClusterOptions, VigilCluster};
use super::fleet::Fleet;
use super::prometheus::{self, Prometheus};
use super::report::{Better, Report, Row};
use super::settings::BenchSettings;

/// One comparison: which device kind Vigil polls and which document Prometheus scrapes.
struct Part {
    name: &'static str,
    vigil_kind: &'static str,
    prometheus_document: &'static str,
    devices: usize,
    /// Held against Prometheus's CPU per scrape (the issue sets one for node bodies).
    cpu_ratio_target: Option<f64>,
}

struct Sizes {
    interval: Duration,
    warmup: Duration,
    window: Duration,
}

/// What one poller did over the window.
#[derive(Debug, Clone, Copy)]
struct Measured {
    polls_per_second: f64,
    cpu_ms_per_poll: f64,
    rss_mib: f64,
    samples_per_second: f64,
    /// Samples Vigil dropped in the window (Prometheus drops none this way).
    dropped: f64,
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let (sizes, node_devices, agent_devices) = if settings.smoke {
        // A debug build on a busy CI machine: room for slow answers.
        let sizes = Sizes {
            interval: Duration::from_secs(2),
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(4),
        };
        (sizes, 10, 10)
    } else {
        let sizes = Sizes {
            interval: Duration::from_secs(1),
            warmup: Duration::from_secs(15),
            window: Duration::from_secs(60),
        };
        (
            sizes,
            settings.devices.unwrap_or(1000),
            settings.devices.unwrap_or(2000),
        )
    };
    let parts = [
        Part {
            name: "node_exporter bodies",
            vigil_kind: "prometheus",
            prometheus_document: "metrics",
            devices: node_devices,
            cpu_ratio_target: Some(0.5),
        },
        Part {
            name: "agent reports",
            vigil_kind: "agent",
            prometheus_document: "agent-metrics",
            devices: agent_devices,
            cpu_ratio_target: None,
        },
    ];
    let mut report = Report::new("vs-prometheus");
    report.param("interval_ms", sizes.interval.as_millis() as u64);
    report.param("window_s", sizes.window.as_secs());
    report.param("warmup_s", sizes.warmup.as_secs());
    report.param("node_exporter_devices", node_devices);
    report.param("agent_devices", agent_devices);
    for part in &parts {
        let run = format!("vs-prometheus-{}", part.vigil_kind);
        let logs = settings.logs(&run);
        let fleet = Fleet::launch(part.devices, &logs).await?;
        let peer = measure_prometheus(&fleet, part, &sizes, settings, &run).await;
        let ours = match &peer {
            Ok(_) => measure_vigil(&fleet, part, &sizes, &logs).await,
            Err(_) => Err(anyhow::anyhow!("not run")),
        };
        fleet.stop().await;
        let (peer, ours) = (peer?, ours?);
        let name = |measure: &str| {
            format!(
                "{}, {} at {} ms: {measure}",
                part.name,
                part.devices,
                sizes.interval.as_millis()
            )
        };
        let ideal = part.devices as f64 / sizes.interval.as_secs_f64();
        report.row(
            Row::new(
                name("polls per second"),
                "polls/s",
                Better::Higher,
                ours.polls_per_second,
            )
            .peer("Prometheus", peer.polls_per_second)
            .at_least(ideal * 0.99),
        );
        let cpu = Row::new(
            name("CPU per poll"),
            "ms",
            Better::Lower,
            ours.cpu_ms_per_poll,
        )
        .peer("Prometheus", peer.cpu_ms_per_poll);
        report.row(match part.cpu_ratio_target {
            Some(limit) => cpu.ratio_at_most(limit),
            None => cpu,
        });
        report.row(
            Row::new(name("resident memory"), "MiB", Better::Lower, ours.rss_mib)
                .peer("Prometheus", peer.rss_mib),
        );
        report.row(
            Row::new(
                name("samples stored per second"),
                "samples/s",
                Better::Higher,
                ours.samples_per_second,
            )
            .peer("Prometheus", peer.samples_per_second),
        );
        report.row(
            Row::new(
                name("samples stored per poll"),
                "samples",
                Better::Higher,
                ours.samples_per_second / ours.polls_per_second.max(1e-9),
            )
            .peer(
                "Prometheus",
                peer.samples_per_second / peer.polls_per_second.max(1e-9),
            ),
        );
        report.row(
            Row::new(
                name("samples dropped in the window"),
                "samples",
                Better::Lower,
                ours.dropped,
            )
            .at_most(0.0),
        );
    }
    report.note(
        "Each poller ran alone against the same fleet process (`vigil fleet`, seed 42), \
         Prometheus first; CPU and memory are the poller's process only (Vigil: the monitor \
         server, not the coordinator), read from /proc over the window after the warm-up.",
    );
    report.note(
        "Prometheus's samples include its own per-target series (up, scrape_duration_seconds, \
         …); Vigil's include up and latency_seconds per poll.",
    );
    Ok(report)
}

async fn measure_prometheus(
    fleet: &Fleet,
    part: &Part,
    sizes: &Sizes,
    settings: &BenchSettings,
    run: &str,
) -> anyhow::Result<Measured> {
    let work = prometheus::work_dir(&settings.out, run);
    let peer = Prometheus::launch(
        fleet.address(),
        part.devices,
        part.prometheus_document,
        sizes.interval,
        &work,
        &settings.logs(run),
    )
    .await?;
    let measured = async {
        actix_rt::time::sleep(sizes.warmup).await;
        let (samples, usage, began) = (
            peer.samples_appended().await?,
            peer.usage()?,
            Instant::now(),
        );
        actix_rt::time::sleep(sizes.window).await;
        let (samples_after, usage_after) = (peer.samples_appended().await?, peer.usage()?);
        let window = began.elapsed();
        let scrapes = peer.scrapes_within(window).await?;
        if scrapes <= 0.0 {
            bail!("Prometheus scraped nothing in the window");
        }
        let seconds = window.as_secs_f64();
        tracing::info!(
            up = peer.targets_up().await.unwrap_or(0.0),
            "Prometheus targets up"
        );
        Ok(Measured {
            polls_per_second: scrapes / seconds,
            cpu_ms_per_poll: usage_after.cpu_since(&usage).as_secs_f64() * 1000.0 / scrapes,
            rss_mib: usage_after.rss_bytes as f64 / 1024.0 / 1024.0,
            samples_per_second: (samples_after - samples) / seconds,
            dropped: 0.0,
        })
    }
    .await;
    peer.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    measured
}

async fn measure_vigil(
    fleet: &Fleet,
    part: &Part,
    sizes: &Sizes,
    logs: &std::path::Path,
) -> anyhow::Result<Measured> {
    let db = BenchDb::new(None)?;
    let cluster = VigilCluster::launch(&db, 1, &ClusterOptions::default(), logs).await?;
    let measured = async {
        let interval_ms = sizes.interval.as_millis() as u64;
        cluster
            .configure(json!({
                "poll_interval_ms": interval_ms,
                "timeout_ms": interval_ms,
                "max_monitors_per_server": part.devices,
            }))
            .await?;
        let company = cluster.company("fleet").await?;
        let devices = fleet.devices(part.vigil_kind).await?;
        let devices = &devices[..part.devices.min(devices.len())];
        cluster.create_devices(company, devices).await?;
        let started = cluster
            .ok(Method::POST, &format!("companies/{company}/start"), None)
            .await?;
        if started["started"].as_u64() != Some(devices.len() as u64) {
            bail!("company start: {}", started["message"]);
        }
        actix_rt::time::sleep(sizes.warmup).await;
        let (text, usage, began) = (
            cluster.server_metrics(0).await?,
            cluster.server_usage(0)?,
            Instant::now(),
        );
        actix_rt::time::sleep(sizes.window).await;
        let (text_after, usage_after) =
            (cluster.server_metrics(0).await?, cluster.server_usage(0)?);
        let seconds = began.elapsed().as_secs_f64();
        let delta =
            |name: &str| exposition_value(&text_after, name) - exposition_value(&text, name);
        let polls = delta("vigil_polls_total");
        if polls <= 0.0 {
            bail!("the monitor server polled nothing in the window");
        }
        Ok(Measured {
            polls_per_second: polls / seconds,
            cpu_ms_per_poll: usage_after.cpu_since(&usage).as_secs_f64() * 1000.0 / polls,
            rss_mib: usage_after.rss_bytes as f64 / 1024.0 / 1024.0,
            samples_per_second: delta("vigil_writer_rows_written_total") / seconds,
            dropped: delta("vigil_writer_dropped_samples_total"),
        })
    }
    .await;
    cluster.stop().await;
    measured
}
