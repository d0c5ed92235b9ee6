//! The simulated fleet a benchmark polls: `vigil fleet` as a process of its own, so its
//! CPU is not counted as the poller's.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::process::{free_address, Spawned};

/// Seed of every benchmark fleet: runs compare like with like.
const SEED: u64 = 42;

pub struct Fleet {
    process: Spawned,
    address: SocketAddr,
}

impl Fleet {
    /// Starts `vigil fleet` with `devices` devices and waits until it answers.
    pub async fn launch(devices: usize, logs: &Path) -> anyhow::Result<Fleet> {
        let address = free_address()?;
        let args: Vec<String> = vec![
            "fleet".into(),
            "--devices".into(),
            devices.to_string(),
            "--listen".into(),
            address.to_string(),
            "--seed".into(),
            SEED.to_string(),
        ];
        let mut process = Spawned::vigil("fleet", &args, &[], logs)?;
        process.ready(&format!("http://{address}/healthz")).await?;
        Ok(Fleet { process, address })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The fleet's devices as bulk-API items (`name`, `address`, `kind`), of `kind`
    /// (`agent` or `prometheus`).
    pub async fn devices(&self, kind: &str) -> anyhow::Result<Vec<Value>> {
        let url = format!("http://{}/devices.json?kind={kind}", self.address);
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .finish();
        let mut answer = client
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        let body: Value = answer
            .json()
            .limit(512 * 1024 * 1024)
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        body["devices"]
            .as_array()
            .cloned()
            .context("the fleet's device list has a devices array")
    }

    /// The path device `index` serves `document` under (`metrics`, `metrics.json`,
    /// `agent-metrics`).
    pub fn path(index: usize, document: &str) -> String {
        format!("/d/{index}/{document}")
    }

    pub async fn stop(self) {
        self.process.stop().await;
    }
}
