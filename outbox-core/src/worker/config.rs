//! Settings shared by every worker of one outbox instance.

use std::time::Duration;

/// Settings shared by every worker of one outbox instance.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) poll_interval: Duration,
    pub(crate) sequencer_batch: u32,
    pub(crate) vacuum_interval: Duration,
    pub(crate) vacuum_batch: u32,
    pub(crate) owner: String,
}
