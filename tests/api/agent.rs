//! The host agent: its JSON and exposition output against sysinfo's own readings, its
//! routes and its collector's lifetime. The `vigil agent` process is tested in
//! `processes`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use prometheus_parse::{Sample, Scrape, Value as PromValue};
use sysinfo::{Components, CpuRefreshKind, Disks, Networks, RefreshKind, System};
use vigil::agent::{Agent, AgentReport, NoSample};

use crate::helpers::{assert_error, call, eventually, PATIENCE};

/// Agents in tests sample this often, so a second sample is never far off.
const TEST_INTERVAL: Duration = Duration::from_millis(250);
/// Used memory moves while the test runs (other tests, the build): how far apart the
/// agent's and the test's readings may be, as a share of total memory.
const MEMORY_DRIFT: f64 = 0.10;

/// An agent started in-process on 127.0.0.1:0.
pub(crate) struct TestAgent {
    pub(crate) address: SocketAddr,
    handle: ServerHandle,
    http: awc::Client,
}

impl TestAgent {
    pub(crate) async fn spawn() -> TestAgent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let agent = Agent::start(listener, TEST_INTERVAL).unwrap();
        let (address, handle) = (agent.address(), agent.handle());
        actix_rt::spawn(agent.run_until_stopped());
        let test = TestAgent {
            address,
            handle,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        };
        test.report().await;
        test
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The latest `/metrics.json`, waiting for the first sample if need be.
    async fn report(&self) -> AgentReport {
        let url = self.url("/metrics.json");
        eventually("the agent has a sample", || async {
            let answer = call(&self.http, Method::GET, &url, None).await;
            match answer.status {
                StatusCode::OK => Some(serde_json::from_value(answer.body).unwrap()),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, "no_sample_yet");
                    None
                }
                _ => panic!("GET /metrics.json: {answer:?}"),
            }
        })
        .await
    }

    /// `/metrics`: its text, after checking status and content type.
    async fn exposition(&self) -> String {
        let mut response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(content_type, vigil::metrics::exposition::CONTENT_TYPE);
        let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // Not awaited: the runtime goes with the test.
        drop(self.handle.stop(false));
    }
}

/// What sysinfo itself reads, taken in the test.
struct Reading {
    hostname: String,
    cores: usize,
    memory_total: u64,
    memory_used: u64,
    swap_total: u64,
    /// Size of each mount point (the first file system listed there).
    mounts: BTreeMap<String, u64>,
    interfaces: BTreeSet<String>,
    sensors_with_a_reading: usize,
}

fn read_sysinfo() -> Reading {
    let mut system =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()))
            .unwrap();
    system.refresh_memory();
    let mut mounts = BTreeMap::new();
    for disk in Disks::new_with_refreshed_list().unwrap().iter() {
        mounts
            .entry(disk.mount_point().to_string_lossy().into_owned())
            .or_insert(disk.total_space());
    }
    Reading {
        hostname: System::host_name().unwrap(),
        cores: system.cpus().len(),
        memory_total: system.total_memory(),
        memory_used: system.used_memory(),
        swap_total: system.total_swap(),
        mounts,
        interfaces: Networks::new_with_refreshed_list()
            .unwrap()
            .keys()
            .map(|name| name.to_string_lossy().into_owned())
            .collect(),
        sensors_with_a_reading: Components::new_with_refreshed_list()
            .unwrap()
            .iter()
            .filter(|c| c.temperature().is_some_and(f32::is_finite))
            .count(),
    }
}

#[track_caller]
fn assert_percent(what: &str, value: f64) {
    assert!((0.0..=100.0).contains(&value), "{what} = {value}");
}

