//! The RabbitMQ (AMQP 0-9-1) relay.

mod builder;
mod properties;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::uri::AMQPUri;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};
use outbox_core::{
    Batch, BatchResult, DatabaseTransaction, Delivery, LeasedHandler, TransactionalHandler,
};
use tokio::sync::Mutex;

pub use builder::RabbitMqRelayBuilder;

use crate::backoff::FailureCounter;
use crate::relay::{Failure, Sink, relay_batch};
use crate::template::Route;
use properties::short;

/// The routing key template used unless
/// [`RabbitMqRelayBuilder::routing_key`] says otherwise.
pub const DEFAULT_ROUTING_KEY: &str = crate::template::DEFAULT_TEMPLATE;

/// A handler that publishes each message to RabbitMQ and counts it delivered
/// once the broker has confirmed it (publisher confirms).
///
/// Each message is published to the exchange and routing key its templates
/// render (by default the default exchange `""` and routing key
/// [`DEFAULT_ROUTING_KEY`]), `mandatory`, persistent (`delivery_mode` 2),
/// with properties `message_id` (the outbox message id), `type` (the payload
/// type), `timestamp` (enqueue time, seconds), `content_type` (from a
/// `content-type` header, if any) and a headers table holding every header
/// the message was enqueued with plus `Outbox-Queue`, `Outbox-Partition`,
/// `Outbox-Seq`, `Outbox-Payload-Type` and `Outbox-Enqueued-At` (all
/// long strings).
///
/// The relay connects lazily, on the first batch, and again on the next
/// batch after the connection or a channel dropped (a broker restart, a
/// closed connection): it never counts as delivered a message the broker did
/// not confirm. Each (queue, partition) publishes on a channel of its own, so
/// that partitions publish concurrently while a channel never has more than
/// one message awaiting its confirm. Messages of a batch are published one at
/// a time, each confirm awaited before the next is sent: pipelining would be
/// faster, but if a message in the middle failed while later ones were
/// routed, its retry would land after them, out of order.
///
/// Outcomes: no connection, a dropped connection or channel, or no confirm
/// within the publish timeout is
/// [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable) with an
/// exponential [`Backoff`](crate::Backoff) (no attempt used up); a message returned as
/// unroutable, a nack, or the broker refusing the publish (a missing
/// exchange) is [`Outcome::Retry`](outbox_core::Outcome::Retry); a message
/// that can never be published (a missing `{header:NAME}`, a name longer
/// than 255 bytes) is [`Outcome::Reject`](outbox_core::Outcome::Reject).
///
/// Delivery is at least once: after a lost confirm the message is published
/// again, so consumers deduplicate on `message_id`. Cloning is cheap and
/// clones share the connection.
#[derive(Clone)]
pub struct RabbitMqRelay {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) uri: AMQPUri,
    /// The URI without credentials, for messages.
    pub(super) broker: String,
    pub(super) properties: ConnectionProperties,
    pub(super) exchange: Route,
    pub(super) routing_key: Route,
    pub(super) connect_timeout: Duration,
    pub(super) publish_timeout: Duration,
    pub(super) failures: FailureCounter,
    pub(super) state: Mutex<State>,
}

/// The connection and the channel of each partition.
#[derive(Default)]
pub(super) struct State {
    connection: Option<Connection>,
    channels: HashMap<(String, u32), (u64, Channel)>,
    next_serial: u64,
}

/// The channel a batch publishes on.
pub(super) struct Session {
    key: (String, u32),
    serial: u64,
    channel: Channel,
}

impl fmt::Debug for RabbitMqRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqRelay")
            .field("broker", &self.inner.broker)
            .field("exchange", &self.inner.exchange)
            .field("routing_key", &self.inner.routing_key)
            .field("publish_timeout", &self.inner.publish_timeout)
            .finish_non_exhaustive()
    }
}

impl RabbitMqRelay {
    /// A builder for a relay to the broker at `uri`
    /// (`amqp://user:password@host:5672/%2f`). Nothing connects until the
    /// first batch.
    pub fn builder(uri: impl Into<String>) -> RabbitMqRelayBuilder {
        RabbitMqRelayBuilder::new(uri.into())
    }

    /// Closes the connection, if one is open. A later batch connects again.
    ///
    /// # Cancel safety
    /// Cancel safe: the connection is forgotten before it is closed.
    pub async fn close(&self) {
        let connection = {
            let mut state = self.inner.state.lock().await;
            state.channels.clear();
            state.connection.take()
        };
        if let Some(connection) = connection {
            let close = connection.close(200, "outbox relay closed".into());
            if let Ok(Err(err)) = tokio::time::timeout(self.inner.connect_timeout, close).await {
                tracing::debug!(error = %err, "closing the RabbitMQ connection failed");
            }
        }
    }
}

/// Sorts a failed publish into the outcome it deserves.
fn classify(err: &lapin::Error) -> Failure {
    if let ErrorKind::ProtocolError(amqp) = err.kind()
        && let AMQPErrorKind::Soft(soft) = amqp.kind()
    {
        return match soft {
            AMQPSoftError::RESOURCELOCKED => {
                Failure::Unavailable(format!("RabbitMQ is busy: {amqp}"))
            }
            AMQPSoftError::CONTENTTOOLARGE
            | AMQPSoftError::NOROUTE
            | AMQPSoftError::NOCONSUMERS
            | AMQPSoftError::ACCESSREFUSED
            | AMQPSoftError::NOTFOUND
            | AMQPSoftError::PRECONDITIONFAILED => {
                Failure::Retry(format!("RabbitMQ refused the message: {amqp}"))
            }
        };
    }
    Failure::Unavailable(format!("RabbitMQ connection lost: {err}"))
}

