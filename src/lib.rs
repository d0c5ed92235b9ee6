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
//!                                                │ Sample, StateChanged
//!                                                ▼
//!                                          MetricsWriter ── batches ──▶ samples, events
//! ```
//!
//! - [`actors`]: the scheduler (coordinator; on every node for failover), the monitor-server
//!   supervisor, one `DeviceMonitor` per device, the `MetricsWriter` of each monitor
//!   server, `Membership` (every node: heartbeat, validation, master) with the
//!   master-only `Failover` and `Retention`, and the `ActorRegistry` behind
//!   `GET /debug/actors`.
//! - [`health`]: how a device's state follows from its polls and the thresholds.
//! - [`agent`]: the host exporter (`vigil agent`), and the JSON document it serves.
//! - [`series`] names readings; [`exposition`] writes the Prometheus text format.
//! - [`http`]: route tables and thin handlers for both servers; JSON errors.
//! - [`remote`]: the coordinator's HTTP client for the monitor-server API; [`wire`] its bodies.
//! - [`db`]: diesel over SQLite or PostgreSQL, embedded migrations, query functions.
//! - [`probe`]: how a device is polled, one file per kind (agent, prometheus, http, tcp).
//! - [`domain`]: the types every layer speaks (device spec, monitor config, health).
//! - [`startup`]: building each node from a bound listener; `vigil serve`.
//! - [`config`]: settings from flags, environment and file.
//!
//! Arrows go one way: `http → actors → remote / db / probe`; `db` knows nothing of HTTP
//! or actors. Blocking database work runs on tokio's blocking pool via `db::Db::run`,
//! never on an actor's or an HTTP worker's event loop.

pub mod actors;
pub mod agent;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod exposition;
pub mod health;
pub mod http;
pub mod load;
pub mod probe;
pub mod remote;
pub mod series;
pub mod startup;
pub mod telemetry;
pub mod token_commands;
pub mod wire;
