//! The headers a relay adds to every message it publishes.

use outbox_core::{Batch, Delivery};

/// Header naming the outbox queue the message was enqueued on.
pub const HEADER_QUEUE: &str = "Outbox-Queue";
/// Header with the partition number, in decimal.
pub const HEADER_PARTITION: &str = "Outbox-Partition";
/// Header with the message's sequence number in its partition, in decimal:
/// consecutive within a partition, so a consumer can spot a gap or a
/// duplicate.
pub const HEADER_SEQ: &str = "Outbox-Seq";
/// Header with the payload type given at enqueue.
pub const HEADER_PAYLOAD_TYPE: &str = "Outbox-Payload-Type";
/// Header with the enqueue time, in milliseconds since the Unix epoch
/// (database clock), in decimal.
pub const HEADER_ENQUEUED_AT: &str = "Outbox-Enqueued-At";

/// The `Outbox-*` headers of one message, name and value.
pub(crate) fn outbox_headers(batch: &Batch, delivery: &Delivery) -> [(&'static str, String); 5] {
    [
        (HEADER_QUEUE, batch.queue.clone()),
        (HEADER_PARTITION, batch.partition.to_string()),
        (HEADER_SEQ, delivery.seq.to_string()),
        (HEADER_PAYLOAD_TYPE, delivery.payload_type.clone()),
        (HEADER_ENQUEUED_AT, delivery.enqueued_at_ms.to_string()),
    ]
}
