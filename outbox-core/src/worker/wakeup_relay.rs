//! The task that turns notifications from other transactions into wakes of
//! this instance's sequencer and processors (see [`crate::wakeup`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::outbox::Shared;
use crate::wakeup::{Wakeup, WakeupListener};
use crate::worker::sequencer::wake_partitions_with_work;
use crate::worker::shutdown::{Shutdown, error_backoff};

/// Relays notifications to this instance's sequencer and processors until stop.
///
/// Anyone who can connect can NOTIFY the channel, so a flood must cost
/// neither memory nor database work in proportion to its size. Reading is
/// kept apart from acting on it: a notification only sets wakes that
/// coalesce (a [`Notify`] holds at most one permit per target), and one that
/// asks to look everywhere (or that is not ours) sets a single pending
/// poll, run by a second loop one at a time and at most every
/// [`POLL_SPACING`]. However many notifications arrive, what waits in this
/// process is one permit per partition, one for the sequencer and one poll,
/// and the listener keeps up with the server, so the server's notification
/// queue does not back up behind this instance either.
pub(crate) async fn relay(
    shared: Arc<Shared>,
    mut listener: Box<dyn WakeupListener>,
    shutdown: Shutdown,
) {
    let poll = Notify::new();
    tokio::join!(
        read(&shared, listener.as_mut(), &poll, shutdown.clone()),
        poll_on_request(&shared, &poll, shutdown),
    );
}

/// Reads notifications as fast as they come and turns each into wakes.
async fn read(
    shared: &Shared,
    listener: &mut dyn WakeupListener,
    poll: &Notify,
    mut shutdown: Shutdown,
) {
    let mut errors = 0;
    while !shutdown.is_set() {
        let received = tokio::select! {
            received = listener.recv() => received,
            () = shutdown.wait() => return,
        };
        let wakeup = match received {
            Ok(Some(payload)) => {
                errors = 0;
                Wakeup::parse(&payload)
            }
            Ok(None) => {
                tracing::info!(
                    "outbox wakeup listener reconnecting; looking at the tables meanwhile"
                );
                Wakeup::Everything
            }
            Err(err) => {
                errors += 1;
                tracing::warn!(error = %err, "outbox wakeup listener failed; polling continues");
                shutdown.sleep(error_backoff(errors)).await;
                Wakeup::Everything
            }
        };
        match wakeup {
            Wakeup::Sequencer => shared.sequencer_wake.notify_one(),
            Wakeup::Partitions(ids) => {
                // Ids of partitions this instance does not process (or that
                // do not exist) wake nothing.
                for id in ids {
                    if let Some(wake) = shared.partition_wakers.get(&id) {
                        wake.notify_one();
                    }
                }
            }
            Wakeup::Everything => poll.notify_one(),
        }
    }
}

/// The least time between two looks at the tables asked for by
/// notifications: a flood of them costs at most this many looks a second.
const POLL_SPACING: Duration = Duration::from_millis(10);

/// Wakes the sequencer and looks for partitions with work each time
/// [`read`] asks, one look at a time and at most one per [`POLL_SPACING`];
/// requests made meanwhile collapse into the next look.
async fn poll_on_request(shared: &Shared, poll: &Notify, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = poll.notified() => {}
            () = shutdown.wait() => return,
        }
        let started = tokio::time::Instant::now();
        shared.sequencer_wake.notify_one();
        if let Err(err) = wake_partitions_with_work(shared).await {
            tracing::warn!(error = %err, "outbox poll for pending partitions failed");
        }
        shutdown
            .sleep(POLL_SPACING.saturating_sub(started.elapsed()))
            .await;
    }
}