impl Inner {
    /// Connects if there is no live connection.
    async fn connect(&self, state: &mut State) -> Result<(), Failure> {
        let live = state
            .connection
            .as_ref()
            .is_some_and(|connection| connection.status().connected());
        if !live {
            if state.connection.take().is_some() {
                tracing::info!(broker = %self.broker, "RabbitMQ connection lost; reconnecting");
            }
            state.channels.clear();
            let connect = Connection::connect_uri(self.uri.clone(), self.properties.clone());
            let connection = match tokio::time::timeout(self.connect_timeout, connect).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(err)) => {
                    return Err(Failure::Unavailable(format!(
                        "cannot connect to RabbitMQ at {}: {err}",
                        self.broker
                    )));
                }
                Err(_) => {
                    return Err(Failure::Unavailable(format!(
                        "cannot connect to RabbitMQ at {} within {:?}",
                        self.broker, self.connect_timeout
                    )));
                }
            };
            tracing::info!(broker = %self.broker, "connected to RabbitMQ");
            state.connection = Some(connection);
        }
        Ok(())
    }

    /// Opens a channel in confirm mode.
    async fn open_channel(&self, connection: &Connection) -> Result<Channel, Failure> {
        let open = async {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(err)) => Err(Failure::Unavailable(format!(
                "cannot open a RabbitMQ channel: {err}"
            ))),
            Err(_) => Err(Failure::Unavailable(format!(
                "cannot open a RabbitMQ channel within {:?}",
                self.connect_timeout
            ))),
        }
    }

    /// Forgets a channel that failed, and closes it if it is still open: a
    /// confirm that came too late must not be taken for the next message's.
    async fn discard(&self, session: &Session) {
        {
            let mut state = self.state.lock().await;
            if state
                .channels
                .get(&session.key)
                .is_some_and(|(serial, _)| *serial == session.serial)
            {
                state.channels.remove(&session.key);
            }
        }
        if session.channel.status().connected() {
            let close = session
                .channel
                .close(200, "outbox relay discards it".into());
            let _ = tokio::time::timeout(self.connect_timeout, close).await;
        }
    }
}

#[async_trait]
impl Sink for Inner {
    type Session = Session;

    const NAME: &'static str = "rabbitmq";

    async fn open(&self, batch: &Batch) -> Result<Session, Failure> {
        let mut state = self.state.lock().await;
        let key = (batch.queue.clone(), batch.partition);
        self.connect(&mut state).await?;
        let known = state.channels.get(&key).and_then(|(serial, channel)| {
            channel
                .status()
                .connected()
                .then(|| (*serial, channel.clone()))
        });
        if let Some((serial, channel)) = known {
            return Ok(Session {
                key,
                serial,
                channel,
            });
        }
        let connection = state
            .connection
            .as_ref()
            .ok_or_else(|| Failure::Unavailable("no RabbitMQ connection".to_owned()))?;
        let channel = self.open_channel(connection).await?;
        state.next_serial += 1;
        let serial = state.next_serial;
        state
            .channels
            .insert(key.clone(), (serial, channel.clone()));
        Ok(Session {
            key,
            serial,
            channel,
        })
    }

    async fn publish(
        &self,
        session: &Session,
        batch: &Batch,
        delivery: &Delivery,
    ) -> Result<(), Failure> {
        let exchange = self
            .exchange
            .render(batch, delivery)
            .map_err(Failure::Reject)?;
        let routing_key = self
            .routing_key
            .render(batch, delivery)
            .map_err(Failure::Reject)?;
        let exchange = short(&format!("exchange {exchange:?}"), exchange)?;
        let routing_key = short(&format!("routing key {routing_key:?}"), routing_key)?;
        let properties = properties::properties(batch, delivery)?;
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let publish = async {
            let confirm = session
                .channel
                .basic_publish(
                    exchange.clone(),
                    routing_key.clone(),
                    options,
                    &delivery.payload,
                    properties,
                )
                .await?;
            confirm.await
        };
        let failure = match tokio::time::timeout(self.publish_timeout, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => return Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                return Err(Failure::Retry(format!(
                    "RabbitMQ returned the message as unroutable ({} {}): no queue is bound \
                     to exchange {:?} with routing key {:?}",
                    returned.reply_code,
                    returned.reply_text,
                    exchange.as_str(),
                    routing_key.as_str()
                )));
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                return Err(Failure::Retry(
                    "RabbitMQ refused the message (nack)".to_owned(),
                ));
            }
            Ok(Ok(Confirmation::NotRequested)) => {
                Failure::Unavailable("the RabbitMQ channel is not in confirm mode".to_owned())
            }
            Ok(Err(err)) => classify(&err),
            Err(_) => Failure::Unavailable(format!(
                "RabbitMQ did not confirm within {:?}",
                self.publish_timeout
            )),
        };
        self.discard(session).await;
        Err(failure)
    }
}

#[async_trait]
impl LeasedHandler for RabbitMqRelay {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        relay_batch(&*self.inner, &self.inner.failures, batch).await
    }
}

#[async_trait]
impl TransactionalHandler for RabbitMqRelay {
    /// Publishes as in leased mode; the transaction is not used.
    async fn handle(&self, _txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        relay_batch(&*self.inner, &self.inner.failures, batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_refusals_count_attempts_and_lost_connections_do_not() {
        let refused: lapin::Error = ErrorKind::ProtocolError(lapin::protocol::AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            "NOT_FOUND - no exchange 'x'".into(),
        ))
        .into();
        assert!(matches!(classify(&refused), Failure::Retry(_)));
        let lost: lapin::Error =
            ErrorKind::IOError(Arc::new(std::io::Error::other("reset"))).into();
        assert!(matches!(classify(&lost), Failure::Unavailable(_)));
    }
}
