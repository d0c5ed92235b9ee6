//! `vigil bench api`: requests per second and p99 latency of two reads of the REST API,
//! `GET /api/v1/devices` and `GET /api/v1/monitor-servers`, driven by `wrk` on loopback
//! against a deployment in processes (a coordinator and two monitor servers) whose
//! devices are being monitored, on SQLite and (with `--postgres`) PostgreSQL; with the
//! CPU time the coordinator and the monitor servers spend per request. The peer is
//! the same answer, byte for byte, served from memory by a bare actix-web server driven
//! the same way in the same run: what HTTP alone costs on these cores for a body that
//! size, the ceiling for any handler that answers it.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use awc::http::Method;
use serde_json::json;

use super::cluster::{BenchDb, ClusterOptions, VigilCluster, QUIET_INTERVAL_MS};
use super::process::{self, Spawned, Usage};
use super::report::{Better, Report, Row};
use super::settings::BenchSettings;

const SERVERS: usize = 2;
/// The endpoints measured, from `/api/v1/` on.
const ENDPOINTS: [&str; 3] = ["devices", "devices?limit=10", "monitor-servers"];
const WRK_THREADS: usize = 2;
const WRK_CONNECTIONS: usize = 32;
/// An untimed run of wrk before each timed one (connections, caches, pools).
const WARMUP: Duration = Duration::from_secs(1);
/// How much longer than its duration wrk may take to exit.
const WRK_GRACE: Duration = Duration::from_secs(30);
/// The targets.
const TARGET_REQUESTS_PER_S: f64 = 20_000.0;
const TARGET_P99_MS: f64 = 10.0;

struct Sizes {
    devices: usize,
    /// How long each endpoint is driven.
    window: Duration,
}

impl Sizes {
    fn of(settings: &BenchSettings) -> Sizes {
        if settings.smoke {
            Sizes {
                devices: settings.devices.unwrap_or(20),
                window: Duration::from_secs(2),
            }
        } else {
            Sizes {
                devices: settings.devices.unwrap_or(100),
                window: Duration::from_secs(20),
            }
        }
    }
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let sizes = Sizes::of(settings);
    let wrk = process::require("wrk", "wrk")?;
    let mut report = Report::new("api");
    report.param("devices", sizes.devices);
    report.param("monitor_servers", SERVERS);
    report.param("window_s", sizes.window.as_secs());
    report.param("wrk_threads", WRK_THREADS);
    report.param("wrk_connections", WRK_CONNECTIONS);
    for postgres in settings.backends() {
        let db = BenchDb::new(postgres.as_deref())?;
        let backend = db.backend();
        let logs = settings.logs(&format!("api-{}", backend.to_lowercase()));
        let cluster = VigilCluster::launch(&db, SERVERS, &ClusterOptions::default(), &logs).await?;
        let measured = measure(&cluster, &sizes, &wrk, &logs).await;
        cluster.stop().await;
        for (endpoint, m) in ENDPOINTS.iter().zip(measured?) {
            let name = format!("{backend}: GET /api/v1/{endpoint}");
            let per_request =
                |cpu: Duration| cpu.as_secs_f64() * 1_000_000.0 / m.wrk.requests.max(1) as f64;
            let ms = |time: Duration| time.as_secs_f64() * 1000.0;
            report.row(
                Row::new(
                    format!("{name}: requests per second"),
                    "req/s",
                    Better::Higher,
                    m.wrk.requests_per_s,
                )
                .peer(PEER, m.bare.requests_per_s)
                .at_least(TARGET_REQUESTS_PER_S),
            );
            report.row(
                Row::new(
                    format!("{name}: p99 latency"),
                    "ms",
                    Better::Lower,
                    ms(m.wrk.p99),
                )
                .peer(PEER, ms(m.bare.p99))
                .at_most(TARGET_P99_MS),
            );
            report.row(
                Row::new(
                    format!("{name}: p50 latency"),
                    "ms",
                    Better::Lower,
                    ms(m.wrk.p50),
                )
                .peer(PEER, ms(m.bare.p50)),
            );
            report.row(Row::new(
                format!("{name}: answer size"),
                "bytes",
                Better::Lower,
                m.body_bytes as f64,
            ));
            report.row(Row::new(
                format!("{name}: coordinator CPU per request"),
                "µs",
                Better::Lower,
                per_request(m.coordinator_cpu),
            ));
            report.row(Row::new(
                format!("{name}: monitor servers' CPU per request"),
                "µs",
                Better::Lower,
                per_request(m.servers_cpu),
            ));
        }
    }
    report.note(format!(
        "`wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{}s --latency` with the admin token as \
         `Authorization: Bearer`, on loopback, after an untimed {} s run; {} devices created \
         one by one with POST /api/v1/devices and started with a company start on {SERVERS} \
         monitor servers (polls every {} s, so polling costs nothing here). The device \
         list answers the default page (at most 100 devices) and, with `?limit=10`, a page \
         of 10, each device with its monitoring, which the coordinator asks the owning \
         monitor servers for; the monitor-server list asks every server for its live \
         status. A coordinator reuses what a server answered for {} ms and a checked \
         token for {} s, so under this load most requests ask neither the servers nor \
         the token table.",
        sizes.window.as_secs(),
        WARMUP.as_secs(),
        sizes.devices,
        QUIET_INTERVAL_MS / 1000,
        crate::http::coordinator::live::FRESH_FOR.as_millis(),
        crate::http::token_cache::TTL.as_secs(),
    ));
    report.note(
        "wrk shares the machine's cores with the processes it measures. CPU per request = \
         the process's CPU time (from /proc) over the timed run ÷ the requests wrk counted.",
    );
    report.note(
        "Peer: each endpoint's answer fetched once and served, the same bytes with the \
         same content type, by a bare actix-web server (as many workers as the \
         coordinator, one route, no database, no token check) inside the benchmark \
         process, driven by the same wrk command right after the endpoint's own run: no \
         handler answering that body over HTTP on these cores can be faster. wrk asks for \
         one URL, so Vigil's figures are of a coordinator answering a list it made less \
         than 0.5 s before (from memory, as repeated reads of a dashboard are).",
    );
    Ok(report)
}

