//! Integration tests, compiled as one binary: real HTTP servers on port 0, real
//! databases (a SQLite file; PostgreSQL when `VIGIL_TEST_DATABASE_URL` is set), real
//! processes where the test is about processes.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly when the system under test misbehaves"
)]

mod helpers;
mod history;
mod layers;

mod agent;
mod bad_input;
mod blocks;
mod bulk;
mod claims;
mod cluster;
mod failover;
mod fleet;
mod metrics_store;
mod monitor_server_api;
mod node_exporter;
mod openapi;
mod outage;
mod placement;
mod probes;
mod processes;
mod prometheus_server;
mod queue;
mod races;
mod reconcile;
mod remote_write;
mod rollups;
mod schedules;
mod scheduling;
mod schema;
mod store;
mod tenants;
