//! A handler that records what it receives, and waiting on conditions.

use std::sync::{Arc, Mutex};

use outbox_core::{Batch, BatchResult, LeasedHandler};
pub use outbox_test_support::{poll_until, wait_until};

/// One delivery as a handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The queue.
    pub queue: String,
    /// The partition.
    pub partition: u32,
    /// The sequence number.
    pub seq: i64,
    /// The message id.
    pub message_id: uuid::Uuid,
    /// The payload as text.
    pub payload: String,
}

/// Shared log of deliveries.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Received>>>);

impl Recorder {
    /// Records a batch; panics if a delivery names another queue or
    /// partition than its batch.
    pub fn record(&self, batch: &Batch) {
        let mut log = self.0.lock().unwrap();
        for m in &batch.messages {
            assert_eq!(
                (m.queue.as_str(), m.partition),
                (batch.queue.as_str(), batch.partition),
                "a delivery of seq {} names another queue or partition than its batch",
                m.seq
            );
            log.push(Received {
                queue: batch.queue.clone(),
                partition: batch.partition,
                seq: m.seq,
                message_id: m.message_id,
                payload: String::from_utf8_lossy(&m.payload).into_owned(),
            });
        }
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }

    /// How many deliveries (duplicates included).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many distinct message ids.
    pub fn distinct(&self) -> usize {
        let log = self.0.lock().unwrap();
        log.iter()
            .map(|r| r.message_id)
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    /// Checks that within each (queue, partition) the first deliveries of
    /// each seq came in order 1, 2, 3, ... without gaps. Returns the number
    /// of violations.
    pub fn order_violations(&self) -> usize {
        let log = self.0.lock().unwrap();
        let mut next: std::collections::HashMap<(String, u32), i64> = Default::default();
        let mut violations = 0;
        for r in log.iter() {
            let expected = next.entry((r.queue.clone(), r.partition)).or_insert(1);
            if r.seq == *expected {
                *expected += 1;
            } else if r.seq > *expected {
                violations += 1;
                *expected = r.seq + 1;
            }
            // r.seq < expected: a redelivery of something already seen.
        }
        violations
    }
}

#[async_trait::async_trait]
impl LeasedHandler for Recorder {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        self.record(batch);
        BatchResult::success()
    }
}
