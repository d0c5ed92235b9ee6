//! The actors of a node and their messages.

pub mod backoff;
pub mod device_monitor;
pub mod failover;
pub mod membership;
pub mod messages;
pub mod monitor_server;
pub mod registry;
pub mod retention;
pub mod scheduler;
pub mod writer;
