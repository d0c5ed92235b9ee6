//! Building the nodes from settings: bind a listener (port 0 allowed), start the actors,
//! serve. `Coordinator::build` and `MonitorServerNode::build` return as soon as the
//! node is listening; `run_until_stopped` serves until it is stopped. Tests bind port 0
//! and drive the nodes over real HTTP.

mod coordinator;
mod monitor_server;
mod serve;

use std::net::{SocketAddr, TcpListener};

pub use self::coordinator::{Coordinator, CoordinatorOptions};
pub use self::monitor_server::MonitorServerNode;
pub use self::serve::{admin_token, beside_database, ensure_local_device, serve, LOCAL_COMPANY};

use crate::error::StartupError;

fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener =
        TcpListener::bind(address).map_err(|source| StartupError::Bind { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { address, source })?;
    Ok((listener, bound))
}

/// Resolves on Ctrl-C or SIGTERM: the one shutdown signal of a process.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
