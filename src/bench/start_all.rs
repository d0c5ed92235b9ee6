//! `vigil bench start-all`: a company of 10,000 devices started (and stopped) across
//! three monitor-server processes through the REST API, beside the seed's per-device
//! path (one request, and one rotating-index update, per device) for the ratio.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use awc::http::Method;
use serde_json::{json, Value};

use super::cluster::{BenchDb, ClusterOptions, VigilCluster};
use super::report::{median, Better, Report, Row};
use super::settings::BenchSettings;

const SERVERS: usize = 3;

struct Sizes {
    devices: usize,
    rounds: usize,
    /// Devices started one request each, for the per-device path.
    one_by_one: usize,
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let sizes = if settings.smoke {
        Sizes {
            devices: 300,
            rounds: 1,
            one_by_one: 50,
        }
    } else {
        Sizes {
            devices: settings.devices.unwrap_or(10_000),
            rounds: 3,
            one_by_one: settings.devices.unwrap_or(10_000).min(2_000),
        }
    };
    let mut report = Report::new("start-all");
    report.param("devices", sizes.devices);
    report.param("monitor_servers", SERVERS);
    report.param("rounds", sizes.rounds);
    report.param("per_device_path_devices", sizes.one_by_one);
    for postgres in settings.backends() {
        let db = BenchDb::new(postgres.as_deref())?;
        let backend = db.backend();
        let logs = settings.logs(&format!("start-all-{}", backend.to_lowercase()));
        let cluster = VigilCluster::launch(&db, SERVERS, &ClusterOptions::default(), &logs).await?;
        let measured = measure(&cluster, &sizes).await;
        cluster.stop().await;
        let measured = measured?;
        let rate = |took: Duration, devices: usize| devices as f64 / took.as_secs_f64().max(1e-9);
        let start = median(&measured.starts);
        let stop = median(&measured.stops);
        let company_rate = rate(start, sizes.devices);
        let per_device_rate = rate(measured.one_by_one, sizes.one_by_one);
        report.row(
            Row::new(
                format!("{backend}: company start of {} devices", sizes.devices),
                "s",
                Better::Lower,
                start.as_secs_f64(),
            )
            .at_most(1.0),
        );
        report.row(
            Row::new(
                format!("{backend}: devices started per second"),
                "devices/s",
                Better::Higher,
                company_rate,
            )
            .peer("per-device path", per_device_rate)
            .ratio_at_least(20.0),
        );
        report.row(
            Row::new(
                format!("{backend}: devices stopped per second (company stop)"),
                "devices/s",
                Better::Higher,
                rate(stop, sizes.devices),
            )
            .peer("company start", company_rate)
            .ratio_at_least(1.0),
        );
        report.row(Row::new(
            format!("{backend}: list every device with its live monitoring (pages of 1000)"),
            "ms",
            Better::Lower,
            median(&measured.lists).as_secs_f64() * 1000.0,
        ));
    }
    report.note(format!(
        "Median of {} rounds of POST /companies/{{id}}/start and /stop; the per-device path \
         is POST /devices/{{id}}/start for each of {} devices, one after the other.",
        sizes.rounds, sizes.one_by_one
    ));
    Ok(report)
}

struct Measured {
    starts: Vec<Duration>,
    stops: Vec<Duration>,
    lists: Vec<Duration>,
    one_by_one: Duration,
}

async fn measure(cluster: &VigilCluster, sizes: &Sizes) -> anyhow::Result<Measured> {
    let company = cluster.quiet_company("bench", sizes.devices).await?;
    let target = cluster.always_up_address();
    let devices: Vec<Value> = (0..sizes.devices)
        .map(|n| json!({ "name": format!("device-{n:06}"), "address": target, "kind": "http" }))
        .collect();
    let ids = cluster.create_devices(company, &devices).await?;
    let mut measured = Measured {
        starts: Vec::new(),
        stops: Vec::new(),
        lists: Vec::new(),
        one_by_one: Duration::ZERO,
    };
    for round in 1..=sizes.rounds {
        let began = Instant::now();
        let started = cluster
            .ok(Method::POST, &format!("companies/{company}/start"), None)
            .await?;
        measured.starts.push(began.elapsed());
        if started["started"].as_u64() != Some(sizes.devices as u64) {
            bail!("round {round}: {}", started["message"]);
        }
        let began = Instant::now();
        let mut shown = 0;
        for page in 0..sizes.devices.div_ceil(1000) {
            let listed = cluster
                .ok(
                    Method::GET,
                    &format!("devices?limit=1000&offset={}", page * 1000),
                    None,
                )
                .await?;
            shown += listed
                .as_array()
                .context("a device list is an array")?
                .iter()
                .filter(|d| !d["monitoring"].is_null())
                .count();
        }
        measured.lists.push(began.elapsed());
        if shown != sizes.devices {
            bail!(
                "round {round}: {shown} of {} devices show their monitoring",
                sizes.devices
            );
        }
        let began = Instant::now();
        let stopped = cluster
            .ok(Method::POST, &format!("companies/{company}/stop"), None)
            .await?;
        measured.stops.push(began.elapsed());
        if stopped["stopped"].as_u64() != Some(sizes.devices as u64) {
            bail!("round {round}: {}", stopped["message"]);
        }
        tracing::info!(round, "start-all round done");
    }
    let began = Instant::now();
    for id in ids.iter().take(sizes.one_by_one) {
        let started = cluster
            .ok(Method::POST, &format!("devices/{id}/start"), None)
            .await?;
        if started["started"].as_u64() != Some(1) {
            bail!("device {id}: {}", started["message"]);
        }
    }
    measured.one_by_one = began.elapsed();
    Ok(measured)
}
