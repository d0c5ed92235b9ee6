//! Vigil: a distributed device-monitoring runtime.
//!
//! # Layout
//!
//! ```text
//!  REST client ──▶ http::coordinator ──StartDevices, StopDevices, ApplyConfig,──▶ SchedulerActor
//!                                      RouteDeviceUpdate, DeleteDevice, …            │
//!                                                                                    │ remote::MonitorServerClient
//!                                                                                    ▼ (HTTP)
//!  http::monitor_server ──StartMonitor, StopMonitor, UpdateConfig,──▶ MonitorServerActor
//!                         UpdateDevice, GetInfo, …                        │ supervises, keyed by device id
//!                                                                         ▼
//!                                          DeviceMonitor ── probe::Probe ──▶ the device
//!                                                │ Sample (into the node's SampleQueue),
//!                                                │ StateChanged
//!                                                ▼
//!                                          MetricsWriter ── batches ──▶ polls, events
//! ```
//!
//! Where each thing lives, from the top layer down (arrows run only downwards, and no
//! module imports a module that imports it back: `tests/api/layers.rs` checks both):
//!
//! - [`bench`]: `vigil bench SCENARIO`, benchmarks of whole processes beside their peers.
//! - [`startup`]: building each node from a bound listener; `vigil serve`.
//! - [`config`]: settings from flags, environment and file; [`cli`]: the token
//!   commands and the logging set-up; [`error`]: what stops a process from starting.
//! - [`http`]: route tables and thin handlers for both servers; JSON errors.
//! - [`actors`]: the scheduler (coordinator; on every node for failover), the monitor-server
//!   supervisor, one `DeviceMonitor` per device, the `MetricsWriter` of each monitor
//!   server and the `SampleQueue` its monitors leave their samples in, `Membership` (every node: heartbeat, validation, master) with the
//!   master-only `Reconciler` (failover and reconciliation) and `Retention`, the `ActorRegistry` behind
//!   `GET /debug/actors`, and in `actors::messages` the messages one actor sends to
//!   another whose type it does not know.
//! - [`agent`]: the host exporter (`vigil agent`); it links nothing of the database.
//! - [`fleet`]: `vigil fleet`, N simulated devices on one port (agent JSON,
//!   node_exporter text, forced states) for tests and benchmarks; a tool beside the
//!   runtime that imports only `metrics`, `agent` and `domain`.
//! - [`remote`]: the coordinator's HTTP client for the monitor-server API, and in
//!   `remote::wire` the bodies both ends speak.
//! - [`probe`]: how a device is polled, one file per kind (agent, prometheus, http, tcp),
//!   the reader of the Prometheus text format the prometheus probe parses with, and
//!   the threads it parses on (`probe::offload`).
//! - [`auth`]: API tokens, roles and the cluster token; [`health`]: how a device's state
//!   follows from its polls and the thresholds.
//! - [`db`]: diesel over SQLite or PostgreSQL, embedded migrations, query functions; it
//!   stores what it is given and converts its rows to the domain's types.
//! - [`metrics`]: series names, the agent's JSON document, the Prometheus text format.
//! - [`domain`]: the types every layer speaks (device spec, monitor config, settings,
//!   health).
//!
//! Blocking database work runs on tokio's blocking pool via `db::Db::run`, at most one
//! task per pooled connection, never on an actor's or an HTTP worker's event loop.

pub mod actors;
pub mod agent;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod fleet;
pub mod health;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod remote;
pub mod startup;
