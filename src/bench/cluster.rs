//! A Vigil deployment in processes for a benchmark: one coordinator and N monitor
//! servers (`vigil coordinator`, `vigil monitor-server`) over a scratch database, an
//! admin token, and calls on its REST API and on each monitor server's `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use awc::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::process::{free_address, Spawned, Usage};
use crate::auth::{self, ClusterToken, TokenRequest};
use crate::db::scratch::ScratchDb;
use crate::db::{Db, DbUrl};

/// Longest a call on the API may take (a company start of 100,000 devices included).
const CALL_WITHIN: Duration = Duration::from_secs(600);
/// Largest answer read (a page of 1000 devices with their monitoring is ~1 MiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;
/// Devices per bulk create call: the API's limit.
pub const BULK_LIMIT: usize = 10_000;
/// Polls so rare they cost nothing while something else is timed (a start pass spreads
/// the first polls over one interval).
pub const QUIET_INTERVAL_MS: u64 = 3_600_000;

/// A scratch database a benchmark runs on.
pub struct BenchDb {
    scratch: ScratchDb,
}

impl BenchDb {
    /// SQLite, or PostgreSQL when `postgres` names a server (a fresh schema in it).
    pub fn new(postgres: Option<&str>) -> anyhow::Result<BenchDb> {
        let scratch = match postgres {
            Some(url) => {
                ScratchDb::postgres(url).map_err(|e| anyhow::anyhow!("PostgreSQL at {url}: {e}"))?
            }
            None => ScratchDb::sqlite(),
        };
        Ok(BenchDb { scratch })
    }

    /// `SQLite` or `PostgreSQL`, for the report.
    pub fn backend(&self) -> &'static str {
        match self.scratch.url() {
            DbUrl::Sqlite(_) => "SQLite",
            DbUrl::Postgres(_) => "PostgreSQL",
        }
    }

    pub fn url(&self) -> &DbUrl {
        self.scratch.url()
    }

    pub fn url_arg(&self) -> String {
        self.scratch.url_arg()
    }
}

/// How the deployment's processes run.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `--poll-threads` of each monitor server (its default when `None`).
    pub poll_threads: Option<usize>,
    /// `--db-pool-size` of every process (its default when `None`).
    pub db_pool_size: Option<u32>,
}

/// One coordinator and its monitor servers, running.
pub struct VigilCluster {
    pub coordinator: Spawned,
    pub servers: Vec<Spawned>,
    coordinator_address: SocketAddr,
    server_addresses: Vec<SocketAddr>,
    token: String,
    cluster_token: ClusterToken,
    http: awc::Client,
}

impl VigilCluster {
    /// Migrates the database, makes an admin token, starts the coordinator and then
    /// `servers` monitor servers, and waits until every one answers.
    pub async fn launch(
        db: &BenchDb,
        servers: usize,
        options: &ClusterOptions,
        logs: &Path,
    ) -> anyhow::Result<VigilCluster> {
        let handle = Db::open(db.url().clone(), 2)
            .await
            .context("cannot open the benchmark's database")?;
        let request =
            TokenRequest::new("admin", None, Some("bench")).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (_, token) = auth::issue(&handle, request)
            .await
            .map_err(|e| anyhow::anyhow!("cannot make the benchmark's token: {e}"))?
            .context("an admin token names no company")?;
        let cluster_token = ClusterToken::generate()?;
        std::fs::create_dir_all(logs)?;
        let token_file = logs.join("cluster-token");
        std::fs::write(&token_file, cluster_token.secret())?;
        let common = |listen: SocketAddr| {
            let mut args = vec![
                "--db".to_string(),
                db.url_arg(),
                "--listen".into(),
                listen.to_string(),
                "--cluster-token-file".into(),
                token_file.display().to_string(),
            ];
            if let Some(size) = options.db_pool_size {
                args.extend(["--db-pool-size".into(), size.to_string()]);
            }
            args
        };
        let coordinator_address = free_address()?;
        let mut args = vec!["coordinator".to_string()];
        args.extend(common(coordinator_address));
        args.extend(["--rate-limit".into(), "0".into()]);
        let mut coordinator = Spawned::vigil("coordinator", &args, &[], logs)?;
        coordinator
            .ready(&format!("http://{coordinator_address}/healthz"))
            .await?;
        let mut spawned = Vec::new();
        let mut server_addresses = Vec::new();
        for index in 1..=servers {
            let address = free_address()?;
            let mut args = vec!["monitor-server".to_string()];
            args.extend(common(address));
            if let Some(threads) = options.poll_threads {
                args.extend(["--poll-threads".into(), threads.to_string()]);
            }
            let mut server = Spawned::vigil(&format!("monitor-server-{index}"), &args, &[], logs)?;
            server.ready(&format!("http://{address}/healthz")).await?;
            spawned.push(server);
            server_addresses.push(address);
        }
        let http = awc::Client::builder().timeout(CALL_WITHIN).finish();
        Ok(VigilCluster {
            coordinator,
            servers: spawned,
            coordinator_address,
            server_addresses,
            token,
            cluster_token,
            http,
        })
    }

    pub fn coordinator_address(&self) -> SocketAddr {
        self.coordinator_address
    }

