//! The `discovery` kind: a list of addresses or a CIDR range (bounded, and inside what
//! the address policy allows) scanned on a few ports for a Vigil agent
//! (`/metrics.json`), a node_exporter (`/metrics` with node_exporter's series) or an
//! open TCP port, with the probes the monitors use; what answers is registered as
//! devices of the collector's company, and the job's output says what was added and
//! what was skipped (an address a device has already, a name taken).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::run::{done_with, failed, params_of, stopped, Environment, Progress};
use crate::db::models::{Device, NewDevice};
use crate::db::queue::{Collector, Ending};
use crate::db::{self};
use crate::domain::{DeviceKind, DeviceSpec};
use crate::probe::policy::Network;
use crate::probe::AddressPolicy;

/// Addresses one discovery scans at most (a /22 of IPv4).
pub const MAX_ADDRESSES: u64 = 1_024;
/// Ports one discovery tries on each address at most.
pub const MAX_PORTS: usize = 16;
/// Probes in flight at once.
const IN_FLIGHT: usize = 64;

/// What a discovery looks for on each address and port, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Looked {
    /// A Vigil agent: `/metrics.json` answers the agent's report.
    Agent,
    /// A node_exporter: `/metrics` answers node_exporter's CPU or memory series.
    NodeExporter,
    /// Anything that accepts a TCP connection.
    Tcp,
}

impl Looked {
    /// The device this finding is registered as: kind and address.
    fn device(self, at: SocketAddr) -> (DeviceKind, String) {
        match self {
            Looked::Agent => (DeviceKind::Agent, format!("http://{at}/metrics.json")),
            Looked::NodeExporter => (DeviceKind::Prometheus, format!("http://{at}/metrics")),
            Looked::Tcp => (DeviceKind::Tcp, at.to_string()),
        }
    }
}

/// A discovery's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryParams {
    /// IP addresses to scan (give these or `cidr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// A range to scan, such as `10.0.3.0/24` (give this or `addresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Ports tried on each address (default the agent's 9109 and node_exporter's 9100).
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// What to look for, in order: the first that answers on an address and port is
    /// what is registered (default agent and node_exporter).
    #[serde(default = "default_looked")]
    pub look_for: Vec<Looked>,
    /// How long each probe waits, 100 to 10,000 ms (default 1,000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_ports() -> Vec<u16> {
    vec![9109, 9100]
}

fn default_looked() -> Vec<Looked> {
    vec![Looked::Agent, Looked::NodeExporter]
}

fn default_timeout_ms() -> u64 {
    1_000
}

/// Why a discovery's parameters are refused: a code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: String) -> Refusal {
    Refusal {
        code: "invalid_params",
        message,
    }
}

impl DiscoveryParams {
    /// The addresses to scan, checked: bounded, and none the policy denies (a range
    /// overlapping a denied network is refused whole).
    pub fn addresses(&self, policy: &AddressPolicy) -> Result<Vec<IpAddr>, Refusal> {
        if self.ports.is_empty() || self.ports.len() > MAX_PORTS || self.ports.contains(&0) {
            return Err(invalid(format!(
                "ports must hold 1 to {MAX_PORTS} ports from 1 to 65535"
            )));
        }
        if self.look_for.is_empty() {
            return Err(invalid(
                "look_for must name at least one of agent, node_exporter and tcp".into(),
            ));
        }
        if !(100..=10_000).contains(&self.timeout_ms) {
            return Err(invalid(format!(
                "timeout_ms must be from 100 to 10000 (got {})",
                self.timeout_ms
            )));
        }
        let addresses = match (&self.cidr, self.addresses.is_empty()) {
            (Some(cidr), true) => {
                let range = Network::from_str(cidr).map_err(|e| invalid(e.to_string()))?;
                if let Some(denied) = policy.denied().iter().find(|d| d.overlaps(&range)) {
                    return Err(Refusal {
                        code: "address_denied",
                        message: format!(
                            "{range} overlaps {denied}, which the address policy denies"
                        ),
                    });
                }
                range.hosts(MAX_ADDRESSES).ok_or_else(|| {
                    invalid(format!(
                        "{range} holds more than {MAX_ADDRESSES} addresses; scan a smaller range"
                    ))
                })?
            }
            (None, false) => {
                if self.addresses.len() as u64 > MAX_ADDRESSES {
                    return Err(invalid(format!(
                        "addresses may name {MAX_ADDRESSES} addresses at most"
                    )));
                }
                let mut parsed = Vec::with_capacity(self.addresses.len());
                for text in &self.addresses {
                    let ip: IpAddr = text
                        .trim()
                        .parse()
                        .map_err(|_| invalid(format!("{text:?} is not an IP address")))?;
                    if let Some(refusal) = policy.refusal(ip) {
                        return Err(Refusal {
                            code: "address_denied",
                            message: refusal,
                        });
                    }
                    parsed.push(ip);
                }
                parsed.sort_unstable();
                parsed.dedup();
                parsed
            }
            _ => {
                return Err(invalid(
                    "give either addresses (a list of IP addresses) or cidr (a range)".into(),
                ))
            }
        };
        Ok(addresses)
    }
}

/// A device the discovery registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub device_id: i64,
    pub name: String,
    pub address: String,
    pub kind: String,
    pub found: Looked,
}

/// Something found and not registered, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub address: String,
    pub found: Looked,
    pub reason: String,
}

