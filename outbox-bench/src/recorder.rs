//! What the handler records: first delivery per message, deliveries, order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use outbox_core::sea_orm::DatabaseTransaction;
use outbox_core::{Batch, BatchResult, LeasedHandler, TransactionalHandler};
use tokio::sync::Notify;

use crate::clock::{Clock, NEVER};

/// How the messages are split among producers: producer `p` sends
/// `counts[p]` messages with sequence numbers `0..counts[p]`, and message
/// `(p, seq)` has the global index `offsets[p] + seq`.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) counts: Vec<u64>,
    offsets: Vec<u64>,
    pub(crate) total: u64,
}

impl Plan {
    /// `total` messages over `producers` producers, the remainder to the first ones.
    pub(crate) fn new(total: u64, producers: u32) -> Self {
        let k = u64::from(producers.max(1));
        let counts: Vec<u64> = (0..k)
            .map(|p| total / k + u64::from(p < total % k))
            .collect();
        let offsets = counts
            .iter()
            .scan(0, |next, count| {
                let offset = *next;
                *next += count;
                Some(offset)
            })
            .collect();
        Self {
            counts,
            offsets,
            total,
        }
    }

    /// The global index of message `seq` of `producer`, if it is one of ours.
    pub(crate) fn index(&self, producer: u64, seq: u64) -> Option<usize> {
        let p = usize::try_from(producer).ok()?;
        let count = *self.counts.get(p)?;
        if seq >= count {
            return None;
        }
        usize::try_from(self.offsets.get(p)? + seq).ok()
    }
}

/// A payload of `size` bytes (at least 16): producer id and sequence number as
/// little-endian u64, then pseudo-random padding so compressing backends
/// (PostgreSQL TOAST) do not flatter large payloads.
pub(crate) fn payload(producer: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size.max(16));
    bytes.extend_from_slice(&producer.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    let mut x = (producer << 40) ^ seq ^ 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < size {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (size - bytes.len()).min(8);
        bytes.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    bytes
}

/// The producer id and sequence number of a payload.
fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let producer = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((producer, seq))
}

#[derive(Debug)]
struct State {
    /// When the handler first received message `i` (`NEVER`: not yet), in
    /// microseconds of the run's clock. Doubles as the delivered bitmap.
    first: Vec<u32>,
    /// Every message handed to the handler, redeliveries included.
    deliveries: u64,
    /// Messages whose payload is not one of this run's.
    unknown: u64,
    /// Highest sequence number first-delivered per (partition, producer).
    max_seq: HashMap<(u32, u64), u64>,
    /// First deliveries of a message after a later one of the same producer
    /// in the same partition.
    order_violations: u64,
}

/// Shared between the handler and the driver.
#[derive(Debug)]
pub(crate) struct Recorder {
    plan: Plan,
    clock: Clock,
    state: Mutex<State>,
    distinct: AtomicUsize,
    all_delivered: Notify,
}

/// What the handler saw, once the run is over.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// First delivery of message `i` in clock microseconds, `NEVER` if none.
    pub(crate) first: Vec<u32>,
    pub(crate) deliveries: u64,
    pub(crate) unknown: u64,
    pub(crate) order_violations: u64,
}

impl Recorder {
    pub(crate) fn new(plan: Plan, clock: Clock) -> Self {
        let n = usize::try_from(plan.total).unwrap_or(usize::MAX);
        Self {
            state: Mutex::new(State {
                first: vec![NEVER; n],
                deliveries: 0,
                unknown: 0,
                max_seq: HashMap::new(),
                order_violations: 0,
            }),
            plan,
            clock,
            distinct: AtomicUsize::new(0),
            all_delivered: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half
        // updated in a way that matters more than the panic itself.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one handler call.
    fn record(&self, batch: &Batch) {
        let now = self.clock.now();
        let mut newly = 0;
        {
            let mut state = self.lock();
            for message in &batch.messages {
                state.deliveries += 1;
                let Some((producer, seq)) = decode(&message.payload) else {
                    state.unknown += 1;
                    continue;
                };
                let Some(index) = self.plan.index(producer, seq) else {
                    state.unknown += 1;
                    continue;
                };
                let Some(slot) = state.first.get_mut(index) else {
                    state.unknown += 1;
                    continue;
                };
                if *slot != NEVER {
                    // A redelivery: counted as a duplicate, not checked for order.
                    continue;
                }
                *slot = now;
                newly += 1;
                let key = (batch.partition, producer);
                match state.max_seq.get(&key).copied() {
                    Some(max) if seq < max => state.order_violations += 1,
                    _ => {
                        state.max_seq.insert(key, seq);
                    }
                }
            }
        }
        let total = usize::try_from(self.plan.total).unwrap_or(usize::MAX);
        if newly > 0 && self.distinct.fetch_add(newly, Ordering::AcqRel) + newly >= total {
            self.all_delivered.notify_one();
        }
    }

    /// Distinct messages delivered so far.
    pub(crate) fn distinct(&self) -> usize {
        self.distinct.load(Ordering::Acquire)
    }

    /// Resolves once every message was delivered at least once (or at once
    /// if that already happened).
    pub(crate) async fn wait_all(&self) {
        let total = usize::try_from(self.plan.total).unwrap_or(usize::MAX);
        while self.distinct() < total {
            self.all_delivered.notified().await;
        }
    }

    /// What was recorded, moved out (not copied: at a million messages a
    /// copy would be 4 MB more of the bench's own memory). Call it once the
    /// handler can no longer run; later deliveries would be lost to it.
    pub(crate) fn take(&self) -> Deliveries {
        let mut state = self.lock();
        Deliveries {
            first: std::mem::take(&mut state.first),
            deliveries: state.deliveries,
            unknown: state.unknown,
            order_violations: state.order_violations,
        }
    }
}

/// The leased-mode handler: records and acknowledges.
pub(crate) struct LeasedBench(pub(crate) Arc<Recorder>);

#[async_trait]
impl LeasedHandler for LeasedBench {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        self.0.record(batch);
        BatchResult::success()
    }
}

/// The transactional-mode handler: records and acknowledges, writing nothing.
///
/// It records when it is called, before the processor commits the batch.
/// That is the instant latency is measured to, and the processor commits
/// right after the handler returns. If that commit failed, the batch would
/// be handed over again and counted here as duplicates: the check errs on
/// the side of reporting a duplicate that the database never committed,
/// never the other way round.
pub(crate) struct TransactionalBench(pub(crate) Arc<Recorder>);

#[async_trait]
impl TransactionalHandler for TransactionalBench {
    async fn handle(&self, _txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        self.0.record(batch);
        BatchResult::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_the_remainder_to_the_first_producers() {
        let plan = Plan::new(10, 4);
        assert_eq!(plan.counts, vec![3, 3, 2, 2]);
        assert_eq!(plan.index(0, 0), Some(0));
        assert_eq!(plan.index(1, 0), Some(3));
        assert_eq!(plan.index(3, 1), Some(9));
        assert_eq!(plan.index(3, 2), None);
        assert_eq!(plan.index(4, 0), None);
    }

    #[test]
    fn payload_round_trips_and_has_the_size() {
        let bytes = payload(3, 77, 256);
        assert_eq!(bytes.len(), 256);
        assert_eq!(decode(&bytes), Some((3, 77)));
        assert_eq!(payload(1, 2, 16).len(), 16);
        assert_eq!(payload(1, 2, 21).len(), 21);
    }
}
