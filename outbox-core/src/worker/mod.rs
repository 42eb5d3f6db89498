//! The background workers: sequencer, per-partition processors, vacuum,
//! heartbeat, gauges and the wakeup relay, and [`start`], which spawns them.

pub(crate) mod config;
pub(crate) mod gauges;
pub(crate) mod guard;
pub mod leased;
pub(crate) mod membership;
pub(crate) mod ownership;
pub(crate) mod partition_row;
pub(crate) mod processor;
pub(crate) mod sequencer;
pub(crate) mod settlement;
pub(crate) mod shutdown;
pub(crate) mod unrecorded;
pub(crate) mod vacuum;
pub(crate) mod wakeup_relay;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::outbox::Shared;
use crate::queue::Mode;
use crate::worker::processor::PartitionWorker;
use crate::worker::sequencer::Sequencer;
use crate::worker::vacuum::Vacuum;
pub(crate) use config::WorkerConfig;
pub(crate) use shutdown::Shutdown;

/// Which tasks [`start`] spawns besides the pipeline's.
pub(crate) struct Launch {
    /// Read the gauges this often; `None`: no gauge task.
    pub(crate) gauge_interval: Option<Duration>,
    /// Run the sequencer, heartbeat, vacuum and processors, with this
    /// instance's heartbeat incarnation; `None`: a producer-only instance.
    pub(crate) workers: Option<i64>,
    /// Listen for other processes' notifications where the dialect can.
    pub(crate) listen: bool,
}

/// Spawns the workers of one started outbox and returns their tasks. Each
/// watches `shutdown`; the gauge task watches its own subscription of `stop`.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    config: &WorkerConfig,
    launch: Launch,
    stop: &watch::Sender<bool>,
    shutdown: Shutdown,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(interval) = launch.gauge_interval {
        tasks.push(tokio::spawn(gauges::run_gauges(
            shared.clone(),
            interval,
            Shutdown(stop.subscribe()),
        )));
    }
    let Some(incarnation) = launch.workers else {
        return tasks;
    };
    tasks.push(tokio::spawn(
        Sequencer::new(shared.clone(), config.clone(), shutdown.clone()).run(),
    ));
    tasks.push(tokio::spawn(membership::run(
        shared.clone(),
        config.owner.clone(),
        incarnation,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(
        Vacuum::new(shared.clone(), config.clone(), shutdown.clone()).run(),
    ));
    for runtime in shared.queues.values() {
        if matches!(runtime.config.mode, Mode::ProduceOnly) {
            continue;
        }
        for (partition, id) in runtime.partition_ids.iter().enumerate() {
            let Some(wake) = shared.partition_wakers.get(id).cloned() else {
                continue;
            };
            // Look once at start: there may be a backlog from before.
            wake.notify_one();
            let worker = PartitionWorker::new(
                shared.clone(),
                runtime.config.clone(),
                u32::try_from(partition).unwrap_or(u32::MAX),
                *id,
                wake,
                shutdown.clone(),
                config.clone(),
            );
            tasks.push(tokio::spawn(worker.run()));
        }
    }
    // Pick up incoming rows left from before.
    shared.sequencer_wake.notify_one();
    let channel = crate::wakeup::channel(&shared.tables.prefix);
    let listener = if launch.listen {
        shared.dialect.listen(&shared.db, &channel).await
    } else {
        Ok(None)
    };
    match listener {
        Ok(Some(listener)) => {
            shared.listening.store(true, Ordering::Relaxed);
            tasks.push(tokio::spawn(wakeup_relay::relay(
                shared.clone(),
                listener,
                shutdown,
            )));
        }
        Ok(None) => {}
        Err(err) => {
            // Not fatal: in-process wakeups and polling still deliver everything.
            tracing::warn!(error = %err, "outbox could not listen for wakeups; relying on polling");
        }
    }
    tasks
}