/// What a discovery job keeps as its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryOutput {
    /// Addresses scanned, and address-port pairs probed.
    pub addresses: usize,
    pub probed: usize,
    pub added: Vec<Added>,
    pub skipped: Vec<Skipped>,
}

/// What answered on one address and port, if anything did.
async fn look(
    probe: &dyn crate::probe::Probe,
    collector: &Collector,
    at: SocketAddr,
    looked: &[Looked],
    timeout: Duration,
) -> Option<(SocketAddr, Looked)> {
    for &what in looked {
        let (kind, address) = what.device(at);
        let spec = DeviceSpec {
            id: 0,
            company_id: collector.company_id,
            name: at.to_string(),
            company: String::new(),
            address,
            kind,
            expected_status: None,
        };
        let result = probe.poll(&spec, timeout).await;
        let found = result.up
            && match what {
                Looked::NodeExporter => ["cpu_usage_percent", "memory_usage_percent"]
                    .iter()
                    .any(|series| result.metrics.contains_key(*series)),
                Looked::Agent | Looked::Tcp => true,
            };
        if found {
            return Some((at, what));
        }
    }
    None
}

/// Scans the collector's addresses and registers what answers; `existing`: the
/// company's devices.
pub(super) async fn discover(
    env: &Environment,
    collector: &Collector,
    existing: Vec<(Device, String)>,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Ending {
    let params: DiscoveryParams = match params_of(collector) {
        Ok(params) => params,
        Err(ending) => return ending,
    };
    // Checked again: the address policy may have changed since the collector was saved.
    let addresses = match params.addresses(&env.policy) {
        Ok(addresses) => addresses,
        Err(refusal) => return failed(refusal.message),
    };
    let pairs: Vec<SocketAddr> = addresses
        .iter()
        .flat_map(|ip| params.ports.iter().map(|port| SocketAddr::new(*ip, *port)))
        .collect();
    let total = pairs.len() as i64;
    progress.set_total(total);
    let probe = (env.probes)();
    let timeout = Duration::from_millis(params.timeout_ms);
    let mut answers = futures_util::stream::iter(pairs.iter().copied())
        .map(|at| look(probe.as_ref(), collector, at, &params.look_for, timeout))
        .buffer_unordered(IN_FLIGHT);
    let mut found = Vec::new();
    let mut done = 0i64;
    while let Some(answer) = answers.next().await {
        done += 1;
        found.extend(answer);
        if stop.load(Ordering::Relaxed) {
            return stopped(done, total);
        }
        progress.advance(done, 0).await;
    }
    drop(answers);
    found.sort_unstable_by_key(|(at, _)| *at);
    match register(env, collector, existing, found).await {
        Ok((added, skipped)) => {
            progress.advance(total, added.len() as i64).await;
            let output = DiscoveryOutput {
                addresses: addresses.len(),
                probed: pairs.len(),
                added,
                skipped,
            };
            done_with(&output)
        }
        Err(error) => failed(format!("cannot register the devices found: {error}")),
    }
}

/// Registers `found` as devices of the collector's company in one transaction, but
/// for an address a device of the company has already or a name taken.
async fn register(
    env: &Environment,
    collector: &Collector,
    existing: Vec<(Device, String)>,
    found: Vec<(SocketAddr, Looked)>,
) -> Result<(Vec<Added>, Vec<Skipped>), db::DbError> {
    let company = collector.company_id;
    let by_address: HashMap<String, i64> = existing
        .iter()
        .map(|(d, _)| (d.address.clone(), d.id))
        .collect();
    let names: HashMap<String, i64> = existing
        .iter()
        .map(|(d, _)| (d.name.clone(), d.id))
        .collect();
    let mut skipped = Vec::new();
    let mut wanted: Vec<(String, String, DeviceKind, Looked)> = Vec::new();
    for (at, what) in found {
        let (kind, address) = what.device(at);
        let name = at.to_string();
        if let Some(id) = by_address.get(&address) {
            skipped.push(Skipped {
                address,
                found: what,
                reason: format!("device {id} of the company has this address already"),
            });
        } else if let Some(id) = names.get(&name) {
            skipped.push(Skipped {
                address,
                found: what,
                reason: format!("device {id} of the company is named {name} already"),
            });
        } else {
            wanted.push((name, address, kind, what));
        }
    }
    if wanted.is_empty() {
        return Ok((Vec::new(), skipped));
    }
    let rows = wanted.clone();
    let created = env
        .db
        .run(move |conn| {
            let new: Vec<NewDevice<'_>> = rows
                .iter()
                .map(|(name, address, kind, _)| NewDevice {
                    company_id: company,
                    name,
                    address,
                    kind: kind.as_str(),
                    enabled: true,
                    expected_status: None,
                })
                .collect();
            db::write_transaction(conn, |conn| db::devices::create_many(conn, &new))
        })
        .await?;
    let mut added: Vec<Added> = created
        .into_iter()
        .filter_map(|device| {
            let (_, _, _, what) = wanted.iter().find(|(n, ..)| *n == device.name)?;
            Some(Added {
                device_id: device.id,
                name: device.name,
                address: device.address,
                kind: device.kind,
                found: *what,
            })
        })
        .collect();
    added.sort_by_key(|a| a.device_id);
    for a in &added {
        tracing::info!(collector.id = collector.id, device.id = a.device_id, address = %a.address, "discovery registered a device");
    }
    Ok((added, skipped))
}
