//! `LogSink`: the handler used when no broker is configured; it logs each
//! message and acknowledges it.

use outbox_core::{Batch, BatchResult, LeasedHandler};

/// Logs every message it is handed (queue, partition, seq, message id,
/// payload type, payload) at `info` and acknowledges the batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

#[async_trait::async_trait]
impl LeasedHandler for LogSink {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        for message in &batch.messages {
            tracing::info!(
                target: "orders_service::sink",
                queue = %batch.queue,
                partition = batch.partition,
                seq = message.seq,
                message_id = %message.message_id,
                payload_type = %message.payload_type,
                payload = %String::from_utf8_lossy(&message.payload),
                "relayed to log"
            );
        }
        BatchResult::success()
    }
}
