//! The shutdown signal: SIGTERM or Ctrl-C.

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT).
///
/// # Cancel safety
/// Cancel safe.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received: shutting down"),
        () = terminate => tracing::info!("SIGTERM received: shutting down"),
    }
}
