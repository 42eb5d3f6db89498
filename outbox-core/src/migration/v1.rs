//! Schema v1, frozen: the tables the first migration creates.
//!
//! An application that applied the first migration before schema v2 has
//! these tables; the v2 migration moves their messages into the message
//! table and drops them. A new database gets them from the first migration
//! too, and loses them in the same run. Nothing but the migrations reads
//! this file: change it and the history of every database changes with it.

use sea_orm::sea_query::{Index, IndexCreateStatement, Table, TableCreateStatement};

use super::Definitions;
use crate::column::Column;
use crate::dialect::ColumnKind;

/// Schema v1's tables and their indexes, in creation order.
pub(super) fn tables_and_indexes(
    schema: &Definitions<'_>,
) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
    use ColumnKind::{BigInt, MessageId, Name, Text};
    let t = &schema.tables;
    let mut tables = schema.shared_tables();
    let body = Table::create()
        .table(t.v1.body.clone())
        .if_not_exists()
        .col(
            schema
                .column(Column::MessageId.name(), MessageId)
                .primary_key()
                .to_owned(),
        )
        .col(schema.column(Column::Payload.name(), ColumnKind::Bytes))
        .col(schema.column(Column::PayloadType.name(), Name))
        .col(schema.column(Column::Headers.name(), Text))
        .col(schema.column(Column::CreatedAt.name(), BigInt))
        .to_owned();

    let incoming = Table::create()
        .table(t.v1.incoming.clone())
        .if_not_exists()
        .col(schema.auto_id())
        .col(schema.column(Column::PartitionId.name(), BigInt))
        .col(schema.column(Column::MessageId.name(), MessageId))
        .to_owned();
    let incoming_indexes = vec![schema.index(
        &t.v1.incoming,
        "incoming_partition_id",
        &[Column::PartitionId.name(), Column::Id.name()],
    )];

    let outgoing = Table::create()
        .table(t.v1.outgoing.clone())
        .if_not_exists()
        .col(schema.column(Column::PartitionId.name(), BigInt))
        .col(schema.column(Column::Seq.name(), BigInt))
        .col(schema.column(Column::MessageId.name(), MessageId))
        .primary_key(Index::create().col(Column::PartitionId).col(Column::Seq))
        .to_owned();
    // v1's order: instance, partition, body, incoming, outgoing, dead letter.
    let dead_letter = tables.pop();
    tables.push((body, Vec::new()));
    tables.push((incoming, incoming_indexes));
    tables.push((outgoing, Vec::new()));
    tables.extend(dead_letter);
    tables
}
