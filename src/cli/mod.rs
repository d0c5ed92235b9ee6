//! What the `vigil` binary runs besides the nodes: the token commands ([`tokens`]) and
//! the logging set-up every process shares ([`telemetry`]).

pub mod telemetry;
pub mod tokens;
