//! The prometheus probe against a real node_exporter, when one is installed, and
//! against an endpoint that answers something that is not an exposition.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, Backend, TestCluster};

/// Where Debian's `prometheus-node-exporter` package puts the exporter.
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// Polls this often here: CPU usage needs two polls whose counters differ.
const POLL_INTERVAL_MS: u64 = 500;

/// A node_exporter child process, killed when dropped.
struct Exporter {
    child: Child,
    url: String,
}

impl Exporter {
    /// Starts the exporter on a free port, or says on stderr why `test` is skipped.
    fn spawn(test: &str) -> Option<Exporter> {
        if !crate::helpers::tool_installed(test, NODE_EXPORTER, "prometheus-node-exporter") {
            return None;
        }
        // A port nothing listens on now; the exporter binds it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some(Exporter {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a `prometheus` device polling `address` and returns its id.
async fn prometheus_device(cluster: &TestCluster, company: i64, name: &str, address: &str) -> i64 {
    let answer = cluster
        .post(
            "/api/v1/devices",
            json!({
                "company_id": company,
                "name": name,
                "address": address,
                "kind": "prometheus",
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["id"].as_i64().unwrap()
}

async fn last_result(cluster: &TestCluster, device: i64) -> Value {
    let answer = cluster.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["monitoring"]["last_result"].clone()
}

/// Memory in use per /proc/meminfo, percent: what node_exporter's MemTotal and
/// MemAvailable are read from.
fn meminfo_usage_percent() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> f64 {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("{name} is not in /proc/meminfo"))
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    };
    let (total, available) = (field("MemTotal"), field("MemAvailable"));
    (total - available) / total * 100.0
}

#[actix_rt::test]
async fn a_node_exporter_is_monitored_as_cpu_memory_and_disk_series() {
    let Some(exporter) = Exporter::spawn(
        "node_exporter::a_node_exporter_is_monitored_as_cpu_memory_and_disk_series",
    ) else {
        return;
    };
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let probe = cluster.http.clone();
    let metrics_url = format!("{}/metrics", exporter.url);
    eventually("node_exporter answers", || async {
        let answer = probe.get(&metrics_url).send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    let answer = cluster
        .put(
            "/api/v1/config",
            json!({ "poll_interval_ms": POLL_INTERVAL_MS }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let company = cluster.company("acme").await;
    let node = prometheus_device(&cluster, company, "node", &exporter.url).await;
    let answer = cluster.start_device(node).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    // CPU usage is a rate: it appears from the second poll on.
    let result = eventually("the exporter's CPU usage is reported", || async {
        let result = last_result(&cluster, node).await;
        result["metrics"]
            .get("cpu_usage_percent")
            .is_some()
            .then_some(result)
    })
    .await;
    assert_eq!(result["up"], true, "{result}");
    assert_eq!(result["status_code"], 200, "{result}");
    let metrics = &result["metrics"];
    let number = |series: &str| {
        metrics[series]
            .as_f64()
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };

    let cpu = number("cpu_usage_percent");
    assert!((0.0..=100.0).contains(&cpu), "cpu_usage_percent {cpu}");
    let memory = number("memory_usage_percent");
    let expected = meminfo_usage_percent();
    assert!(
        (memory - expected).abs() < 5.0,
        "memory_usage_percent {memory}, /proc/meminfo says {expected}"
    );
    let disk = number(r#"disk_usage_percent{mount="/"}"#);
    assert!((0.0..=100.0).contains(&disk), "disk_usage_percent {disk}");
    assert!(number("uptime_seconds") > 0.0);
    // The monitor keeps the summary of its last poll; every other series goes to
    // storage under the exporter's own names.
    assert!(metrics.get("go_goroutines").is_none(), "{metrics}");
    let latest = eventually("the exporter's own series are stored", || async {
        let answer = cluster
            .get(&format!("/api/v1/devices/{node}/metrics/latest"))
            .await;
        answer.body["metrics"]["go_goroutines"]
            .as_f64()
            .is_some()
            .then_some(answer)
    })
    .await;
    assert!(latest.body["metrics"]["go_goroutines"].as_f64().unwrap() > 0.0);
}

#[actix_rt::test]
async fn a_prometheus_device_answering_something_else_is_down() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    // The fleet answers `up`, a word and not an exposition.
    let device = prometheus_device(&cluster, company, "liar", &cluster.fleet.url("/d/liar")).await;
    let answer = cluster.start_device(device).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let result = eventually("the answer is judged", || async {
        let result = last_result(&cluster, device).await;
        result.is_object().then_some(result)
    })
    .await;
    assert_eq!(result["up"], false, "{result}");
    assert_eq!(result["status_code"], 200, "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(
        error.contains("not a Prometheus text exposition"),
        "{error}"
    );
    assert!(cluster.fleet.hits("/d/liar") > 0);
}
