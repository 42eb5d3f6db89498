//! Cross-process wakeups: a hint that something changed in the tables.
//!
//! Wakeups only cut latency; the tables stay the truth. A wakeup that is
//! lost (a dropped listener connection, a pooler that swallows NOTIFY)
//! costs at most a poll interval, never a message.
//!
//! This module holds what a dialect provides and what the payloads mean;
//! the task that acts on them is `worker::wakeup_relay`.

use async_trait::async_trait;
use sea_orm::DbErr;

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
