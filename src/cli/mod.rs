//! What the `vigil` binary runs besides the nodes: the token commands ([`tokens`]), the
//! store's figures ([`store`]) and the logging set-up every process shares ([`telemetry`]).

pub mod store;
pub mod telemetry;
pub mod tokens;
