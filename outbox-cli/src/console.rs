//! `outbox console`: the web console, served until interrupted.

use std::net::SocketAddr;

use outbox_core::OutboxAdmin;

use crate::connect::Failure;

/// Serves the console on `bind` until Ctrl-C or SIGTERM.
///
/// # Errors
/// [`Failure::Failed`] when the address cannot be bound or serving fails.
pub async fn serve(admin: OutboxAdmin, bind: SocketAddr, actions: bool) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Failure::Failed(format!("cannot listen on {bind}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Failed(format!("cannot read the bound address: {e}")))?;
    let app = outbox_web::Console::new(admin)
        .allow_actions(actions)
        .router::<()>();
    let mode = if actions {
        "actions allowed"
    } else {
        "read-only"
    };
    // On stderr, so a script can read the address of a `--bind ...:0` console.
    eprintln!("outbox console on http://{local}/ ({mode}); Ctrl-C stops it");
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|e| Failure::Failed(format!("the console stopped: {e}")))
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
