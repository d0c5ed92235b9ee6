//! What every node's process needs: a bound listener and the one shutdown signal.

use std::net::{SocketAddr, TcpListener};

use crate::error::StartupError;

pub(super) fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
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
