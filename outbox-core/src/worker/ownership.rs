//! This instance's share of the partitions: how many instances are alive
//! and how many leases of each queue this one holds. The heartbeat
//! (`membership`) updates it; processors consult it before taking a lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// This instance's view of the membership and of the leases it holds.
pub(crate) struct Ownership {
    pub(super) live_instances: AtomicUsize,
    held: HashMap<String, AtomicUsize>,
    /// Another live incarnation holds this instance's heartbeat row.
    pub(super) name_taken: AtomicBool,
}

impl Ownership {
    pub(crate) fn new<'a>(queues: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            live_instances: AtomicUsize::new(1),
            held: queues
                .into_iter()
                .map(|q| (q.to_owned(), AtomicUsize::new(0)))
                .collect(),
            name_taken: AtomicBool::new(false),
        }
    }

    /// Whether another running instance uses this one's name: this one then
    /// takes no partition and gives back the leases it holds.
    pub(crate) fn name_taken(&self) -> bool {
        self.name_taken.load(Ordering::Relaxed)
    }

    /// The most partitions of a queue this instance should hold.
    pub(crate) fn share(&self, partitions: u32) -> usize {
        let live = self.live_instances.load(Ordering::Relaxed).max(1);
        (partitions as usize).div_ceil(live)
    }

    /// Live instances, as the last heartbeat counted them.
    pub(crate) fn live_instances(&self) -> usize {
        self.live_instances.load(Ordering::Relaxed)
    }

    /// Leases of `queue` this instance holds.
    pub(crate) fn held_by_this(&self, queue: &str) -> usize {
        self.held(queue)
            .map_or(0, |held| held.load(Ordering::Relaxed))
    }

    fn held(&self, queue: &str) -> Option<&AtomicUsize> {
        self.held.get(queue)
    }

    /// Whether another lease of `queue` may be taken now.
    pub(crate) fn may_take(&self, queue: &str, partitions: u32) -> bool {
        !self.name_taken()
            && self
                .held(queue)
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
