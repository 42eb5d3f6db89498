//! Where the `orders` queue's messages go: NATS JetStream when `NATS_URL` is
//! set, the log otherwise.

use outbox_core::{Batch, BatchResult, LeasedHandler};
use std::time::Duration;

use outbox_relay::{Backoff, JetStreamRelay};

use crate::config::NatsConfig;
use crate::sink::LogSink;
use crate::start_error::StartError;

/// The handler of the `orders` queue.
#[derive(Debug)]
pub enum Relay {
    /// Log each message ([`LogSink`]).
    Log(LogSink),
    /// Publish each message to JetStream, `Nats-Msg-Id` = message id.
    JetStream {
        /// The relay of the `outbox-relay` crate.
        relay: JetStreamRelay,
        /// Its subject template, for the startup log.
        subject: String,
    },
}

impl Relay {
    /// The relay for the configuration: JetStream when `nats` is set (after
    /// creating or updating the stream), the log otherwise. `publish_timeout`
    /// bounds the wait for one JetStream ack; keep it under the queue's
    /// handler timeout, so that an unanswered publish ends as
    /// `Outcome::Unavailable` (no attempt used) rather than as a handler
    /// timeout (an attempt used).
    ///
    /// # Errors
    /// [`StartError::Nats`] when NATS is unreachable or the stream cannot be
    /// set up.
    pub async fn from_config(
        nats: Option<&NatsConfig>,
        publish_timeout: Duration,
    ) -> Result<Self, StartError> {
        let Some(nats) = nats else {
            return Ok(Self::Log(LogSink));
        };
        let context = crate::nats::connect(nats).await?;
        let subject = crate::nats::subject_template(nats);
        let relay = JetStreamRelay::builder(context)
            .subject(subject.clone())
            .publish_timeout(publish_timeout)
            .backoff(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(5),
            ))
            .build()
            .map_err(|e| StartError::Nats(Box::new(e)))?;
        Ok(Self::JetStream { relay, subject })
    }

    /// A short description for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Self::Log(_) => "log (set NATS_URL to relay to JetStream)".to_owned(),
            Self::JetStream { subject, .. } => format!("NATS JetStream, subject {subject}"),
        }
    }
}

#[async_trait::async_trait]
impl LeasedHandler for Relay {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        match self {
            Self::Log(sink) => sink.handle(batch).await,
            Self::JetStream { relay, .. } => LeasedHandler::handle(relay, batch).await,
        }
    }
}
