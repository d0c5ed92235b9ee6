//! The actors of a node and their messages.

pub mod backoff;
pub mod device_monitor;
pub mod membership;
pub mod messages;
pub mod monitor_server;
pub mod queue;
pub mod reconciler;
pub mod registry;
pub mod remote_writer;
pub mod retention;
pub mod sample_queue;
pub mod scheduler;
pub mod writer;
