//! The NATS JetStream relay.

mod builder;
mod headers;
mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use outbox_core::{
    Batch, BatchResult, DatabaseTransaction, Delivery, LeasedHandler, TransactionalHandler,
};

pub use builder::JetStreamRelayBuilder;
pub use stream::ensure_stream;

use crate::backoff::{Backoff, FailureCounter};
use crate::relay::{Failure, Sink, relay_batch};
use crate::template::{Route, Template};

/// The subject template used unless [`JetStreamRelayBuilder::subject`] says
/// otherwise.
pub const DEFAULT_SUBJECT: &str = crate::template::DEFAULT_TEMPLATE;

/// A handler that publishes each message to NATS JetStream and counts it
/// delivered once the stream has acknowledged it.
///
/// Each message goes to the subject its template renders (by default
/// [`DEFAULT_SUBJECT`], `outbox.orders.3` for partition 3 of queue
/// `orders`), with headers:
///
/// - `Nats-Msg-Id`: the outbox message id, so that the stream's duplicate
///   window drops a message the outbox delivers again (after a lost ack, a
///   crash, a lease moving to another instance);
/// - every header the message was enqueued with, as is (W3C `traceparent`
///   and `tracestate` included);
/// - `Outbox-Queue`, `Outbox-Partition`, `Outbox-Seq`, `Outbox-Payload-Type`
///   and `Outbox-Enqueued-At` (milliseconds since the Unix epoch).
///
/// Messages of a batch are published one at a time, each ack awaited before
/// the next is sent: pipelining would be faster, but if a message in the
/// middle failed while later ones were stored, its retry would land after
/// them and the stream would hold the partition out of order.
///
/// Outcomes: the broker unreachable, a publish or ack timing out, or JetStream
/// answering 503 is [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable)
/// with an exponential [`Backoff`] (no attempt used up); no stream for the
/// subject, or JetStream refusing the message, is
/// [`Outcome::Retry`](outbox_core::Outcome::Retry); a message that can never be
/// published (a header name NATS cannot carry, a missing `{header:NAME}`, an
/// invalid rendered subject, more than the server's `max_payload`) is
/// [`Outcome::Reject`](outbox_core::Outcome::Reject).
///
/// The relay does not create the stream: that is the application's (see
/// [`ensure_stream`] for tests and examples). Cloning is cheap and clones
/// share the backoff.
#[derive(Clone)]
pub struct JetStreamRelay {
    inner: Arc<Inner>,
}

struct Inner {
    context: Context,
    subject: Route,
    publish_timeout: Duration,
    failures: FailureCounter,
}

impl fmt::Debug for JetStreamRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamRelay")
            .field("subject", &self.inner.subject)
            .field("publish_timeout", &self.inner.publish_timeout)
            .finish_non_exhaustive()
    }
}

impl JetStreamRelay {
    /// A relay with the default settings: subject [`DEFAULT_SUBJECT`],
    /// publish timeout 5 s, backoff 100 ms to 30 s.
    pub fn new(context: Context) -> Self {
        Self::from_parts(
            context,
            Route::Template(Template::default_destination()),
            Duration::from_secs(5),
            Backoff::default(),
        )
    }

    /// A builder over a JetStream context (`async_nats::jetstream::new(client)`).
    pub fn builder(context: Context) -> JetStreamRelayBuilder {
        JetStreamRelayBuilder::new(context)
    }

    pub(super) fn from_parts(
        mut context: Context,
        subject: Route,
        publish_timeout: Duration,
        backoff: Backoff,
    ) -> Self {
        context.set_timeout(publish_timeout);
        Self {
            inner: Arc::new(Inner {
                context,
                subject,
                publish_timeout,
                failures: FailureCounter::new(backoff),
            }),
        }
    }
}

