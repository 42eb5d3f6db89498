//! One message and its batch, for the unit tests.

use outbox_core::{Batch, Delivery};

/// Message 42 of partition 3 of queue `orders` (an `OrderPlaced`, id 7),
/// with `headers`, alone in its batch.
pub(crate) fn delivery(headers: &[(&str, &str)]) -> (Batch, Delivery) {
    let delivery = Delivery {
        queue: "orders".into(),
        partition: 3,
        seq: 42,
        message_id: uuid::Uuid::from_u128(7),
        payload: b"{}".to_vec(),
        payload_type: "OrderPlaced".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        enqueued_at_ms: 1_700_000_000_123,
    };
    let batch = Batch {
        queue: "orders".into(),
        partition: 3,
        attempt: 0,
        messages: vec![delivery.clone()],
    };
    (batch, delivery)
}
