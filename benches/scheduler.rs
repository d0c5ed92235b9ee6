//! Scheduler and monitor throughput on one machine: a coordinator and three monitor
//! servers in this process over real HTTP, devices served by a local HTTP "fleet".
//!
//! Measures, for N devices of one company (default 3000):
//! - company-wide start (rotation over three servers) and stop, in devices per second;
//! - listing every device with its live monitoring (`GET /api/v1/devices`, pages of 1000);
//! - resident memory added per running monitor;
//! - polls per second sustained at `poll_interval_ms` = 1000.
//!
//! Run: `cargo bench --bench scheduler` (SQLite), or with `-- 5000` for another N.
//! Set `VIGIL_BENCH_DATABASE_URL=postgres://…` to run on PostgreSQL instead.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::Value;
use vigil::auth::{ClusterToken, Grant, TokenRequest};
use vigil::db::models::{ConfigChanges, NewDevice};
use vigil::db::scratch::ScratchDb;
use vigil::db::{self, Db};
use vigil::http::rate::RateLimit;
use vigil::probe;
use vigil::startup::{Coordinator, CoordinatorOptions, MonitorServerNode};

const SERVERS: usize = 3;
const ROUNDS: usize = 3;
const DEFAULT_DEVICES: usize = 3000;
const POLL_WINDOW: Duration = Duration::from_secs(5);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_DEVICES);
    let scratch = match std::env::var("VIGIL_BENCH_DATABASE_URL") {
        Ok(url) => ScratchDb::postgres(&url)?,
        Err(_) => ScratchDb::sqlite(),
    };
    actix_rt::System::new().block_on(run(scratch, devices))
}

