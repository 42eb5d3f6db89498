//! The background workers: sequencer, per-partition processors, vacuum.

pub(crate) mod guard;
pub mod lease;
pub(crate) mod membership;
pub(crate) mod partition_row;
pub(crate) mod processor;
pub(crate) mod sequencer;
pub(crate) mod settlement;
pub(crate) mod unrecorded;
pub(crate) mod vacuum;

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

/// Settings shared by every worker of one outbox instance.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) poll_interval: Duration,
    pub(crate) sequencer_batch: u32,
    pub(crate) vacuum_interval: Duration,
    pub(crate) vacuum_batch: u32,
    pub(crate) owner: String,
}
