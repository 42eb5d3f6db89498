//! Every column name of the outbox schema, written once.
//!
//! The migration, the workers, the admin code and the statistics name
//! columns through [`Column`] only, so a name is spelled in one place and a
//! typo is a compile error. Table names carry the configurable prefix and
//! live in [`Tables`](crate::table::Tables).

use sea_orm::sea_query::Iden;

/// Declares [`Column`]: each variant with its SQL name.
macro_rules! columns {
    ($($(#[$doc:meta])* $variant:ident => $sql:literal,)*) => {
        /// A column of an outbox table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Column {
            $($(#[$doc])* $variant,)*
        }

        impl Column {
            /// The column's name in SQL, and in the rows a query returns.
            pub(crate) const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $sql,)*
                }
            }
        }
    };
}

columns! {
    /// Row id (every table but the instance table).
    Id => "id",
    /// The partition row a message belongs to.
    PartitionId => "partition_id",
    /// A message's per-partition sequence number.
    Seq => "seq",
    /// A message's stable id (16 bytes).
    MessageId => "message_id",
    /// Queue name (partition rows, dead letters).
    QueueName => "queue_name",
    /// Partition number within its queue.
    PartitionNo => "partition_no",
    /// The next sequence number a partition hands out.
    NextSeq => "next_seq",
    /// The highest sequence number a partition has settled.
    ProcessedSeq => "processed_seq",
    /// The instance holding a partition's lease.
    LeaseOwner => "lease_owner",
    /// The fencing token of a partition's lease.
    LeaseToken => "lease_token",
    /// When a partition's lease ends (milliseconds).
    LeaseUntil => "lease_until",
    /// Failed tries of the message at a partition's cursor.
    Attempts => "attempts",
    /// When the message at a partition's cursor may be tried again.
    RetryAt => "retry_at",
    /// The last error recorded for a partition or a dead letter.
    LastError => "last_error",
    /// A message's payload type.
    PayloadType => "payload_type",
    /// A message's payload.
    Payload => "payload",
    /// A message's headers (JSON).
    Headers => "headers",
    /// When a message was enqueued (milliseconds).
    CreatedAt => "created_at",
    /// When a message was dead-lettered (milliseconds).
    FailedAt => "failed_at",
    /// A dead letter's status.
    Status => "status",
    /// When a dead letter's requeue or discard completed (milliseconds).
    CompletedAt => "completed_at",
    /// A dead letter's claim deadline (milliseconds).
    Deadline => "deadline",
    /// An instance's name.
    Owner => "owner",
    /// When an instance's heartbeat ends (milliseconds).
    HeartbeatUntil => "heartbeat_until",
    /// An instance's incarnation (a fresh one per start).
    Incarnation => "incarnation",
}

impl Iden for Column {
    fn unquoted(&self) -> &str {
        self.name()
    }
}

impl From<Column> for String {
    fn from(column: Column) -> Self {
        column.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_identifiers() {
        for column in [Column::Id, Column::ProcessedSeq, Column::HeartbeatUntil] {
            let name = column.name();
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(Iden::to_string(&column), name);
        }
    }
}
