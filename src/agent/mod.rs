//! The host agent (`vigil agent`): samples this machine in the background and serves
//! the latest sample as JSON (`/metrics.json`) and in the Prometheus text format
//! (`/metrics`).
//!
//! - [`collect`]: the sampling thread ([`Collector`]) and the reader of its latest
//!   sample ([`Latest`]).
//! - the JSON document, [`AgentReport`], lives in `crate::metrics::agent_report`, where
//!   the `agent` probe reads it too; `exposition`: the same report as Prometheus text
//!   ([`AgentReport::to_exposition`]).
//! - `server`: the HTTP server ([`Agent`]), built from a bound listener, and the JSON
//!   error answers the fleet's server gives too ([`json_error`], [`no_route`],
//!   [`resource`]).

pub mod collect;
mod exposition;
mod server;

pub use self::collect::{
    CollectError, Collector, Latest, NoSample, DEFAULT_INTERVAL, MIN_INTERVAL,
};
pub use self::exposition::PREFIX as EXPOSITION_PREFIX;
pub use self::server::{json_error, no_route, resource, routes, Agent, AgentError};
pub use crate::metrics::agent_report::{
    disk_usage, percent, AgentReport, Cpu, CpuCore, Disk, LoadAverage, Memory, Network, Temperature,
};