    /// The admin token the benchmark calls the API with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Calls the coordinator: `path` from `/api/v1/` on, e.g. `companies`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("http://{}/api/v1/{path}", self.coordinator_address);
        let request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        let mut answer = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        }
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
        let status = answer.status();
        let bytes = answer
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Calls the coordinator and fails unless the answer is 2xx.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!("{method} /api/v1/{path} answered {status}: {value}");
        }
        Ok(value)
    }

    /// The bytes the coordinator answers to a GET of `path` (from its root), which must
    /// be a success.
    pub async fn body(&self, path: &str) -> anyhow::Result<actix_web::web::Bytes> {
        let url = format!("http://{}/{path}", self.coordinator_address);
        let mut answer = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        if !answer.status().is_success() {
            bail!("GET {url} answered {}", answer.status());
        }
        answer
            .body()
            .limit(64 << 20)
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: reading the answer: {e}"))
    }

    /// Changes the deployment's monitoring settings (`PUT /config`).
    pub async fn configure(&self, changes: Value) -> anyhow::Result<()> {
        self.ok(Method::PUT, "config", Some(&changes))
            .await
            .map(drop)
    }

    /// Makes polls quiet (`QUIET_INTERVAL_MS`) with room for `devices` monitors per
    /// server, then creates a company for them and answers its id.
    pub async fn quiet_company(&self, name: &str, devices: usize) -> anyhow::Result<i64> {
        self.configure(json!({
            "poll_interval_ms": QUIET_INTERVAL_MS,
            "max_monitors_per_server": devices,
        }))
        .await?;
        self.company(name).await
    }

    /// An address for devices that is always up and costs nothing else to poll: the
    /// coordinator's own health check.
    pub fn always_up_address(&self) -> String {
        format!("http://{}/healthz", self.coordinator_address)
    }

    /// Creates a company and answers its id.
    pub async fn company(&self, name: &str) -> anyhow::Result<i64> {
        let made = self
            .ok(Method::POST, "companies", Some(&json!({ "name": name })))
            .await?;
        made["id"].as_i64().context("a created company has an id")
    }

    /// Creates `devices` (bulk API bodies' items) in company `company`, 10,000 per
    /// call, and answers their ids in order.
    pub async fn create_devices(
        &self,
        company: i64,
        devices: &[Value],
    ) -> anyhow::Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(BULK_LIMIT) {
            let items: Vec<Value> = chunk
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    d["company_id"] = json!(company);
                    d
                })
                .collect();
            let made = self
                .ok(
                    Method::POST,
                    "devices/bulk",
                    Some(&json!({ "devices": items })),
                )
                .await?;
            let created = made["devices"]
                .as_array()
                .context("a bulk create answers its devices")?;
            ids.extend(created.iter().filter_map(|d| d["id"].as_i64()));
        }
        if ids.len() != devices.len() {
            bail!(
                "asked for {} devices, {} were created",
                devices.len(),
                ids.len()
            );
        }
        Ok(ids)
    }

    /// The text of monitor server `index`'s `/metrics`.
    pub async fn server_metrics(&self, index: usize) -> anyhow::Result<String> {
        let address = self
            .server_addresses
            .get(index)
            .context("no such monitor server")?;
        // The server's own figures: each monitor's series would cost more than they tell.
        let url = format!("http://{address}/metrics?devices=false");
        let mut answer = self
            .http
            .get(&url)
            .bearer_auth(self.cluster_token.secret())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        let bytes = answer
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// CPU time and memory of monitor server `index`.
    pub fn server_usage(&self, index: usize) -> anyhow::Result<Usage> {
        self.servers
            .get(index)
            .context("no such monitor server")?
            .usage()
    }

    /// Stops the monitor servers, then the coordinator.
    pub async fn stop(self) {
        for server in self.servers {
            server.stop().await;
        }
        self.coordinator.stop().await;
    }
}

/// The sum of every sample of `name` (any labels) in a text exposition.
pub fn exposition_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The cumulative buckets of histogram `name` (summed over label sets), by upper bound.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            }
        };
        let Some(count) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += count,
            None => buckets.push((bound, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile of what a histogram counted between two readings of its buckets,
/// interpolated within the bucket as Prometheus's `histogram_quantile` does. `None`
/// when nothing was counted.
pub fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let counted: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect();
    let total = counted.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (bound, count) in counted {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower_bound);
            }
            let within = count - lower_count;
            let share = if within > 0.0 {
                (rank - lower_count) / within
            } else {
                1.0
            };
            return Some(lower_bound + (bound - lower_bound) * share);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE vigil_polls_total counter
vigil_polls_total{server_id=\"1\"} 10
vigil_polls_total_other 99
vigil_poll_lateness_seconds_bucket{server_id=\"1\",le=\"0.01\"} 50
vigil_poll_lateness_seconds_bucket{server_id=\"1\",le=\"0.1\"} 90
vigil_poll_lateness_seconds_bucket{server_id=\"1\",le=\"+Inf\"} 100
";

    #[test]
    fn exposition_values_are_summed_by_exact_name() {
        assert_eq!(exposition_value(TEXT, "vigil_polls_total"), 10.0);
        assert_eq!(exposition_value(TEXT, "vigil_missing"), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let after = histogram_buckets(TEXT, "vigil_poll_lateness_seconds");
        assert_eq!(after.len(), 3);
        let p50 = quantile(0.5, &[], &after).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p70 = quantile(0.7, &[], &after).unwrap();
        assert!((p70 - 0.055).abs() < 1e-9, "{p70}");
        // Only what was counted between the readings.
        let before = vec![(0.01, 50.0), (0.1, 50.0), (f64::INFINITY, 50.0)];
        let p50 = quantile(0.5, &before, &after).unwrap();
        assert!(p50 > 0.01 && p50 <= 0.1, "{p50}");
        assert_eq!(quantile(0.5, &after, &after), None);
    }
}
