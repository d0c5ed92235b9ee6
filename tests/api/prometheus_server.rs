//! The README's Prometheus configuration against a real Prometheus, when one is
//! installed: a coordinator, a monitor server and an agent in place of `vigil serve`'s
//! 8080–8083, every target up, and the readings queryable with the labels the README
//! promises.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};
use vigil::agent::Agent;

use crate::helpers::{Backend, TestCluster, PATIENCE, TEST_CLUSTER_TOKEN};

/// Where Debian's `prometheus` package puts the server.
pub(crate) const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The YAML block of the README's "Prometheus and Grafana" section.
fn readme_config() -> String {
    let readme = include_str!("../../README.md");
    let (_, section) = readme.split_once("## Prometheus and Grafana").unwrap();
    let (_, block) = section.split_once("```yaml\n").unwrap();
    let (yaml, _) = block.split_once("```").unwrap();
    yaml.to_string()
}

/// A Prometheus server of Debian's package, on a free port, killed when dropped.
pub(crate) struct Prometheus {
    child: Child,
    pub(crate) address: String,
    api: String,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn spawn(config: &str) -> Prometheus {
        Prometheus::spawn_with(config, &[])
    }

    /// With `args` besides the config, the storage and the listen address.
    pub(crate) fn spawn_with(config: &str, args: &[&str]) -> Prometheus {
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            address: format!("127.0.0.1:{port}"),
            api: format!("http://127.0.0.1:{port}/api/v1"),
            _data: data,
        }
    }

    /// `data` of an API answer; `None` until Prometheus listens.
    async fn get(&self, http: &awc::Client, path: &str) -> Option<Value> {
        let mut response = http.get(format!("{}{path}", self.api)).send().await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let body: Value = response.json().limit(16 << 20).await.ok()?;
        Some(body["data"].clone())
    }

    /// The series an instant query returns.
    pub(crate) async fn query(&self, http: &awc::Client, query: &str) -> Vec<Value> {
        let mut url = url::Url::parse("http://x/query").unwrap();
        url.query_pairs_mut().append_pair("query", query);
        let path = format!("/query?{}", url.query().unwrap());
        self.get(http, &path).await.map_or_else(Vec::new, |data| {
            data["result"].as_array().cloned().unwrap_or_default()
        })
    }
}

/// Polls `check` every 250 ms for up to `PATIENCE` × 3 (a scrape and a rule
/// evaluation or two); the skipping and the waiting are what make this test slow.
pub(crate) async fn within<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + PATIENCE * 3;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
}

#[actix_rt::test]
async fn the_readme_configuration_scrapes_every_node() {
    if !crate::helpers::tool_installed(
        "prometheus_server::the_readme_configuration_scrapes_every_node",
        PROMETHEUS,
        "prometheus",
    ) {
        return;
    }
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let agent = Agent::build("127.0.0.1:0".parse().unwrap(), Duration::from_millis(500)).unwrap();
    let agent_address = agent.address();
    actix_rt::spawn(agent.run_until_stopped());
    let company = cluster.company("acme").await;
    let answer = cluster
        .post(
            "/api/v1/devices",
            json!({"company_id": company, "name": "this-host", "kind": "agent",
                   "address": format!("http://{agent_address}")}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let device = answer.body["id"].as_i64().unwrap();
    cluster.start_device(device).await;

    let server = cluster.servers[0].address.to_string();
    let secrets = tempfile::tempdir().unwrap();
    let admin_file = secrets.path().join("vigil.db.admin-token");
    let cluster_file = secrets.path().join("vigil.db.cluster-token");
    std::fs::write(&admin_file, format!("{}\n", cluster.admin_token)).unwrap();
    std::fs::write(&cluster_file, format!("{TEST_CLUSTER_TOKEN}\n")).unwrap();
    let config = readme_config()
        .replace(
            "/srv/vigil/vigil.db.admin-token",
            &admin_file.display().to_string(),
        )
        .replace(
            "/srv/vigil/vigil.db.cluster-token",
            &cluster_file.display().to_string(),
        )
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("127.0.0.1:8080", &cluster.coordinator.to_string())
        .replace(
            "\"127.0.0.1:8081\", \"127.0.0.1:8082\"",
            &format!("\"{server}\""),
        )
        .replace("127.0.0.1:8083", &agent_address.to_string());
    assert!(
        !config.contains(":808"),
        "a README port was not replaced:\n{config}"
    );
    let prometheus = Prometheus::spawn(&config);
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();

    within("every target is up", || async {
        let targets = prometheus.get(&http, "/targets").await?;
        let active = targets["activeTargets"].as_array()?.clone();
        (active.len() == 3 && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;
    let readings = within("the device's reading through the coordinator", || async {
        let found = prometheus
            .query(&http, "vigil_device_cpu_usage_percent")
            .await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(
        readings.len(),
        1,
        "one copy, from the coordinator: {readings:?}"
    );
    let labels = &readings[0]["metric"];
    assert_eq!(labels["job"], "vigil");
    assert_eq!(labels["device"], "this-host");
    assert_eq!(labels["company"], "acme");
    assert_eq!(labels["device_id"], device.to_string());
    let value: f64 = readings[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&value), "{value}");

    for (query, job) in [
        ("vigil_agent_memory_usage_ratio", "vigil-agent"),
        ("vigil_polls_total", "vigil-monitor-servers"),
        ("vigil_writer_batches_total", "vigil-monitor-servers"),
    ] {
        let found = within(query, || async {
            let found = prometheus.query(&http, query).await;
            (!found.is_empty()).then_some(found)
        })
        .await;
        assert_eq!(found[0]["metric"]["job"], job, "{found:?}");
    }
    let dropped = prometheus
        .query(
            &http,
            "{job=\"vigil-monitor-servers\",__name__=~\"vigil_device_.*\"}",
        )
        .await;
    assert!(
        dropped.is_empty(),
        "the relabel keeps one copy: {dropped:?}"
    );
}
