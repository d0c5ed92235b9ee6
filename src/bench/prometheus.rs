//! Debian's Prometheus as the peer: scraping every device of a fleet at an interval,
//! with its CPU, memory, scrapes and stored samples read the same way as Vigil's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::cluster::exposition_value;
use super::fleet::Fleet;
use super::process::{free_address, require, Spawned, Usage};

pub struct Prometheus {
    process: Spawned,
    address: SocketAddr,
    http: awc::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `document` (e.g. `metrics`) of devices `0..devices` of
    /// the fleet at `fleet` every `interval`, its data under `work`.
    pub async fn launch(
        fleet: SocketAddr,
        devices: usize,
        document: &str,
        interval: Duration,
        work: &Path,
        logs: &Path,
    ) -> anyhow::Result<Prometheus> {
        let program = require("prometheus", "prometheus")?;
        std::fs::create_dir_all(work)?;
        let config = work.join("prometheus.yml");
        std::fs::write(&config, configuration(fleet, devices, document, interval))?;
        let data = work.join("data");
        let _ = std::fs::remove_dir_all(&data);
        let address = free_address()?;
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address={address}"),
        ];
        let mut process = Spawned::program("prometheus", &program, &args, &[], logs)?;
        process.ready(&format!("http://{address}/-/ready")).await?;
        Ok(Prometheus {
            process,
            address,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        })
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        self.process.usage()
    }

    /// Samples appended to its head block since it started, from its own metrics.
    pub async fn samples_appended(&self) -> anyhow::Result<f64> {
        let text = self
            .get(&format!("http://{}/metrics", self.address))
            .await?;
        Ok(exposition_value(
            &text,
            "prometheus_tsdb_head_samples_appended_total",
        ))
    }

    /// Scrapes made in the last `window` (failed ones too): the `up` samples it stored.
    pub async fn scrapes_within(&self, window: Duration) -> anyhow::Result<f64> {
        let query = format!("sum(count_over_time(up[{}ms]))", window.as_millis());
        self.query(&query).await
    }

    /// How many targets answered their last scrape.
    pub async fn targets_up(&self) -> anyhow::Result<f64> {
        self.query("sum(up)").await
    }

    /// The value of an instant query that answers one number.
    async fn query(&self, query: &str) -> anyhow::Result<f64> {
        let url = url::Url::parse_with_params(
            &format!("http://{}/api/v1/query", self.address),
            [("query", query)],
        )?;
        let body: serde_json::Value = serde_json::from_str(&self.get(url.as_str()).await?)?;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{query} has no value: {body}"))
    }

    async fn get(&self, url: &str) -> anyhow::Result<String> {
        let mut answer = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        let body = answer
            .body()
            .limit(64 * 1024 * 1024)
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn stop(self) {
        self.process.stop().await;
    }
}

/// The scrape configuration: one target per device, its path set by relabelling (a
/// job has one path; the fleet serves each device under its own).
fn configuration(fleet: SocketAddr, devices: usize, document: &str, interval: Duration) -> String {
    let seconds = interval.as_secs_f64();
    let mut out = format!(
        "global:\n  scrape_interval: {seconds}s\n  scrape_timeout: {seconds}s\n\
         scrape_configs:\n  - job_name: fleet\n    relabel_configs:\n\
         \x20     - source_labels: [__device_path]\n        target_label: __metrics_path__\n\
         \x20   static_configs:\n"
    );
    for index in 0..devices {
        out.push_str(&format!(
            "      - targets: ['{fleet}']\n        labels: {{__device_path: '{}', device: 'fleet-{index}'}}\n",
            Fleet::path(index, document)
        ));
    }
    out
}

/// Where a run keeps Prometheus's files.
pub fn work_dir(out: &Path, run: &str) -> PathBuf {
    out.join("prometheus").join(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_is_a_target_with_its_own_path() {
        let text = configuration(
            "127.0.0.1:9000".parse().unwrap(),
            2,
            "metrics",
            Duration::from_secs(1),
        );
        assert!(text.contains("scrape_interval: 1s"), "{text}");
        assert!(text.contains("__device_path: '/d/0/metrics'"), "{text}");
        assert!(text.contains("__device_path: '/d/1/metrics'"), "{text}");
        assert_eq!(text.matches("targets: ['127.0.0.1:9000']").count(), 2);
    }
}
