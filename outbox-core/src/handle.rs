//! The running outbox: the producer API and a stop that drains.

use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::event::{EventFilter, EventStream};
use crate::outbox::Outbox;

/// What [`OutboxHandle::stop`] allows beyond the handlers' timeouts: the last
/// outcomes to be written, leases to be given back.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A started outbox. Dropping it does not stop the workers: call
/// [`OutboxHandle::stop`].
#[derive(Debug)]
pub struct OutboxHandle {
    outbox: Outbox,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl OutboxHandle {
    pub(crate) fn new(
        outbox: Outbox,
        stop: watch::Sender<bool>,
        tasks: Vec<JoinHandle<()>>,
    ) -> Self {
        Self {
            outbox,
            stop,
            tasks: Mutex::new(tasks),
        }
    }

    /// Every lifecycle event of this instance, buffered up to 1,024: see
    /// [`OutboxHandle::subscribe`].
    pub fn events(&self) -> EventStream {
        self.subscribe(EventFilter::all(), 1024)
    }

    /// Lifecycle events matching `filter`, buffered up to `buffer`. Best
    /// effort: a subscriber whose buffer is full is dropped and its stream
    /// ends, so the workers never wait for it. Durable catch-up is by cursor
    /// on the tables, not by this stream.
    pub fn subscribe(&self, filter: EventFilter, buffer: usize) -> EventStream {
        self.outbox.shared.events.subscribe(filter, buffer)
    }

    /// Whether this instance found another one running under its
    /// [instance name](crate::OutboxBuilder::instance_name): its own
    /// heartbeats lapsed (a paused process, a lost database connection) and
    /// a namesake started meanwhile. While it is `true` this instance takes
    /// no partition and gives back the leases it holds, so the two never
    /// handle the same partition; it takes partitions again when the
    /// other's heartbeat runs out. An error is logged when it turns `true`.
    pub fn instance_name_conflict(&self) -> bool {
        self.outbox.shared.ownership.name_taken()
    }

    /// The producer API of this instance.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stops the workers: each finishes the batch it is handling (committing
    /// or acknowledging it), gives back its lease, and exits. Returns when
    /// all have exited, or at the latest after twice the longest
    /// [handler timeout](crate::Queue::handler_timeout) of this instance's
    /// queues plus 5 seconds: a handler still running gets until its
    /// timeout, a database statement it left waiting is cut off by the
    /// server at the same timeout, then the outcome is written. A worker
    /// still running at the deadline (a handler blocking its thread, a
    /// database that does not answer) is aborted: its transaction rolls
    /// back, and its partitions' leases are left to expire. Calling it
    /// again returns at once.
    ///
    /// # Cancel safety
    /// Cancel safe: the stop signal is sent before the first await; a later
    /// call waits for the remaining workers.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.stop_deadline();
        let mut tasks = self.tasks.lock().await;
        for mut task in tasks.drain(..) {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "outbox worker task ended abnormally");
                }
                Err(_) => {
                    task.abort();
                    tracing::error!(
                        "outbox worker did not stop by the deadline of stop(); aborted it"
                    );
                }
            }
        }
        self.outbox.shared.events.close();
    }

    /// How long [`OutboxHandle::stop`] waits for the workers.
    fn stop_deadline(&self) -> Duration {
        let longest = self
            .outbox
            .shared
            .queues
            .values()
            .filter(|runtime| !matches!(runtime.config.mode, crate::queue::Mode::ProduceOnly))
            .map(|runtime| runtime.config.handler_timeout)
            .max()
            .unwrap_or_default();
        longest.saturating_mul(2).saturating_add(STOP_GRACE)
    }
}
