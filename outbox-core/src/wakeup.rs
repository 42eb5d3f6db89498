//! Cross-process wakeups: a hint that something changed in the tables.
//!
//! Wakeups only cut latency; the tables stay the truth. A wakeup that is
//! lost (a dropped listener connection, a pooler that swallows NOTIFY)
//! costs at most a poll interval, never a message.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::DbErr;

use crate::outbox::Shared;
use crate::worker::sequencer::wake_partitions_with_work;
use crate::worker::{Shutdown, error_backoff};

/// A connection that receives the outbox's notifications from other
/// transactions (PostgreSQL `LISTEN`). Provided by a dialect that has them.
#[async_trait]
pub trait WakeupListener: Send {
    /// Waits for the next notification payload. `Ok(None)` means the
    /// connection was lost and will be re-established on the next call:
    /// notifications may have been missed meanwhile.
    async fn recv(&mut self) -> Result<Option<String>, DbErr>;
}

/// What a notification asks for. Payloads are written by the triggers the
/// dialect installs: `i` (incoming rows committed), `p<id>,<id>,...`
/// (outgoing rows committed in these partition rows), `p*` (in many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wakeup {
    Sequencer,
    Partitions(Vec<i64>),
    Everything,
}

impl Wakeup {
    pub(crate) fn parse(payload: &str) -> Self {
        match payload.strip_prefix('p') {
            None if payload == "i" => Self::Sequencer,
            Some("*") | None => Self::Everything,
            Some(ids) => {
                let parsed: Result<Vec<i64>, _> = ids.split(',').map(str::parse).collect();
                parsed.map_or(Self::Everything, Self::Partitions)
            }
        }
    }
}

/// The channel name for a table prefix.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}wake")
}

/// Relays notifications to this instance's sequencer and processors until stop.
pub(crate) async fn relay(
    shared: Arc<Shared>,
    mut listener: Box<dyn WakeupListener>,
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
                for id in ids {
                    if let Some(wake) = shared.partition_wakers.get(&id) {
                        wake.notify_one();
                    }
                }
            }
            Wakeup::Everything => {
                shared.sequencer_wake.notify_one();
                if let Err(err) = wake_partitions_with_work(&shared).await {
                    tracing::warn!(error = %err, "outbox poll for pending partitions failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        assert_eq!(Wakeup::parse("i"), Wakeup::Sequencer);
        assert_eq!(Wakeup::parse("p1,22,3"), Wakeup::Partitions(vec![1, 22, 3]));
        assert_eq!(Wakeup::parse("p*"), Wakeup::Everything);
        assert_eq!(Wakeup::parse("garbage"), Wakeup::Everything);
        assert_eq!(Wakeup::parse("p1,x"), Wakeup::Everything);
    }
}
