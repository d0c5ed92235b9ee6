//! `vigil fleet`: N simulated devices served from one process, for tests and
//! benchmarks. Each device answers as a Vigil agent (`/d/{i}/metrics.json`), as a
//! stock node_exporter (`/d/{i}/metrics`) and as the agent's Prometheus text
//! (`/d/{i}/agent-metrics`), with readings that are a pure function of the seed, the
//! device's index and the time, and can be forced into a state at run time.
//!
//! - [`profile`]: each device's seeded profile: layout, wander, class and the shares of
//!   the classes.
//! - [`model`]: a device's readings at a moment, counters in closed form; forced
//!   states and the anchors that keep counters continuous across them.
//! - [`control`]: the states devices are forced into, by index.
//! - [`node_exporter`]: the node_exporter text, laid out once per device layout.
//! - [`report`]: the agent's JSON document of a reading.
//! - [`devices`]: the device list, the bulk API's body.
//! - [`options`]: what the command takes and checks; [`FleetError`].
//! - [`server`]: the HTTP server ([`Fleet`]), built from a bound listener.
//!
//! The fleet is a tool beside the runtime: it imports only `metrics`, `agent` and
//! `domain`, and only `startup` (and the binary and benchmarks) import it.

pub mod control;
pub mod devices;
pub mod model;
pub mod node_exporter;
pub mod options;
pub mod profile;
pub mod report;
pub mod server;

pub use self::devices::{device_name, DeviceList};
pub use self::model::Setting;
pub use self::options::{document_kind, FleetError, FleetOptions, DEFAULT_LISTEN, PROFILES_HELP};
pub use self::profile::{Class, Profile, Shares, DEFAULT_SEED};
pub use self::server::Fleet;
