//! The error type every fallible outbox call returns.

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
    /// The builder was given a configuration that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
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
    /// whose rows are still kept (delivered, not yet vacuumed); a second
    /// message with the id would share, and lose, its body row.
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
    /// The outbox is stopping and takes no more work. Not returned by this
    /// version: after [`OutboxHandle::stop`](crate::OutboxHandle::stop) the
    /// producer API still enqueues (another instance, or this one restarted,
    /// delivers); kept so that a future refusal needs no new variant.
    #[error("the outbox is shutting down")]
    ShuttingDown,
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
    /// delivery (in any queue); a second copy would share its body row.
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
}
