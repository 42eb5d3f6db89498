//! Ready-made outbox handlers that publish each message to a broker, in order
//! per partition, and count it delivered only once the broker has it.
//!
//! Each sink sits behind a cargo feature, both on by default:
//!
//! | feature | handler | client crate |
//! |---|---|---|
//! | `nats` | [`JetStreamRelay`]: NATS JetStream, ack awaited per message, `Nats-Msg-Id` for deduplication | `async-nats` 0.51 |
//! | `rabbitmq` | [`RabbitMqRelay`]: RabbitMQ, publisher confirms, `mandatory`, reconnects after a drop | `lapin` 4 |
//!
//! Both implement [`LeasedHandler`](outbox_core::LeasedHandler) and
//! [`TransactionalHandler`](outbox_core::TransactionalHandler) (which ignores
//! its transaction), so they register like any handler. They publish a
//! batch's messages one at a time, awaiting each acknowledgement, and return
//! one outcome per message: `Success` up to the first failure, then
//!
//! - [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable) when the
//!   broker cannot be reached or does not answer in time: the message is
//!   tried again after an exponential [`Backoff`] (100 ms doubling to 30 s,
//!   reset by a success) without using up an attempt, so an outage never
//!   dead-letters anything;
//! - [`Outcome::Retry`](outbox_core::Outcome::Retry) when the broker refuses
//!   the message (no route, no stream, a nack): it counts an attempt and ends
//!   in the dead-letter table when the retry policy runs out;
//! - [`Outcome::Reject`](outbox_core::Outcome::Reject) when the message can
//!   never be published (a header its template needs is missing, a header the
//!   broker cannot carry).
//!
//! Delivery to the broker is at least once: a message whose ack was lost is
//! published again. Every message carries its outbox id (`Nats-Msg-Id`,
//! AMQP `message_id`) and `Outbox-Queue`, `Outbox-Partition`, `Outbox-Seq`,
//! `Outbox-Payload-Type` and `Outbox-Enqueued-At` headers, besides the
//! headers it was enqueued with (W3C `traceparent` included).
//!
//! Each batch is traced in an `outbox.relay` span (`sink`, `queue`,
//! `partition`, `seq` as `first..last`), each message in a debug span
//! `outbox.relay.message` (`message_id`, `seq`).
//!
//! # NATS JetStream
//!
//! ```no_run
//! # #[cfg(feature = "nats")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use outbox_core::sea_orm::Database;
//! use outbox_core::{Outbox, OutboxSchema, Queue};
//! use outbox_relay::{JetStreamRelay, async_nats};
//! use outbox_sqlite::SqliteDialect;
//!
//! let db = Database::connect("sqlite:///tmp/shop.db?mode=rwc").await?;
//! OutboxSchema::new(SqliteDialect).migrate(&db).await?;
//!
//! let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
//! // The stream taking `shop.orders.>` is the application's to create.
//! let relay = JetStreamRelay::builder(async_nats::jetstream::new(nats))
//!     .subject("shop.{queue}.{partition}")
//!     .build()?;
//! let handle = Outbox::builder(db, SqliteDialect)
//!     .queue(Queue::leased("orders", 4, relay))
//!     .start()
//!     .await?;
//! // ... enqueue with handle.outbox() in your transactions ...
//! handle.stop().await;
//! # Ok(()) }
//! ```
//!
//! # RabbitMQ
//!
//! ```no_run
//! # #[cfg(feature = "rabbitmq")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use outbox_core::sea_orm::Database;
//! use outbox_core::{Outbox, OutboxSchema, Queue};
//! use outbox_relay::RabbitMqRelay;
//! use outbox_sqlite::SqliteDialect;
//!
//! let db = Database::connect("sqlite:///tmp/shop.db?mode=rwc").await?;
//! OutboxSchema::new(SqliteDialect).migrate(&db).await?;
//!
//! // Connects on the first batch, and again after the connection drops.
//! let relay = RabbitMqRelay::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .exchange("shop")
//!     .routing_key("{queue}.{payload_type}")
//!     .build()?;
//! let handle = Outbox::builder(db, SqliteDialect)
//!     .queue(Queue::leased("orders", 4, relay))
//!     .start()
//!     .await?;
//! // ... enqueue with handle.outbox() in your transactions ...
//! handle.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Destinations
//!
//! Subjects, exchanges and routing keys are templates of literal text and
//! the placeholders `{queue}`, `{partition}`, `{payload_type}` and
//! `{header:NAME}`, checked when the relay is built; the default is
//! `outbox.{queue}.{partition}`. A function (`subject_fn`,
//! `routing_key_fn`, `exchange_fn`) gives full control.

// Without a sink the shared pieces have no user; the crate is useless then
// but should still build.
#![cfg_attr(not(any(feature = "nats", feature = "rabbitmq")), allow(dead_code))]

mod backoff;
mod error;
#[cfg(test)]
mod fixture;
mod header;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(any(feature = "nats", feature = "rabbitmq"))]
mod relay;
mod template;

pub use backoff::Backoff;
pub use error::RelayError;
pub use header::{
    HEADER_ENQUEUED_AT, HEADER_PARTITION, HEADER_PAYLOAD_TYPE, HEADER_QUEUE, HEADER_SEQ,
};
#[cfg(feature = "nats")]
pub use nats::{DEFAULT_SUBJECT, JetStreamRelay, JetStreamRelayBuilder, ensure_stream};
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{DEFAULT_ROUTING_KEY, RabbitMqRelay, RabbitMqRelayBuilder};

/// The NATS client the relay is built with, to match its version.
#[cfg(feature = "nats")]
pub use async_nats;
/// The AMQP client the relay is built with, to match its version.
#[cfg(feature = "rabbitmq")]
pub use lapin;
