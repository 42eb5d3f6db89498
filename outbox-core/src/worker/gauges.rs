//! The gauge task: reads the stats every `gauge_interval` and sets the
//! backlog, age, dead-letter, blocked, owned and live gauges of
//! [`metric`](crate::metric).

use std::sync::Arc;
use std::time::Duration;

use crate::error::OutboxError;
use crate::outbox::{Outbox, Shared};
use crate::outbox_admin::OutboxAdmin;
use crate::worker::shutdown::Shutdown;

/// Reads the gauges every `interval` until stop.
pub(crate) async fn run_gauges(shared: Arc<Shared>, interval: Duration, mut shutdown: Shutdown) {
    let admin = Outbox {
        shared: shared.clone(),
    }
    .admin();
    while !shutdown.is_set() {
        if let Err(err) = read_gauges(&shared, &admin).await {
            tracing::debug!(error = %err, "outbox could not read its gauges; will try again");
        }
        shutdown.sleep(interval).await;
    }
}

async fn read_gauges(shared: &Shared, admin: &OutboxAdmin) -> Result<(), OutboxError> {
    let live = shared.ownership.live_instances() as f64;
    for (name, m) in &shared.metrics.queues {
        m.owned.set(shared.ownership.held_by_this(name) as f64);
        m.live.set(live);
    }
    let stats = admin.stats().await?;
    for (name, m) in &shared.metrics.queues {
        let Some(q) = stats.queue(name) else {
            continue;
        };
        m.backlog.set((q.incoming + q.unprocessed) as f64);
        m.oldest_age.set(
            q.oldest_unprocessed_age_ms
                .map_or(0.0, |ms| ms as f64 / 1000.0),
        );
        m.blocked.set(f64::from(q.blocked_partitions));
        for (status, gauge) in &m.dead_letters {
            gauge.set(q.dead_letters.get(*status) as f64);
        }
    }
    Ok(())
}
