//! Building the nodes from settings: bind a listener (port 0 allowed), start the actors,
//! serve. `Coordinator::build` and `MonitorServerNode::build` return as soon as the
//! node is listening; `run_until_stopped` serves until it is stopped. Tests bind port 0
//! and drive the nodes over real HTTP.

mod coordinator;
mod database;
mod monitor_server;
mod process;
mod serve;

pub use self::coordinator::{Coordinator, CoordinatorOptions};
pub use self::database::open_database;
pub use self::monitor_server::{MonitorServerNode, MonitorServerOptions};
pub use self::serve::{admin_token, beside_database, ensure_local_device, serve, LOCAL_COMPANY};

pub use self::process::shutdown_signal;