/// The peer's name in the report.
const PEER: &str = "the same bytes from memory (bare actix-web)";

/// One endpoint's timed run, and the bare server's with its answer.
struct Measured {
    wrk: WrkRun,
    coordinator_cpu: Duration,
    servers_cpu: Duration,
    body_bytes: usize,
    bare: WrkRun,
}

async fn measure(
    cluster: &VigilCluster,
    sizes: &Sizes,
    wrk: &Path,
    logs: &Path,
) -> anyhow::Result<Vec<Measured>> {
    let company = cluster.quiet_company("bench", sizes.devices).await?;
    let address = cluster.always_up_address();
    for n in 0..sizes.devices {
        let device = json!({
            "company_id": company,
            "name": format!("device-{n:04}"),
            "address": address,
            "kind": "http",
        });
        cluster.ok(Method::POST, "devices", Some(&device)).await?;
    }
    let started = cluster
        .ok(Method::POST, &format!("companies/{company}/start"), None)
        .await?;
    if started["started"].as_u64() != Some(sizes.devices as u64) {
        bail!("the company start: {}", started["message"]);
    }
    let mut measured = Vec::new();
    for endpoint in ENDPOINTS {
        let url = format!("http://{}/api/v1/{endpoint}", cluster.coordinator_address());
        let drive = |run: &str, duration: Duration| {
            let name = format!("wrk-{endpoint}-{run}");
            run_wrk(wrk, &url, cluster.token(), duration, logs, name)
        };
        drive("warmup", WARMUP).await?;
        let before = usages(cluster)?;
        let run = drive("timed", sizes.window).await?;
        let after = usages(cluster)?;
        let body = cluster.body(&format!("api/v1/{endpoint}")).await?;
        let body_bytes = body.len();
        let bare = serve_bytes(body)?;
        let bare_url = format!("http://{}/api/v1/{endpoint}", bare.address);
        let bare_run = |run: &str, duration: Duration| {
            let name = format!("wrk-bare-{endpoint}-{run}");
            run_wrk(wrk, &bare_url, cluster.token(), duration, logs, name)
        };
        let warmed = bare_run("warmup", WARMUP).await;
        let timed = match warmed {
            Ok(_) => bare_run("timed", sizes.window).await,
            Err(error) => Err(error),
        };
        bare.server.stop(true).await;
        let bare = timed?;
        tracing::info!(
            endpoint,
            requests_per_s = run.requests_per_s,
            bare_requests_per_s = bare.requests_per_s,
            "api: wrk runs done"
        );
        measured.push(Measured {
            wrk: run,
            coordinator_cpu: after.0.cpu_since(&before.0),
            servers_cpu: after
                .1
                .iter()
                .zip(&before.1)
                .map(|(after, before)| after.cpu_since(before))
                .sum(),
            body_bytes,
            bare,
        });
    }
    Ok(measured)
}

/// A bare actix-web server answering every GET with `body` as JSON.
struct Bare {
    server: actix_web::dev::ServerHandle,
    address: std::net::SocketAddr,
}

fn serve_bytes(body: actix_web::web::Bytes) -> anyhow::Result<Bare> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::get().to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }))
    })
    // As many workers as the coordinator: actix's default, one per physical core.
    .bind(("127.0.0.1", 0))
    .context("binding the bare server")?;
    let address = *server
        .addrs()
        .first()
        .context("the bare server has an address")?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(Bare {
        server: handle,
        address,
    })
}

/// The coordinator's usage and each monitor server's.
fn usages(cluster: &VigilCluster) -> anyhow::Result<(Usage, Vec<Usage>)> {
    let servers = (0..cluster.servers.len())
        .map(|index| cluster.server_usage(index))
        .collect::<anyhow::Result<_>>()?;
    Ok((cluster.coordinator.usage()?, servers))
}

