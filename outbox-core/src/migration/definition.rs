//! The schema's table and index definitions for one dialect and prefix:
//! schema v2's, and the tables both versions share (schema v1's own are in
//! `v1.rs`).

use sea_orm::sea_query::{
    ColumnDef, ConditionalStatement, Expr, ExprTrait, Index, IndexCreateStatement, Table,
    TableCreateStatement,
};

use crate::column::Column;
use crate::dialect::{ColumnKind, Dialect};
use crate::table::Tables;

/// Builds the table and index statements of one dialect and prefix.
pub(crate) struct Definitions<'a> {
    pub(super) dialect: &'a dyn Dialect,
    pub(super) tables: &'a Tables,
}

impl Definitions<'_> {
    pub(super) fn column(&self, name: &'static str, kind: ColumnKind) -> ColumnDef {
        let mut def = ColumnDef::new_with_type(name, self.dialect.column_type(kind));
        def.not_null();
        def
    }

    pub(super) fn auto_id(&self) -> ColumnDef {
        let mut def = ColumnDef::new(Column::Id);
        def.big_integer().not_null().auto_increment().primary_key();
        def
    }

    pub(super) fn index(
        &self,
        table: &sea_orm::sea_query::Alias,
        suffix: &str,
        columns: &[&'static str],
    ) -> IndexCreateStatement {
        let mut index = Index::create();
        index
            .name(self.tables.name(suffix))
            .table(table.clone())
            .if_not_exists();
        for column in columns {
            index.col(*column);
        }
        index
    }

    /// Schema v2's tables and their indexes, in creation order.
    pub(crate) fn tables_and_indexes(
        &self,
    ) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
        use ColumnKind::{BigInt, Bytes, MessageId, Name, Text};
        let t = &self.tables;
        let mut seq = self.column(Column::Seq.name(), BigInt);
        seq.null();
        let mut message = Table::create()
            .table(t.message.clone())
            .if_not_exists()
            .col(self.auto_id())
            .col(self.column(Column::PartitionId.name(), BigInt))
            .col(seq)
            .col(self.column(Column::MessageId.name(), MessageId))
            .col(self.column(Column::Payload.name(), Bytes))
            .col(self.column(Column::PayloadType.name(), Name))
            .col(self.column(Column::Headers.name(), Text))
            .col(self.column(Column::CreatedAt.name(), BigInt))
            .to_owned();
        if let Some(options) = self.dialect.message_table_options() {
            message.extra(options);
        }
        let mut tables = self.shared_tables();
        let dead_letter = tables.pop();
        tables.push((message, self.message_indexes()));
        tables.extend(dead_letter);
        tables
    }

    /// The message table's indexes. A message is inserted with `seq` NULL,
    /// numbered by one UPDATE, and deleted by vacuum: the sequencer finds
    /// unsequenced messages oldest first (overall and per partition), the
    /// processor reads a partition's messages by `seq`, and a message id is
    /// unique. With partial indexes each index holds only the rows it
    /// serves, so numbering a message adds one entry (to the seq index) and
    /// enqueuing three.
    fn message_indexes(&self) -> Vec<IndexCreateStatement> {
        let t = &self.tables;
        let unsequenced = || Expr::col(Column::Seq).is_null();
        let by_message_id = self
            .index(
                &t.message,
                "message_message_id",
                &[Column::MessageId.name()],
            )
            .unique()
            .to_owned();
        if self.dialect.partial_indexes() {
            vec![
                by_message_id,
                self.index(&t.message, "message_unsequenced", &[Column::Id.name()])
                    .and_where(unsequenced())
                    .to_owned(),
                self.index(
                    &t.message,
                    "message_partition_unsequenced",
                    &[Column::PartitionId.name(), Column::Id.name()],
                )
                .and_where(unsequenced())
                .to_owned(),
                self.index(
                    &t.message,
                    "message_partition_seq",
                    &[Column::PartitionId.name(), Column::Seq.name()],
                )
                .unique()
                .and_where(Expr::col(Column::Seq).is_not_null())
                .to_owned(),
            ]
        } else {
            // Without partial indexes: NULLs do not collide in a unique
            // index, and (seq, id) starts with the unsequenced rows in id
            // order; (partition_id, seq) ends with the primary key, so it
            // also finds a partition's unsequenced rows in id order.
            vec![
                by_message_id,
                self.index(
                    &t.message,
                    "message_unsequenced",
                    &[Column::Seq.name(), Column::Id.name()],
                ),
                self.index(
                    &t.message,
                    "message_partition_seq",
                    &[Column::PartitionId.name(), Column::Seq.name()],
                )
                .unique()
                .to_owned(),
            ]
        }
    }

    /// The tables schema v1 and v2 share: instance, partition, dead letter.
    pub(super) fn shared_tables(&self) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
        let schema = self;
        use ColumnKind::{BigInt, Bytes, Int, MessageId, Name, Text};
        let t = &schema.tables;
        let nullable = |mut def: ColumnDef| {
            def.null();
            def
        };
        let with_default = |mut def: ColumnDef, value: i64| {
            def.default(value);
            def
        };
        let column = |name: Column, kind| schema.column(name.name(), kind);

        let partition = Table::create()
            .table(t.partition.clone())
            .if_not_exists()
            .col(schema.auto_id())
            .col(column(Column::QueueName, Name))
            .col(column(Column::PartitionNo, Int))
            .col(with_default(column(Column::NextSeq, BigInt), 1))
            .col(with_default(column(Column::ProcessedSeq, BigInt), 0))
            .col(with_default(column(Column::Attempts, Int), 0))
            .col(nullable(column(Column::LastError, Text)))
            .col(with_default(column(Column::RetryAt, BigInt), 0))
            .col(nullable(column(Column::LeaseOwner, Name)))
            .col(with_default(column(Column::LeaseUntil, BigInt), 0))
            .col(with_default(column(Column::LeaseToken, BigInt), 0))
            .to_owned();
        let partition_indexes = vec![
            schema
                .index(
                    &t.partition,
                    "partition_queue_no",
                    &[Column::QueueName.name(), Column::PartitionNo.name()],
                )
                .unique()
                .to_owned(),
        ];

        let dead_letter = Table::create()
            .table(t.dead_letter.clone())
            .if_not_exists()
            .col(schema.auto_id())
            .col(column(Column::QueueName, Name))
            .col(column(Column::PartitionNo, Int))
            .col(column(Column::Seq, BigInt))
            .col(column(Column::MessageId, MessageId))
            .col(column(Column::Payload, Bytes))
            .col(column(Column::PayloadType, Name))
            .col(column(Column::Headers, Text))
            .col(column(Column::CreatedAt, BigInt))
            .col(column(Column::FailedAt, BigInt))
            .col(column(Column::Attempts, Int))
            .col(column(Column::LastError, Text))
            .col(column(Column::Status, Name))
            .col(nullable(column(Column::Deadline, BigInt)))
            .col(nullable(column(Column::CompletedAt, BigInt)))
            .to_owned();
        let dead_letter_indexes = vec![
            schema.index(
                &t.dead_letter,
                "dead_letter_scope",
                &[
                    Column::Status.name(),
                    Column::QueueName.name(),
                    Column::PartitionNo.name(),
                ],
            ),
            schema.index(
                &t.dead_letter,
                "dead_letter_failed_at",
                &[Column::FailedAt.name()],
            ),
            schema.index(
                &t.dead_letter,
                "dead_letter_message_id",
                &[Column::MessageId.name()],
            ),
        ];

        let instance = Table::create()
            .table(t.instance.clone())
            .if_not_exists()
            .col(column(Column::Owner, Name).primary_key().to_owned())
            .col(column(Column::HeartbeatUntil, BigInt))
            .col(with_default(column(Column::Incarnation, BigInt), 0))
            .to_owned();

        vec![
            (instance, Vec::new()),
            (partition, partition_indexes),
            (dead_letter, dead_letter_indexes),
        ]
    }
}