#[actix_rt::test]
async fn the_json_report_matches_what_sysinfo_reads() {
    let agent = TestAgent::spawn().await;
    let report = agent.report().await;
    let host = read_sysinfo();

    assert_eq!(report.hostname, host.hostname);
    assert_eq!(report.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(report.interval_ms, TEST_INTERVAL.as_millis() as u64);
    let age = chrono::Utc::now() - report.collected_at;
    assert!(
        age >= chrono::Duration::zero() && age < chrono::Duration::seconds(5),
        "collected {age} ago"
    );
    let uptime = System::uptime().unwrap();
    assert!(
        report.uptime_seconds.abs_diff(uptime) <= 5,
        "{} vs {uptime}",
        report.uptime_seconds
    );

    assert_eq!(report.cpu.cores.len(), host.cores);
    assert_percent("cpu", report.cpu.usage_percent);
    for core in &report.cpu.cores {
        assert_percent(&core.name, core.usage_percent);
    }

    assert_eq!(report.memory.total_bytes, host.memory_total);
    let drift = report.memory.used_bytes.abs_diff(host.memory_used) as f64;
    assert!(
        drift <= MEMORY_DRIFT * host.memory_total as f64,
        "used memory {} vs sysinfo's {}",
        report.memory.used_bytes,
        host.memory_used
    );
    assert!(report.memory.used_bytes <= report.memory.total_bytes);
    let expected = report.memory.used_bytes as f64 * 100.0 / report.memory.total_bytes as f64;
    assert!((report.memory.usage_percent - expected).abs() < 1e-9);
    assert_eq!(report.swap.total_bytes, host.swap_total);
    assert!(report.swap.used_bytes <= report.swap.total_bytes);
    assert_percent("swap", report.swap.usage_percent);

    let mounts: BTreeMap<String, u64> = report
        .disks
        .iter()
        .map(|d| (d.mount.clone(), d.total_bytes))
        .collect();
    assert_eq!(mounts.len(), report.disks.len(), "one entry per mount");
    assert_eq!(mounts, host.mounts, "mount points and their sizes");
    for disk in &report.disks {
        assert!(disk.used_bytes <= disk.total_bytes, "{disk:?}");
        assert_percent(&disk.mount, disk.usage_percent);
        // As df counts it: used is total minus free (reserved blocks are not used),
        // the percentage of used plus available. Files come and go meanwhile: 1%.
        let fs = rustix::fs::statvfs(disk.mount.as_str()).unwrap();
        let free = fs.f_bfree * fs.f_frsize;
        let available = fs.f_bavail * fs.f_frsize;
        let used = disk.total_bytes - free;
        let drift = disk.used_bytes.abs_diff(used) as f64;
        assert!(
            drift <= disk.total_bytes as f64 * 0.01,
            "{disk:?}: df says {used} used"
        );
        let df_percent = used as f64 * 100.0 / (used + available) as f64;
        assert!(
            (disk.usage_percent - df_percent).abs() < 1.0,
            "{disk:?}: df says {df_percent}%"
        );
        assert!(
            !disk.device.is_empty() && !disk.file_system.is_empty(),
            "{disk:?}"
        );
    }

    let interfaces: BTreeSet<String> = report
        .networks
        .iter()
        .map(|n| n.interface.clone())
        .collect();
    assert_eq!(interfaces, host.interfaces);
    for net in &report.networks {
        assert!(
            net.receive_bytes_per_second >= 0.0 && net.transmit_bytes_per_second >= 0.0,
            "{net:?}"
        );
    }

    assert_eq!(report.temperatures.len(), host.sensors_with_a_reading);
    for t in &report.temperatures {
        assert!(t.celsius.is_finite(), "{t:?}");
    }
}

#[actix_rt::test]
async fn network_rates_are_the_counter_deltas_over_the_interval() {
    let agent = TestAgent::spawn().await;
    // The polling below is loopback traffic: `lo` moves while the agent samples.
    let lo = |r: &AgentReport| r.networks.iter().find(|n| n.interface == "lo").cloned();
    let (earlier, later, gap) =
        eventually("two consecutive samples with loopback traffic", || async {
            let first = agent.report().await;
            let deadline = Instant::now() + PATIENCE;
            let second = loop {
                let report = agent.report().await;
                if report.collected_at > first.collected_at {
                    break report;
                }
                assert!(Instant::now() < deadline, "no second sample");
                let _ = agent.exposition().await;
            };
            let gap = (second.collected_at - first.collected_at).to_std().unwrap();
            let (earlier, later) = (lo(&first)?, lo(&second)?);
            let consecutive = gap < TEST_INTERVAL * 3 / 2;
            let moved = later.receive_bytes_total > earlier.receive_bytes_total;
            (consecutive && moved).then_some((earlier, later, gap))
        })
        .await;
    let received = (later.receive_bytes_total - earlier.receive_bytes_total) as f64;
    let sent = (later.transmit_bytes_total - earlier.transmit_bytes_total) as f64;
    let seconds = gap.as_secs_f64();
    // The rate divides by the time between two network refreshes, which differs from
    // the time between two `collected_at`s by the other refreshes' jitter.
    for (what, rate, bytes) in [
        ("receive", later.receive_bytes_per_second, received),
        ("transmit", later.transmit_bytes_per_second, sent),
    ] {
        let expected = bytes / seconds;
        assert!(
            (rate - expected).abs() <= 0.25 * expected,
            "{what}: {rate} B/s, but {bytes} B in {seconds} s is {expected} B/s"
        );
    }
}

/// The exposition's samples by family name.
fn families(text: &str) -> BTreeMap<String, Vec<Sample>> {
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).unwrap();
    let mut families: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for sample in scrape.samples {
        assert!(
            !matches!(sample.value, PromValue::Untyped(_)),
            "{} has no TYPE line",
            sample.metric
        );
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "{} has no HELP line",
            sample.metric
        );
        families
            .entry(sample.metric.clone())
            .or_default()
            .push(sample);
    }
    families
}