/// Runs wrk against `url` for `duration` and reads its summary; fails unless every
/// answer was 2xx and no socket failed.
async fn run_wrk(
    wrk: &Path,
    url: &str,
    token: &str,
    duration: Duration,
    logs: &Path,
    name: String,
) -> anyhow::Result<WrkRun> {
    let args = vec![
        format!("-t{WRK_THREADS}"),
        format!("-c{WRK_CONNECTIONS}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".into(),
        "-H".into(),
        format!("Authorization: Bearer {token}"),
        url.into(),
    ];
    let output = Spawned::program(&name, wrk, &args, &[], logs)?
        .finish(duration + WRK_GRACE)
        .await?;
    let run = parse_wrk(&output).with_context(|| format!("{name}'s output:\n{output}"))?;
    if run.non_2xx > 0 || run.socket_errors > 0 {
        bail!(
            "{name}: {} answers were not 2xx and {} socket errors, of {} requests",
            run.non_2xx,
            run.socket_errors,
            run.requests
        );
    }
    Ok(run)
}

/// What one run of wrk reports.
#[derive(Debug, Clone, PartialEq)]
struct WrkRun {
    requests: u64,
    requests_per_s: f64,
    p50: Duration,
    p99: Duration,
    /// Answers that were neither 2xx nor 3xx.
    non_2xx: u64,
    /// Connect, read and write errors and timeouts.
    socket_errors: u64,
}

/// Reads wrk's summary (run with `--latency`).
fn parse_wrk(text: &str) -> anyhow::Result<WrkRun> {
    let (mut requests, mut requests_per_s, mut p50, mut p99) = (None, None, None, None);
    let (mut non_2xx, mut socket_errors) = (0, 0);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_s = Some(rate.trim().parse::<f64>()?);
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = count.trim().parse()?;
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 5"
            socket_errors = errors
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let ["50%", time] = words.as_slice() {
            p50 = Some(wrk_time(time)?);
        } else if let ["99%", time] = words.as_slice() {
            p99 = Some(wrk_time(time)?);
        } else if let [count, "requests", "in", ..] = words.as_slice() {
            requests = Some(count.parse::<u64>()?);
        }
    }
    Ok(WrkRun {
        requests: requests.context("no \"N requests in\" line")?,
        requests_per_s: requests_per_s.context("no \"Requests/sec:\" line")?,
        p50: p50.context("no 50% line (was wrk run with --latency?)")?,
        p99: p99.context("no 99% line (was wrk run with --latency?)")?,
        non_2xx,
        socket_errors,
    })
}

/// A time as wrk prints it: `163.00us`, `1.70ms`, `2.10s`, `1.50m`, `1.00h`.
fn wrk_time(text: &str) -> anyhow::Result<Duration> {
    let units = [
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let (number, seconds) = units
        .iter()
        .find_map(|(unit, seconds)| Some((text.strip_suffix(unit)?, *seconds)))
        .with_context(|| format!("{text:?} is not a time"))?;
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a time"))?;
    Ok(Duration::from_secs_f64(value * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_nanos(1_000)
    }

    #[test]
    fn wrk_summaries_are_read_whatever_the_units() {
        let run = parse_wrk(include_str!("testdata/wrk-us.txt")).unwrap();
        assert_eq!(run.requests, 26_093);
        assert_eq!(run.requests_per_s, 23_733.57);
        assert!(close(run.p50, Duration::from_micros(163)), "{:?}", run.p50);
        assert!(
            close(run.p99, Duration::from_micros(21_700)),
            "{:?}",
            run.p99
        );
        assert_eq!((run.non_2xx, run.socket_errors), (0, 0));

        let run = parse_wrk(include_str!("testdata/wrk-ms.txt")).unwrap();
        assert_eq!(run.requests, 97);
        assert_eq!(run.requests_per_s, 48.06);
        assert!(
            close(run.p99, Duration::from_micros(422_380)),
            "{:?}",
            run.p99
        );
    }

    #[test]
    fn wrk_failures_are_counted() {
        let run = parse_wrk(include_str!("testdata/wrk-non-2xx.txt")).unwrap();
        assert_eq!(run.non_2xx, 837);
        assert_eq!(run.requests, 837);
        // wrk prints this line only when a socket failed (wrk.c's format).
        let with_errors = format!(
            "{}  Socket errors: connect 0, read 3, write 0, timeout 5\n",
            include_str!("testdata/wrk-us.txt")
        );
        assert_eq!(parse_wrk(&with_errors).unwrap().socket_errors, 8);
    }

    #[test]
    fn a_summary_without_the_latency_distribution_is_refused() {
        let text = "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n";
        let error = parse_wrk(text).unwrap_err().to_string();
        assert!(error.contains("--latency"), "{error}");
        assert!(wrk_time("12parsecs").is_err());
        assert!(close(wrk_time("1.50m").unwrap(), Duration::from_secs(90)));
    }
}
