//! Talking to monitor servers: the coordinator's client of their HTTP API
//! ([`MonitorServerClient`]), a look at all of them at once ([`Snapshot`]), and the
//! bodies both ends speak ([`wire`]).

mod client;
mod snapshot;
pub mod wire;

pub use self::client::{base_url, MonitorServerClient, RemoteError, POOLED_CONNECTION_IDLE};
pub use self::snapshot::Snapshot;