fn value(sample: &Sample) -> f64 {
    match sample.value {
        PromValue::Gauge(v) | PromValue::Counter(v) => v,
        ref other => panic!("{}: {other:?}", sample.metric),
    }
}

/// The one unlabelled sample of `family`.
fn single(families: &BTreeMap<String, Vec<Sample>>, family: &str) -> f64 {
    let samples = &families[family];
    assert_eq!(samples.len(), 1, "{family}: {samples:?}");
    value(&samples[0])
}

/// `family`'s values by the value of `label`; each label value appears once.
fn by(
    families: &BTreeMap<String, Vec<Sample>>,
    family: &str,
    label: &str,
) -> BTreeMap<String, f64> {
    let samples = families.get(family).map(Vec::as_slice).unwrap_or_default();
    let values: BTreeMap<String, f64> = samples
        .iter()
        .map(|s| (s.labels.get(label).unwrap().to_string(), value(s)))
        .collect();
    assert_eq!(values.len(), samples.len(), "{family}: a {label} twice");
    values
}

#[actix_rt::test]
async fn the_exposition_parses_and_matches_what_sysinfo_reads() {
    let agent = TestAgent::spawn().await;
    let text = agent.exposition().await;
    let host = read_sysinfo();
    let families = families(&text);

    // Every sample line's family has HELP and TYPE lines, under its exact name.
    let declared = |prefix: &str| -> BTreeSet<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix)?.split(' ').next())
            .collect()
    };
    let (typed, helped) = (declared("# TYPE "), declared("# HELP "));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(name.starts_with("vigil_agent_"), "{line}");
        assert!(typed.contains(name), "no TYPE for {name}");
        assert!(helped.contains(name), "no HELP for {name}");
    }

    let info = &families["vigil_agent_info"];
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].labels.get("hostname"), Some(host.hostname.as_str()));
    assert_eq!(
        info[0].labels.get("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(value(&info[0]), 1.0);

    assert_eq!(
        single(&families, "vigil_agent_memory_total_bytes"),
        host.memory_total as f64
    );
    let used = single(&families, "vigil_agent_memory_used_bytes");
    assert!((used - host.memory_used as f64).abs() <= MEMORY_DRIFT * host.memory_total as f64);
    assert_eq!(
        single(&families, "vigil_agent_swap_total_bytes"),
        host.swap_total as f64
    );
    for ratio in [
        "vigil_agent_cpu_usage_ratio",
        "vigil_agent_memory_usage_ratio",
        "vigil_agent_swap_usage_ratio",
    ] {
        let value = single(&families, ratio);
        assert!((0.0..=1.0).contains(&value), "{ratio} = {value}");
    }

    let cores = by(&families, "vigil_agent_cpu_core_usage_ratio", "core");
    let expected: BTreeSet<String> = (0..host.cores).map(|i| i.to_string()).collect();
    assert_eq!(cores.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (core, ratio) in &cores {
        assert!((0.0..=1.0).contains(ratio), "core {core}: {ratio}");
    }

    let sizes = by(&families, "vigil_agent_filesystem_size_bytes", "mount");
    let expected: BTreeMap<String, f64> = host
        .mounts
        .iter()
        .map(|(m, size)| (m.clone(), *size as f64))
        .collect();
    assert_eq!(sizes, expected);
    for family in [
        "vigil_agent_filesystem_used_bytes",
        "vigil_agent_filesystem_usage_ratio",
    ] {
        assert_eq!(
            by(&families, family, "mount").len(),
            host.mounts.len(),
            "{family}"
        );
    }
    for (mount, ratio) in by(&families, "vigil_agent_filesystem_usage_ratio", "mount") {
        assert!((0.0..=1.0).contains(&ratio), "{mount}: {ratio}");
    }

    for family in [
        "vigil_agent_network_receive_bytes_total",
        "vigil_agent_network_transmit_bytes_total",
    ] {
        let samples = &families[family];
        assert!(
            samples
                .iter()
                .all(|s| matches!(s.value, PromValue::Counter(_))),
            "{family}"
        );
        let interfaces: BTreeSet<String> = by(&families, family, "interface").into_keys().collect();
        assert_eq!(interfaces, host.interfaces, "{family}");
    }
    for family in [
        "vigil_agent_network_receive_bytes_per_second",
        "vigil_agent_network_transmit_bytes_per_second",
    ] {
        assert_eq!(
            by(&families, family, "interface").len(),
            host.interfaces.len()
        );
    }

    let sensors = by(&families, "vigil_agent_temperature_celsius", "sensor");
    assert_eq!(sensors.len(), host.sensors_with_a_reading);
    for gauge in [
        "vigil_agent_load1",
        "vigil_agent_load5",
        "vigil_agent_load15",
        "vigil_agent_uptime_seconds",
        "vigil_agent_collected_timestamp_seconds",
    ] {
        assert!(single(&families, gauge) >= 0.0, "{gauge}");
    }
}

#[actix_rt::test]
async fn the_exposition_and_the_json_of_one_sample_say_the_same() {
    let agent = TestAgent::spawn().await;
    let (report, families) = eventually("both documents from one sample", || async {
        let report = agent.report().await;
        let families = families(&agent.exposition().await);
        let at = single(&families, "vigil_agent_collected_timestamp_seconds");
        (at == report.collected_at.timestamp_millis() as f64 / 1000.0).then_some((report, families))
    })
    .await;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    assert!(close(
        single(&families, "vigil_agent_cpu_usage_ratio"),
        report.cpu.usage_percent / 100.0
    ));
    for (i, core) in report.cpu.cores.iter().enumerate() {
        let ratio = by(&families, "vigil_agent_cpu_core_usage_ratio", "core")[&i.to_string()];
        assert!(close(ratio, core.usage_percent / 100.0), "core {i}");
        let hertz = by(&families, "vigil_agent_cpu_core_frequency_hertz", "core")[&i.to_string()];
        assert_eq!(hertz, core.frequency_mhz as f64 * 1e6);
    }
    assert_eq!(
        single(&families, "vigil_agent_memory_used_bytes"),
        report.memory.used_bytes as f64
    );
    assert!(close(
        single(&families, "vigil_agent_memory_usage_ratio"),
        report.memory.usage_percent / 100.0
    ));
    assert_eq!(
        single(&families, "vigil_agent_swap_used_bytes"),
        report.swap.used_bytes as f64
    );
    assert_eq!(
        single(&families, "vigil_agent_uptime_seconds"),
        report.uptime_seconds as f64
    );
    assert_eq!(
        single(&families, "vigil_agent_load1"),
        report.load_average.one
    );
    assert_eq!(
        single(&families, "vigil_agent_load5"),
        report.load_average.five
    );
    assert_eq!(
        single(&families, "vigil_agent_load15"),
        report.load_average.fifteen
    );
    assert_eq!(
        single(&families, "vigil_agent_sample_interval_seconds"),
        TEST_INTERVAL.as_secs_f64()
    );
    for net in &report.networks {
        let at = |family: &str| by(&families, family, "interface")[&net.interface];
        assert_eq!(
            at("vigil_agent_network_receive_bytes_total"),
            net.receive_bytes_total as f64
        );
        assert_eq!(
            at("vigil_agent_network_transmit_bytes_total"),
            net.transmit_bytes_total as f64
        );
        assert!(close(
            at("vigil_agent_network_receive_bytes_per_second"),
            net.receive_bytes_per_second
        ));
        assert!(close(
            at("vigil_agent_network_transmit_bytes_per_second"),
            net.transmit_bytes_per_second
        ));
    }
    for disk in &report.disks {
        let at = |family: &str| {
            let sample = families[family]
                .iter()
                .find(|s| s.labels.get("mount") == Some(disk.mount.as_str()))
                .unwrap();
            assert_eq!(sample.labels.get("device"), Some(disk.device.as_str()));
            assert_eq!(sample.labels.get("fstype"), Some(disk.file_system.as_str()));
            value(sample)
        };
        assert_eq!(
            at("vigil_agent_filesystem_used_bytes"),
            disk.used_bytes as f64
        );
        assert_eq!(
            at("vigil_agent_filesystem_size_bytes"),
            disk.total_bytes as f64
        );
        assert!(close(
            at("vigil_agent_filesystem_usage_ratio"),
            disk.usage_percent / 100.0
        ));
    }
}

#[actix_rt::test]
async fn unknown_paths_answer_a_json_404_and_healthz_answers_200() {
    let agent = TestAgent::spawn().await;
    let missing = call(&agent.http, Method::GET, &agent.url("/metrics.xml"), None).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
    let wrong = call(&agent.http, Method::POST, &agent.url("/metrics.json"), None).await;
    assert_error(&wrong, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let health = call(&agent.http, Method::GET, &agent.url("/healthz"), None).await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    let head = agent.http.head(agent.url("/healthz")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

#[actix_rt::test]
async fn stopping_the_agent_stops_its_collector() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = Agent::start(listener, TEST_INTERVAL).unwrap();
    let latest = agent.latest();
    let handle = agent.handle();
    let running = actix_rt::spawn(agent.run_until_stopped());
    let sampled = eventually("a first sample", || async { latest.get().ok() }).await;
    assert!(sampled.memory.total_bytes > 0);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    eventually("the collector thread has ended", || async {
        (latest.get().err() == Some(NoSample::Stopped)).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn the_exposition_passes_promtools_lint() {
    let agent = TestAgent::spawn().await;
    let text = agent.exposition().await;
    crate::helpers::promtool_accepts(&text);
}
