//! The stop signal every worker loop watches, and the pause after errors.

use std::time::Duration;

use tokio::sync::watch;

/// The stop signal every worker loop watches.
#[derive(Clone)]
pub(crate) struct Shutdown(pub(crate) watch::Receiver<bool>);

impl Shutdown {
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stop was requested.
    pub(crate) async fn wait(&mut self) {
        // An error means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration` or until stop, whichever is first.
    pub(crate) async fn sleep(&mut self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.wait() => {}
        }
    }
}

/// Doubling pause after database errors, capped at five seconds.
pub(crate) fn error_backoff(consecutive_errors: u32) -> Duration {
    let exponent = consecutive_errors.saturating_sub(1).min(6);
    Duration::from_millis(50u64 << exponent).min(Duration::from_secs(5))
}