/// Sorts a failed publish into the outcome it deserves.
fn classify(err: &PublishError, subject: &str) -> Failure {
    match err.kind() {
        PublishErrorKind::StreamNotFound => Failure::Retry(format!(
            "no JetStream stream takes subject {subject:?} (no responders)"
        )),
        PublishErrorKind::MaxPayloadExceeded => {
            Failure::Reject(format!("the message is too large for NATS: {err}"))
        }
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
            Failure::Retry(format!("JetStream refused the message: {err}"))
        }
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => {
            Failure::Unavailable(format!("JetStream did not acknowledge: {err}"))
        }
        PublishErrorKind::Other => {
            let server = std::error::Error::source(err)
                .and_then(|source| source.downcast_ref::<jetstream::Error>());
            match server {
                Some(server) if server.code() == 503 => {
                    Failure::Unavailable(format!("JetStream is unavailable: {server}"))
                }
                Some(server) => Failure::Retry(format!("JetStream refused the message: {server}")),
                None => Failure::Unavailable(format!("cannot publish to NATS: {err}")),
            }
        }
    }
}

#[async_trait]
impl Sink for Inner {
    type Session = ();

    const NAME: &'static str = "nats";

    async fn open(&self, _batch: &Batch) -> Result<(), Failure> {
        Ok(())
    }

    async fn publish(&self, _: &(), batch: &Batch, delivery: &Delivery) -> Result<(), Failure> {
        let subject = self
            .subject
            .render(batch, delivery)
            .map_err(Failure::Reject)?;
        builder::check_subject(&subject).map_err(|reason| {
            Failure::Reject(format!(
                "subject {subject:?} {reason}: it cannot be published to"
            ))
        })?;
        let message = PublishMessage::build()
            .payload(Bytes::copy_from_slice(&delivery.payload))
            .headers(headers::headers(batch, delivery)?);
        let publish = async {
            let ack = self.context.send_publish(subject.clone(), message).await?;
            ack.await
        };
        match tokio::time::timeout(self.publish_timeout, publish).await {
            Ok(Ok(ack)) => {
                tracing::debug!(
                    stream = %ack.stream,
                    stream_seq = ack.sequence,
                    duplicate = ack.duplicate,
                    "acknowledged by JetStream"
                );
                Ok(())
            }
            Ok(Err(err)) => Err(classify(&err, &subject)),
            Err(_) => Err(Failure::Unavailable(format!(
                "JetStream did not acknowledge within {:?}",
                self.publish_timeout
            ))),
        }
    }
}

#[async_trait]
impl LeasedHandler for JetStreamRelay {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        relay_batch(&*self.inner, &self.inner.failures, batch).await
    }
}

#[async_trait]
impl TransactionalHandler for JetStreamRelay {
    /// Publishes as in leased mode; the transaction is not used.
    async fn handle(&self, _txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        relay_batch(&*self.inner, &self.inner.failures, batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_errors_are_sorted_by_whose_fault_they_are() {
        let kind = |kind| classify(&PublishError::new(kind), "s");
        assert!(matches!(
            kind(PublishErrorKind::StreamNotFound),
            Failure::Retry(_)
        ));
        assert!(matches!(
            kind(PublishErrorKind::TimedOut),
            Failure::Unavailable(_)
        ));
        assert!(matches!(
            kind(PublishErrorKind::BrokenPipe),
            Failure::Unavailable(_)
        ));
        assert!(matches!(
            kind(PublishErrorKind::MaxPayloadExceeded),
            Failure::Reject(_)
        ));
        let server = |json: &str| {
            let error: jetstream::Error = serde_json::from_str(json).unwrap();
            classify(
                &PublishError::with_source(PublishErrorKind::Other, error),
                "s",
            )
        };
        assert!(matches!(
            server(
                r#"{"code":503,"err_code":10008,"description":"jetstream temporarily unavailable"}"#
            ),
            Failure::Unavailable(_)
        ));
        assert!(matches!(
            server(r#"{"code":400,"err_code":10077,"description":"maximum messages exceeded"}"#),
            Failure::Retry(_)
        ));
    }
}
