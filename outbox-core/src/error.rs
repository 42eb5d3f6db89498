//! The error type every fallible outbox call returns, the configuration
//! errors inside it, and how database errors are classified.

use std::time::Duration;

use sea_orm::DbErr;

/// How a database error should be treated, as classified by the backend's
/// [`Dialect`](crate::Dialect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbErrorKind {
    /// A serialization failure or deadlock: the transaction can be run again.
    Conflict,
    /// The database was busy or a lock wait timed out: try again later.
    Busy,
    /// The connection was lost or could not be made: try again after a pause.
    Connection,
    /// A unique constraint was violated (for example a reused message id).
    UniqueViolation,
    /// The outbox tables do not exist: run the migrations.
    MissingSchema,
    /// Anything else: retrying will not help.
    Other,
}

impl DbErrorKind {
    /// Whether running the same work again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Conflict | Self::Busy | Self::Connection)
    }
}

/// Every error the outbox reports.
///
/// Messages are lowercase, carry the values involved and say what to change;
/// the underlying cause, where there is one, is in [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// `enqueue` named a queue that was not registered with the builder, or
    /// [`OutboxAdmin::queue_stats`](crate::OutboxAdmin::queue_stats) one that
    /// has neither partition rows nor dead letters in the tables.
    #[error(
        "unknown queue {queue:?}: register it with OutboxBuilder::queue (the tables know a queue once an instance registering it has started)"
    )]
    UnknownQueue {
        /// The queue name given.
        queue: String,
    },
    /// A partition number at or above the queue's partition count.
    #[error(
        "partition {partition} is out of range for queue {queue:?}, which has {partitions} partitions (0..{partitions})"
    )]
    PartitionOutOfRange {
        /// The queue.
        queue: String,
        /// The partition number given.
        partition: u32,
        /// The queue's partition count.
        partitions: u32,
    },
    /// An acknowledgement (through the `testing` feature's
    /// `Outbox::acknowledge`) of a sequence number that is not after the
    /// partition's cursor or beyond the highest one sequenced.
    #[error(
        "cannot acknowledge seq {seq} of queue {queue:?} partition {partition}: acknowledge a seq after the cursor ({processed_seq}) and at most the highest sequenced one ({highest_seq})"
    )]
    AcknowledgeOutOfRange {
        /// The queue.
        queue: String,
        /// The partition number.
        partition: u32,
        /// The sequence number given.
        seq: i64,
        /// The partition's cursor: the last processed sequence number.
        processed_seq: i64,
        /// The highest sequence number given out in the partition so far.
        highest_seq: i64,
    },
    /// A message payload over the configured limit.
    #[error(
        "payload of {size} bytes exceeds the limit of {limit} bytes; raise it with OutboxBuilder::max_payload_bytes or send a smaller payload"
    )]
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A queue name that is empty, too long or uses characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A message header that cannot be stored.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A payload type that is empty or too long.
    #[error("invalid payload type {payload_type:?}: {reason}")]
    InvalidPayloadType {
        /// The payload type given.
        payload_type: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A table prefix that is not a safe SQL identifier.
    #[error(
        "invalid table prefix {prefix:?}: use 1 to 40 characters of [a-z0-9_], starting with a letter"
    )]
    InvalidTablePrefix {
        /// The prefix given.
        prefix: String,
    },
    /// The builder (or a test hook) was given a setting that cannot work;
    /// the [`ConfigError`] names the setting, its value and the range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The same queue was registered twice.
    #[error("queue {queue:?} is registered twice: register each queue once")]
    DuplicateQueue {
        /// The queue name.
        queue: String,
    },
    /// `start()` was given fewer partitions for a queue than it had, and the
    /// partitions it would drop still hold messages nothing would deliver.
    #[error(
        "queue {queue:?} is configured with {partitions} partitions, but partitions {} still hold {messages} undelivered messages that no instance with {partitions} partitions would deliver: run the queue with {} partitions until they are delivered (stats show their backlog), then shrink it (see \"Changing the partition count\" in the guide)",
        list(undrained),
        partitions_before(undrained)
    )]
    PartitionsNotDrained {
        /// The queue.
        queue: String,
        /// The partition count given to the builder.
        partitions: u32,
        /// The partitions at or above that count that still hold messages.
        undrained: Vec<u32>,
        /// How many messages they hold (incoming and sequenced, unprocessed).
        messages: u64,
    },
    /// `start()` found another live instance using this instance's name
    /// (see [`OutboxBuilder::instance_name`](crate::OutboxBuilder::instance_name)).
    #[error(
        "instance name {name:?} is used by another running instance (its heartbeat is live for {expires_in:?} more): give each instance its own name, or stop the other one first"
    )]
    InstanceNameInUse {
        /// The instance name.
        name: String,
        /// How long until the other instance's heartbeat runs out if it is
        /// not renewed (it is, every second, while that instance runs).
        expires_in: std::time::Duration,
    },
    /// The dialect does not match the connection's database.
    #[error(
        "the {dialect} dialect was given a {connection} connection: use the dialect crate for your database"
    )]
    DialectMismatch {
        /// The dialect's backend.
        dialect: &'static str,
        /// The connection's backend.
        connection: String,
    },
    /// The outbox tables are missing or older than this version.
    #[error(
        "the outbox tables with prefix {prefix:?} are missing or out of date: run OutboxSchema::migrate (or add OutboxSchema::migrations to your Migrator, or run `outbox migrate`) with this prefix before starting"
    )]
    SchemaMissing {
        /// The table prefix.
        prefix: String,
        /// The database error that revealed it.
        #[source]
        source: DbErr,
    },
    /// A payload could not be serialized or deserialized as JSON.
    #[error("json payload could not be encoded or decoded")]
    Json(#[source] serde_json::Error),
    /// A message id given twice.
    #[error("a message with id {message_id} already exists: message ids must be unique")]
    DuplicateMessageId {
        /// The message id.
        message_id: uuid::Uuid,
    },
    /// Requeue found the dead letter's message id used by another message
    /// whose row is still kept (delivered, not yet vacuumed); message ids
    /// are unique in the message table.
    #[error(
        "message id {message_id} is used by another message that was delivered and not yet vacuumed: requeue its dead letter after the next vacuum pass, or leave the letter out of the scope"
    )]
    MessageIdInUse {
        /// The message id.
        message_id: uuid::Uuid,
    },
    /// The database reported an error.
    #[error("database error ({kind:?})")]
    Database {
        /// How the dialect classified the error.
        kind: DbErrorKind,
        /// The driver's error.
        #[source]
        source: DbErr,
    },
    /// [`connect`](crate::connect) (or [`connect_with`](crate::connect_with))
    /// could not open a first connection: the server is down or unreachable,
    /// refused the credentials, or the URL is malformed.
    #[error(
        "cannot connect to {target}: check that the server runs and is reachable there, and the URL's user, password and database"
    )]
    CannotConnect {
        /// Where the URL points: `host:port` for a server (the default port
        /// when the URL gives none), the path for SQLite; never a password.
        target: String,
        /// The driver's error (a pool timeout when nothing answered in time).
        #[source]
        source: DbErr,
    },
    /// Something the outbox itself got wrong (a statement it built with the
    /// wrong number of values, rows it had just written gone missing): a bug
    /// to report, not something a caller can fix.
    #[error("internal error: {detail}; this is a bug in outbox, please report it")]
    Internal {
        /// What went wrong.
        detail: String,
    },
    /// A dead-letter id that does not exist (or was cleaned up).
    #[error(
        "no dead letter with id {id}: list the ids with DeadLetters::list (`outbox dead-letters list`)"
    )]
    DeadLetterNotFound {
        /// The id given.
        id: i64,
    },
    /// A dead-letter scope, page or admin argument that cannot be used as given.
    #[error("invalid dead-letter scope: {0}")]
    InvalidScope(String),
    /// Requeue found a dead letter whose queue and partition have no
    /// partition row.
    #[error(
        "queue {queue:?} has no partition {partition} in the partition table: start an outbox with this queue and at least {} partitions once, then requeue", u64::from(*partition) + 1
    )]
    PartitionRowMissing {
        /// The dead letter's queue.
        queue: String,
        /// The dead letter's partition number.
        partition: u32,
    },
    /// Requeue found the dead letter's message id still waiting for
    /// delivery (in any queue); message ids are unique in the message table.
    #[error(
        "message {message_id} is still queued for delivery: requeue its dead letter after that copy is delivered, or leave the letter out of the scope"
    )]
    MessageStillQueued {
        /// The message id.
        message_id: uuid::Uuid,
    },
}

