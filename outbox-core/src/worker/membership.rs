//! Membership: which instances are alive, and each one's fair share of a
//! queue's partitions.
//!
//! Every instance with workers upserts a heartbeat row every
//! [`HEARTBEAT`] and counts the live rows. A worker takes a new partition
//! lease only while its instance holds fewer than
//! `ceil(partitions / live instances)` of the queue, and an instance over
//! its share gives leases back after a batch, so partitions spread over the
//! instances and move when one joins or leaves. A dead instance's heartbeat
//! runs out after [`HEARTBEAT_TTL`] and its leases after their length; its
//! partitions are then taken by the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};

use crate::error::OutboxError;
use crate::outbox::Shared;
use crate::worker::{Shutdown, error_backoff};

/// How often an instance writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a heartbeat counts an instance as alive.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
/// A heartbeat row that ran out this long ago belongs to an instance that
/// is gone (killed, never stopped); the next beat of any instance deletes it.
pub const HEARTBEAT_FORGET: Duration = Duration::from_secs(60);

/// This instance's view of the membership and of the leases it holds.
pub(crate) struct Ownership {
    live_instances: AtomicUsize,
    held: HashMap<String, AtomicUsize>,
}

impl Ownership {
    pub(crate) fn new<'a>(queues: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            live_instances: AtomicUsize::new(1),
            held: queues
                .into_iter()
                .map(|q| (q.to_owned(), AtomicUsize::new(0)))
                .collect(),
        }
    }

    /// The most partitions of a queue this instance should hold.
    pub(crate) fn share(&self, partitions: u32) -> usize {
        let live = self.live_instances.load(Ordering::Relaxed).max(1);
        (partitions as usize).div_ceil(live)
    }

    fn held(&self, queue: &str) -> Option<&AtomicUsize> {
        self.held.get(queue)
    }

    /// Whether another lease of `queue` may be taken now.
    pub(crate) fn may_take(&self, queue: &str, partitions: u32) -> bool {
        self.held(queue)
            .is_none_or(|held| held.load(Ordering::Relaxed) < self.share(partitions))
    }

    pub(crate) fn taken(&self, queue: &str) {
        if let Some(held) = self.held(queue) {
            held.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn dropped(&self, queue: &str) {
        if let Some(held) = self.held(queue) {
            let _ = held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Claims the right to give one lease of `queue` back when this
    /// instance holds more than its share; the caller must then release.
    pub(crate) fn claim_give_back(&self, queue: &str, partitions: u32) -> bool {
        let share = self.share(partitions);
        self.held(queue).is_some_and(|held| {
            held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > share).then(|| n - 1)
            })
            .is_ok()
        })
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Heartbeats until stop, then removes this instance's row.
pub(crate) async fn run(shared: Arc<Shared>, owner: String, mut shutdown: Shutdown) {
    let mut errors = 0;
    while !shutdown.is_set() {
        let pause = match beat(&shared, &owner).await {
            Ok(()) => {
                errors = 0;
                HEARTBEAT
            }
            Err(err) => {
                errors += 1;
                tracing::warn!(error = %err, "outbox heartbeat failed");
                error_backoff(errors).min(HEARTBEAT)
            }
        };
        shutdown.sleep(pause).await;
    }
    let leave = Query::delete()
        .from_table(shared.tables.instance.clone())
        .and_where(Expr::col("owner").eq(owner.as_str()))
        .to_owned();
    if let Err(err) = shared.db.execute(&leave).await {
        tracing::warn!(error = %err, "outbox could not remove its heartbeat on stop");
    }
}

/// Writes this instance's heartbeat and counts the live instances.
async fn beat(shared: &Shared, owner: &str) -> Result<(), OutboxError> {
    let err = |e| shared.db_error(e);
    let now = shared.dialect.now_millis();
    let upsert = Query::insert()
        .into_table(shared.tables.instance.clone())
        .columns(["owner", "heartbeat_until"])
        .values([Expr::val(owner), now.clone().add(millis(HEARTBEAT_TTL))])
        .map_err(|e| OutboxError::InvalidConfig(e.to_string()))?
        .on_conflict(
            OnConflict::column("owner")
                .update_column("heartbeat_until")
                .to_owned(),
        )
        .to_owned();
    shared.db.execute(&upsert).await.map_err(err)?;
    let count = Query::select()
        .expr_as(Expr::col("owner").count(), Alias::new("n"))
        .from(shared.tables.instance.clone())
        .and_where(Expr::col("heartbeat_until").gt(now))
        .to_owned();
    let live: i64 = match shared.db.query_one(&count).await.map_err(err)? {
        Some(row) => row.try_get("", "n").map_err(err)?,
        None => 1,
    };
    shared
        .ownership
        .live_instances
        .store(usize::try_from(live).unwrap_or(1).max(1), Ordering::Relaxed);
    // An instance that was killed never deletes its row, and nobody else
    // would: rows would pile up with every crash or rolling deploy under
    // fresh names. One statement on a table with a row per instance; when
    // nothing is that old it deletes (and on PostgreSQL writes) nothing.
    let forget = Query::delete()
        .from_table(shared.tables.instance.clone())
        .and_where(
            Expr::col("heartbeat_until")
                .lt(shared.dialect.now_millis().sub(millis(HEARTBEAT_FORGET))),
        )
        .to_owned();
    shared.db.execute(&forget).await.map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_and_give_back_stops_at_the_share() {
        let ownership = Ownership::new(["q"]);
        ownership.live_instances.store(3, Ordering::Relaxed);
        assert_eq!(ownership.share(16), 6);
        for _ in 0..8 {
            ownership.taken("q");
        }
        assert!(!ownership.may_take("q", 16));
        assert!(ownership.claim_give_back("q", 16));
        assert!(ownership.claim_give_back("q", 16));
        assert!(
            !ownership.claim_give_back("q", 16),
            "gave back below the share"
        );
        ownership.dropped("q");
        assert!(ownership.may_take("q", 16));
    }
}