async fn run(scratch: ScratchDb, devices: usize) -> Result<(), Box<dyn std::error::Error>> {
    let backend = match scratch.url() {
        vigil::db::DbUrl::Sqlite(_) => "sqlite",
        vigil::db::DbUrl::Postgres(_) => "postgres",
    };
    let db = Db::open(scratch.url().clone(), 8).await?;
    let fleet = HttpServer::new(|| {
        App::new().route(
            "/d/{n}",
            web::get().to(|| async { HttpResponse::Ok().body("up") }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")?;
    let fleet_address = fleet.addrs()[0];
    actix_rt::spawn(fleet.run());

    let company = {
        let count = devices;
        db.run(move |conn| {
            db::config::update(
                conn,
                &ConfigChanges {
                    max_monitors_per_server: Some(100_000),
                    poll_interval_ms: Some(60_000),
                    ..Default::default()
                },
            )?;
            db::write_transaction(conn, |conn| {
                let company = db::companies::create(conn, "bench")?;
                for n in 0..count {
                    let address = format!("http://{fleet_address}/d/{n}");
                    let name = format!("device-{n}");
                    db::devices::create(
                        conn,
                        &NewDevice {
                            company_id: company.id,
                            name: &name,
                            address: &address,
                            kind: "http",
                            enabled: true,
                            expected_status: None,
                        },
                    )?;
                }
                Ok(company.id)
            })
        })
        .await?
    };

    let cluster = ClusterToken::generate()?;
    let request = TokenRequest {
        grant: Grant::admin(),
        name: "bench".into(),
    };
    let (_, token) = vigil::auth::issue(&db, request)
        .await?
        .ok_or("the bench token was not stored")?;
    let coordinator = Coordinator::build(
        db.clone(),
        "127.0.0.1:0".parse()?,
        cluster.clone(),
        CoordinatorOptions {
            rate_limit: RateLimit::OFF,
            ..CoordinatorOptions::default()
        },
    )?;
    let api = format!("http://{}/api/v1", coordinator.address());
    actix_rt::spawn(coordinator.run_until_stopped());
    for _ in 0..SERVERS {
        let node = MonitorServerNode::build(
            db.clone(),
            "127.0.0.1:0".parse()?,
            None,
            cluster.clone(),
            probe::standard(probe::AddressPolicy::default()),
        )
        .await?;
        actix_rt::spawn(node.run_until_stopped());
    }
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(600))
        .bearer_auth(token)
        .finish();

    println!("# scheduler bench: {devices} devices, {SERVERS} monitor servers, {backend}, {ROUNDS} rounds");
    let rss_idle = rss_kib();
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    let mut lists = Vec::new();
    let mut rss_running = 0;
    for round in 0..ROUNDS {
        let began = Instant::now();
        let report = post(&http, &format!("{api}/companies/{company}/start")).await?;
        starts.push(began.elapsed());
        assert_eq!(
            report["started"].as_u64(),
            Some(devices as u64),
            "round {round}: {}",
            report["message"]
        );

        let began = Instant::now();
        let mut listed = 0;
        for page in 0..devices.div_ceil(1000) {
            let url = format!("{api}/devices?limit=1000&offset={}", page * 1000);
            let body: Value = http.get(url).send().await?.json().limit(1 << 28).await?;
            listed += body.as_array().map_or(0, |a| {
                a.iter().filter(|d| !d["monitoring"].is_null()).count()
            });
        }
        lists.push(began.elapsed());
        assert_eq!(listed, devices, "every device shows its monitoring");
        rss_running = rss_running.max(rss_kib());

        let began = Instant::now();
        let report = post(&http, &format!("{api}/companies/{company}/stop")).await?;
        stops.push(began.elapsed());
        assert_eq!(
            report["stopped"].as_u64(),
            Some(devices as u64),
            "round {round}: {}",
            report["message"]
        );
    }
    let rate = |d: &Duration| devices as f64 / d.as_secs_f64();
    println!(
        "company start: median {:.0} devices/s ({:?} for {devices})",
        rate(&median(&starts)),
        median(&starts)
    );
    println!(
        "company stop:  median {:.0} devices/s ({:?} for {devices})",
        rate(&median(&stops)),
        median(&stops)
    );
    println!(
        "list devices with live monitoring: median {:?} for {devices}",
        median(&lists)
    );
    println!(
        "resident memory: {} KiB idle, {} KiB with {devices} monitors ({:.1} KiB per monitor)",
        rss_idle,
        rss_running,
        (rss_running.saturating_sub(rss_idle)) as f64 / devices as f64
    );

    // Sustained polling: one poll per device per second.
    let changed = http
        .put(format!("{api}/config"))
        .send_json(&serde_json::json!({ "poll_interval_ms": 1000 }))
        .await?
        .status();
    assert!(changed.is_success());
    post(&http, &format!("{api}/companies/{company}/start")).await?;
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let before = total_polls(&http, &api, devices).await?;
    let began = Instant::now();
    actix_rt::time::sleep(POLL_WINDOW).await;
    let after = total_polls(&http, &api, devices).await?;
    let polls_per_s = (after - before) as f64 / began.elapsed().as_secs_f64();
    println!(
        "sustained polling at 1000 ms: {polls_per_s:.0} polls/s (ideal {devices}/s, {:.1}%)",
        100.0 * polls_per_s / devices as f64
    );
    Ok(())
}

async fn post(http: &awc::Client, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(http.post(url).send().await?.json().limit(1 << 28).await?)
}

/// Every device with its live monitoring, in pages of 1000.
async fn all_devices(
    http: &awc::Client,
    api: &str,
    devices: usize,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let mut all = Vec::with_capacity(devices);
    for page in 0..devices.div_ceil(1000) {
        let url = format!("{api}/devices?limit=1000&offset={}", page * 1000);
        let body: Value = http.get(url).send().await?.json().limit(1 << 28).await?;
        if let Value::Array(items) = body {
            all.extend(items);
        }
    }
    Ok(all)
}

async fn total_polls(
    http: &awc::Client,
    api: &str,
    devices: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    let all = all_devices(http, api, devices).await?;
    Ok(all
        .iter()
        .filter_map(|d| d["monitoring"]["polls"].as_u64())
        .sum())
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Resident set size of this process, from /proc (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}
