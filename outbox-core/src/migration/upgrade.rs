//! From schema v1 to v2: v1's bodies, incoming and outgoing rows become
//! rows of the message table, then v1's tables are dropped.
//!
//! What v1 holds and where it goes:
//! - an outgoing row above its partition's cursor (sequenced, not yet
//!   delivered): a message with the same `seq`, so the partition's cursor,
//!   next number, attempts and retry time (all on the partition row, which
//!   both versions share) go on applying to it;
//! - an incoming row (not yet sequenced): a message with `seq` NULL, in
//!   incoming id order, so the sequencer numbers them in the order v1's
//!   would have;
//! - an outgoing row at or below the cursor (delivered, not yet vacuumed)
//!   and its body: dropped, as v1's vacuum would have;
//! - dead letters, partition rows and instances: untouched (same tables).

use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, IntoIden, JoinType, Order, Query, SelectStatement, Table,
};
use sea_orm::{ConnectionTrait, DbErr};

use crate::column::Column;
use crate::table::Tables;

/// Whether `table` can be read.
pub(super) async fn table_exists<C: ConnectionTrait>(db: &C, table: &Alias) -> bool {
    let probe = Query::select()
        .expr(Expr::val(1))
        .from(table.clone())
        .and_where(Expr::val(1).eq(0))
        .to_owned();
    db.query_all(&probe).await.is_ok()
}

/// Moves v1's messages into the message table and drops v1's tables;
/// `false` when there were none. Safe to re-run and to run twice at once:
/// a message already in the message table (by message id) is not copied
/// again, and a copy racing another's fails on the unique message id and
/// is retried by `migrate`.
pub(super) async fn move_v1_messages<C: ConnectionTrait>(
    tables: &Tables,
    db: &C,
) -> Result<bool, DbErr> {
    let v1 = &tables.v1;
    let mut present = Vec::new();
    for table in [&v1.outgoing, &v1.incoming, &v1.body] {
        if table_exists(db, table).await {
            present.push(table.clone());
        }
    }
    if present.is_empty() {
        return Ok(false);
    }
    // The three are created together and dropped only after both copies:
    // all there, the copies run; some gone, only the drops are left. Each
    // copy is one statement and skips what an earlier, interrupted run
    // copied, so no transaction is needed around them (and MySQL's DDL
    // would end one anyway).
    if present.len() == 3 {
        db.execute(&copy_statement(tables, sequenced(tables))?)
            .await?;
        db.execute(&copy_statement(tables, unsequenced(tables))?)
            .await?;
    }
    for table in present {
        db.execute(&Table::drop().table(table).if_exists().to_owned())
            .await?;
    }
    Ok(true)
}

/// The columns both selects return, in the message table's insert order.
const MESSAGE_COLUMNS: [Column; 7] = [
    Column::PartitionId,
    Column::Seq,
    Column::MessageId,
    Column::Payload,
    Column::PayloadType,
    Column::Headers,
    Column::CreatedAt,
];

fn copy_statement(
    tables: &Tables,
    select: SelectStatement,
) -> Result<sea_orm::sea_query::InsertStatement, DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(tables.message.clone())
        .columns(MESSAGE_COLUMNS)
        .select_from(select)
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    Ok(insert)
}

/// Body columns of `b`, after the partition and seq expressions.
fn body_columns(select: &mut SelectStatement, b: &Alias) {
    for column in &MESSAGE_COLUMNS[2..] {
        select.column((b.clone(), *column));
    }
}

/// Not yet in the message table (a re-run, or a concurrent migrator).
fn not_moved(tables: &Tables, b: &Alias) -> Expr {
    let m = Alias::new("m");
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from_as(tables.message.clone(), m.clone())
            .and_where(
                Expr::col((m.clone(), Column::MessageId)).equals((b.clone(), Column::MessageId)),
            )
            .to_owned(),
    )
    .not()
}

/// v1's outgoing rows above their partition's cursor, with their bodies.
fn sequenced(tables: &Tables) -> SelectStatement {
    let t = tables;
    let (o, b, p) = (Alias::new("o"), Alias::new("b"), Alias::new("p"));
    let mut select = Query::select();
    select
        .column((o.clone(), Column::PartitionId))
        .column((o.clone(), Column::Seq));
    body_columns(&mut select, &b);
    select
        .from_as(t.v1.outgoing.clone(), o.clone().into_iden())
        .join_as(
            JoinType::InnerJoin,
            t.v1.body.clone(),
            b.clone(),
            Expr::col((b.clone(), Column::MessageId)).equals((o.clone(), Column::MessageId)),
        )
        .join_as(
            JoinType::InnerJoin,
            t.partition.clone(),
            p.clone(),
            Expr::col((p.clone(), Column::Id)).equals((o.clone(), Column::PartitionId)),
        )
        .and_where(Expr::col((o.clone(), Column::Seq)).gt(Expr::col((p, Column::ProcessedSeq))))
        .and_where(not_moved(tables, &b))
        .order_by((o.clone(), Column::PartitionId), Order::Asc)
        .order_by((o, Column::Seq), Order::Asc);
    select
}

/// v1's incoming rows with their bodies, in incoming id order.
fn unsequenced(tables: &Tables) -> SelectStatement {
    let t = tables;
    let (i, b) = (Alias::new("i"), Alias::new("b"));
    let mut select = Query::select();
    select
        .column((i.clone(), Column::PartitionId))
        .expr(Expr::val(Option::<i64>::None));
    body_columns(&mut select, &b);
    select
        .from_as(t.v1.incoming.clone(), i.clone())
        .join_as(
            JoinType::InnerJoin,
            t.v1.body.clone(),
            b.clone(),
            Expr::col((b.clone(), Column::MessageId)).equals((i.clone(), Column::MessageId)),
        )
        .and_where(not_moved(tables, &b))
        .order_by((i, Column::Id), Order::Asc);
    select
}
