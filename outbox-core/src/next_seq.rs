//! A partition's next sequence number, derived from its messages.
//!
//! Schema v2 keeps no counter that the sequencer updates: the next number is
//! one more than the highest `seq` the partition's messages hold, or than
//! the cursor once the vacuum has deleted every message at or below it
//! (a number is never given twice: the vacuum deletes only numbers the
//! cursor passed, and the cursor never passes the highest number given).
//! So the sequencer writes no partition row, and neither waits for a
//! processor's acknowledgement nor makes one wait; two sequencers that pick
//! the same number collide on the unique `(partition_id, seq)` index.
//! (The partition table's `next_seq` column is schema v1's counter; nothing
//! writes it any more.)

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};

use crate::column::Column;
use crate::table::Tables;

/// `next_seq` of the partition row `partition` (a table name or alias in
/// the surrounding query): one more than the highest `seq` above the
/// cursor, or than the cursor when there is none. One index probe on
/// `(partition_id, seq)`.
pub(crate) fn next_seq(tables: &Tables, partition: &Alias) -> Expr {
    let m = Alias::new("next_m");
    let processed = || Expr::col((partition.clone(), Column::ProcessedSeq));
    let highest_beyond_cursor = Expr::SubQuery(
        None,
        Box::new(
            Query::select()
                .expr(Func::max(Expr::col((m.clone(), Column::Seq))))
                .from_as(tables.message.clone(), m.clone())
                .and_where(
                    Expr::col((m.clone(), Column::PartitionId))
                        .equals((partition.clone(), Column::Id)),
                )
                .and_where(Expr::col((m.clone(), Column::Seq)).gt(processed()))
                .to_owned()
                .into(),
        ),
    );
    Expr::from(Func::coalesce([highest_beyond_cursor, processed()])).add(1)
}

/// Whether the partition row `partition` has sequenced messages beyond its
/// cursor: one index probe.
pub(crate) fn has_work(tables: &Tables, partition: &Alias) -> Expr {
    let m = Alias::new("work_m");
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from_as(tables.message.clone(), m.clone())
            .and_where(
                Expr::col((m.clone(), Column::PartitionId)).equals((partition.clone(), Column::Id)),
            )
            .and_where(
                Expr::col((m.clone(), Column::Seq))
                    .gt(Expr::col((partition.clone(), Column::ProcessedSeq))),
            )
            .to_owned(),
    )
}