/// `[2, 3]` as `2, 3`.
fn list(partitions: &[u32]) -> String {
    partitions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The partition count that still serves every partition in `undrained`.
fn partitions_before(undrained: &[u32]) -> u64 {
    undrained.iter().max().map_or(0, |max| u64::from(*max) + 1)
}

impl OutboxError {
    /// Whether this error is a database error that may succeed when retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database { kind, .. } if kind.is_retryable())
    }

    /// An [`OutboxError::Internal`] from whatever went wrong.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal {
            detail: detail.to_string(),
        }
    }
}

/// A setting that cannot work, reported by
/// [`OutboxBuilder::start`](crate::OutboxBuilder::start) before anything
/// runs (inside [`OutboxError::Config`]). Each variant names one setting and
/// carries the value given; the message says the range to use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The builder has no queue.
    #[error("no queue registered: add one with OutboxBuilder::queue")]
    NoQueue,
    /// A queue's partition count is 0 or over [`MAX_PARTITIONS`](crate::MAX_PARTITIONS).
    #[error(
        "queue {queue:?} has {partitions} partitions: use 1 to {max}",
        max = crate::MAX_PARTITIONS
    )]
    Partitions {
        /// The queue.
        queue: String,
        /// The partition count given.
        partitions: u32,
    },
    /// A queue's batch size ([`Queue::batch_size`](crate::Queue::batch_size))
    /// is 0 or over 10,000.
    #[error("queue {queue:?} has batch size {batch_size}: use 1 to 10000")]
    BatchSize {
        /// The queue.
        queue: String,
        /// The batch size given.
        batch_size: u32,
    },
    /// A queue's handler timeout is zero.
    #[error("queue {queue:?} has a zero handler timeout: give it at least a millisecond")]
    ZeroHandlerTimeout {
        /// The queue.
        queue: String,
    },
    /// A queue's lease is longer than 24 hours.
    #[error("queue {queue:?} has a lease of {lease:?}: use at most 24 hours")]
    LeaseTooLong {
        /// The queue.
        queue: String,
        /// The lease given.
        lease: Duration,
    },
    /// A queue's lease is shorter than its handler timeout plus the
    /// headroom: a handler could outlive its lease (in transactional mode,
    /// have its batch taken over and rolled back, again and again).
    #[error(
        "queue {queue:?} has a lease of {lease:?}, shorter than the handler timeout {handler_timeout:?} plus the headroom {headroom:?}: lengthen the lease or shorten the timeout"
    )]
    LeaseShorterThanHandlerTimeout {
        /// The queue.
        queue: String,
        /// The lease given.
        lease: Duration,
        /// The handler timeout given.
        handler_timeout: Duration,
        /// The headroom the lease keeps beyond the handler timeout.
        headroom: Duration,
    },
    /// A queue's retry jitter is outside `0.0..=1.0`.
    #[error("queue {queue:?} has a retry jitter of {jitter}: use 0.0 to 1.0")]
    RetryJitter {
        /// The queue.
        queue: String,
        /// The jitter given.
        jitter: f64,
    },
    /// A queue's retry base delay is longer than its cap.
    #[error(
        "queue {queue:?} has a retry base delay of {base:?}, over its cap of {cap:?}: make the base at most the cap"
    )]
    RetryBaseOverCap {
        /// The queue.
        queue: String,
        /// The base delay given.
        base: Duration,
        /// The cap given.
        cap: Duration,
    },
    /// The profile's batch size is 0 or over 10,000.
    #[error("the profile's batch size {batch_size} is out of range: use 1 to 10000")]
    ProfileBatchSize {
        /// The batch size given.
        batch_size: u32,
    },
    /// [`OutboxBuilder::poll_interval`](crate::OutboxBuilder::poll_interval)
    /// outside 1 ms to 1 hour.
    #[error("poll interval {interval:?} is out of range: use 1 ms to 1 hour")]
    PollInterval {
        /// The interval given.
        interval: Duration,
    },
    /// [`OutboxBuilder::vacuum_interval`](crate::OutboxBuilder::vacuum_interval)
    /// outside 1 ms to 1 hour.
    #[error("vacuum interval {interval:?} is out of range: use 1 ms to 1 hour")]
    VacuumInterval {
        /// The interval given.
        interval: Duration,
    },
    /// [`OutboxBuilder::gauge_interval`](crate::OutboxBuilder::gauge_interval)
    /// outside 100 ms to 1 hour.
    #[error(
        "gauge interval {interval:?} is out of range: give 100 ms to 1 hour, or None to turn the gauges off"
    )]
    GaugeInterval {
        /// The interval given.
        interval: Duration,
    },
    /// [`OutboxBuilder::sequencer_batch`](crate::OutboxBuilder::sequencer_batch)
    /// is 0 or over 10,000.
    #[error("sequencer batch {batch_size} is out of range: use 1 to 10000")]
    SequencerBatch {
        /// The batch size given.
        batch_size: u32,
    },
    /// [`OutboxBuilder::vacuum_batch`](crate::OutboxBuilder::vacuum_batch)
    /// is 0 or over 10,000.
    #[error("vacuum batch {batch_size} is out of range: use 1 to 10000")]
    VacuumBatch {
        /// The batch size given.
        batch_size: u32,
    },
    /// [`OutboxBuilder::max_payload_bytes`](crate::OutboxBuilder::max_payload_bytes)
    /// is 0 or over 64 MiB.
    #[error("max_payload_bytes {bytes} is out of range: use 1 to 67108864 (64 MiB)")]
    MaxPayloadBytes {
        /// The limit given.
        bytes: usize,
    },
    /// [`OutboxBuilder::processor_connections`](crate::OutboxBuilder::processor_connections)
    /// is 0 or over 4,096.
    #[error("processor_connections {connections} is out of range: use 1 to 4096")]
    ProcessorConnections {
        /// The count given.
        connections: usize,
    },
    /// [`OutboxBuilder::instance_name`](crate::OutboxBuilder::instance_name)
    /// is empty or longer than 128 bytes.
    #[error("instance name {name:?} is {} bytes long: use 1 to 128 bytes", name.len())]
    InstanceName {
        /// The name given.
        name: String,
    },
    /// The `testing` feature's `Outbox::take_lease` was given an owner that
    /// is empty or longer than 128 bytes.
    #[error("lease owner {owner:?} is {} bytes long: use 1 to 128 bytes", owner.len())]
    LeaseOwner {
        /// The owner given.
        owner: String,
    },
    /// The `testing` feature's `Outbox::take_lease` was given a lease
    /// outside 1 ms to 24 hours.
    #[error("a lease of {lease:?} is out of range: use 1 ms to 24 hours")]
    LeaseDuration {
        /// The lease given.
        lease: Duration,
    },
}

pub(crate) mod classify;

#[cfg(test)]
mod tests;
