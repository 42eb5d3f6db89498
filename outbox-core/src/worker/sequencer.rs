//! The sequencer: gives committed, unsequenced messages a dense
//! per-partition sequence number (the UPDATE that sets `seq`), one
//! transaction per pass.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, Order, Query};
use tracing::Instrument;

use crate::column::Column;
use crate::error::DbErrorKind;
use crate::error::OutboxError;
use crate::next_seq::{has_work, next_seq};
use crate::outbox::Shared;
use crate::statement_limits::ROWS_PER_STATEMENT;
use crate::worker::config::WorkerConfig;
use crate::worker::shutdown::{Shutdown, error_backoff};

/// The pause after a pass lost a race with another instance's sequencer.
/// Brief contention (two passes over the same partitions) clears within a
/// few such passes; after `CONTENDED_PASSES_AT_FIRST_PAUSE` in a row the pause
/// doubles on each, up to the poll interval.
const CONTENDED_PAUSE: Duration = Duration::from_millis(5);
const CONTENDED_PASSES_AT_FIRST_PAUSE: u32 = 4;

/// The gap of the first quick polls after a pass that sequenced something,
/// where no listener relays other processes' commits (MySQL, SQLite). Each
/// quick poll is one probe for an unsequenced message. The first
/// `QUICK_POLLS_AT_FIRST_GAP` probes keep this gap, so a producer in another
/// process writing a hundred or more messages a second is seen within about
/// a millisecond; after that the gap doubles on each empty probe until it
/// reaches the poll interval, so an idle outbox pays nothing beyond its
/// usual poll.
const QUICK_POLL_FIRST: Duration = Duration::from_millis(1);
const QUICK_POLLS_AT_FIRST_GAP: u32 = 10;

/// Where the quick polls are: the next gap, and how many probes are left
/// before the gap starts doubling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuickPolls {
    gap: Duration,
    at_first_gap: u32,
}

impl QuickPolls {
    /// Right after activity.
    fn start() -> Self {
        Self {
            gap: QUICK_POLL_FIRST,
            at_first_gap: QUICK_POLLS_AT_FIRST_GAP,
        }
    }

    /// One probe further.
    fn after_empty_probe(self) -> Self {
        match self.at_first_gap {
            0 => Self {
                gap: self.gap.saturating_mul(2),
                at_first_gap: 0,
            },
            n => Self {
                at_first_gap: n - 1,
                ..self
            },
        }
    }
}

/// What one sequencer pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Sequenced this many messages.
    Sequenced(usize),
    /// Another transaction numbered (or took) some of the rows first; the
    /// pass was rolled back.
    Contended,
    /// Nothing waiting.
    Empty,
}

/// The sequencer of one outbox instance.
pub(crate) struct Sequencer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: WorkerConfig,
    pub(crate) shutdown: Shutdown,
    /// Message ids at or below this are skipped by passes between sweeps
    /// (see `LATE_COMMIT_WINDOW`).
    floor: i64,
    /// When the last sweep (a pass from the lowest id) ran.
    last_sweep: Option<tokio::time::Instant>,
}

/// How far below the highest message id it numbered a pass still looks.
///
/// A numbered message leaves the index of unsequenced ones only when the
/// database's own vacuum cleans it, so a read of the oldest unsequenced
/// messages from the lowest id would step over every message numbered
/// since (tens of milliseconds per pass after a few hundred thousand
/// messages). Passes read from this far below the highest id numbered
/// instead: a message whose id was allocated up to this many ids earlier
/// and committed late is still taken by the next pass. One allocated
/// earlier still (a producer transaction left open while this many other
/// messages were enqueued) is taken by the sweep, a pass from the lowest id
/// once per `poll_interval`.
const LATE_COMMIT_WINDOW: i64 = 10_000;

impl Sequencer {
    pub(crate) fn new(shared: Arc<Shared>, config: WorkerConfig, shutdown: Shutdown) -> Self {
        Self {
            shared,
            config,
            shutdown,
            floor: 0,
            last_sweep: None,
        }
    }

    /// The lowest id this pass reads above: 0 when a sweep is due.
    fn pass_floor(&mut self) -> i64 {
        let now = tokio::time::Instant::now();
        match self.last_sweep {
            Some(at) if now.duration_since(at) < self.config.poll_interval => self.floor,
            _ => {
                self.last_sweep = Some(now);
                0
            }
        }
    }

    /// Runs until stop. Woken after commits; polls every `poll_interval`, and
    /// on each poll also wakes the processors of partitions with work (which
    /// covers messages sequenced by other instances and lost wakeups).
    pub(crate) async fn run(mut self) {
        let mut errors = 0;
        let mut contended: u32 = 0;
        // Where the quick polls are while they run (see `QUICK_POLL_FIRST`);
        // `None` when idle at the poll interval. A start counts as activity:
        // producers often begin right after their consumers.
        let mut quick = (!self.shared.listening.load(Ordering::Relaxed)).then(QuickPolls::start);
        while !self.shutdown.is_set() {
            let pass = self.run_once().await;
            if !matches!(pass, Ok(Pass::Contended)) {
                contended = 0;
            }
            match pass {
                Ok(Pass::Sequenced(n)) => {
                    errors = 0;
                    if n < self.config.sequencer_batch as usize {
                        if !self.shared.listening.load(Ordering::Relaxed) {
                            quick = Some(QuickPolls::start());
                        }
                        self.wait_quick_or_idle(&mut quick).await;
                    }
                }
                Ok(Pass::Contended) => {
                    // Another sequencer is numbering the same partitions: wait
                    // longer each time, until a commit wakes us.
                    errors = 0;
                    contended += 1;
                    let doublings = contended.saturating_sub(CONTENDED_PASSES_AT_FIRST_PAUSE);
                    let pause = CONTENDED_PAUSE
                        .saturating_mul(1 << Ord::min(doublings, 16))
                        .min(self.config.poll_interval);
                    self.pause(pause).await;
                }
                Ok(Pass::Empty) => {
                    // A wakeup during quick polls (a stored permit, say) ran
                    // this pass: the quick polls go on, one gap further, so
                    // that they still end at the poll interval.
                    errors = 0;
                    quick = quick.map(QuickPolls::after_empty_probe);
                    self.wait_quick_or_idle(&mut quick).await;
                }
                Err(err) => {
                    quick = None;
                    errors += 1;
                    tracing::warn!(error = %err, "outbox sequencer pass failed");
                    self.shutdown.sleep(error_backoff(errors)).await;
                }
            }
        }
    }

    /// Waits for a wakeup or `pause`, whichever is first.
    async fn pause(&mut self, pause: Duration) {
        let shared = self.shared.clone();
        tokio::select! {
            () = shared.sequencer_wake.notified() => {}
            () = self.shutdown.sleep(pause) => {}
        }
    }

    /// Waits by quick polls while `quick` holds a gap, else by `idle`.
    async fn wait_quick_or_idle(&mut self, quick: &mut Option<QuickPolls>) {
        if let Some(at) = *quick {
            *quick = self.quick_polls(at).await;
            if quick.is_some() {
                return;
            }
        }
        self.idle().await;
    }

    /// Probes for unsequenced messages, from `at` on, until the gaps reach
    /// the poll interval. Returns where to go on from when a probe found a
    /// row or a wakeup came (the caller runs a pass), `None` when the gaps
    /// reached the poll interval or a probe failed (the regular poll then
    /// takes over).
    async fn quick_polls(&mut self, mut at: QuickPolls) -> Option<QuickPolls> {
        let shared = self.shared.clone();
        while at.gap < self.config.poll_interval {
            tokio::select! {
                () = shared.sequencer_wake.notified() => return Some(at),
                () = tokio::time::sleep(at.gap) => {}
                () = self.shutdown.wait() => return Some(at),
            }
            match unsequenced_waiting(&shared, self.floor).await {
                Ok(true) => return Some(at),
                Ok(false) => at = at.after_empty_probe(),
                Err(err) => {
                    tracing::debug!(error = %err, "outbox quick poll failed");
                    return None;
                }
            }
        }
        None
    }

    /// Waits for a wakeup or the poll interval; on a poll, wakes processors
    /// whose partitions have sequenced messages waiting.
    async fn idle(&mut self) {
        let shared = self.shared.clone();
        let polled = tokio::select! {
            () = shared.sequencer_wake.notified() => false,
            () = tokio::time::sleep(self.config.poll_interval) => true,
            () = self.shutdown.wait() => false,
        };
        if polled && let Err(err) = wake_partitions_with_work(&shared).await {
            tracing::warn!(error = %err, "outbox poll for pending partitions failed");
        }
    }

    /// One pass: read the oldest unsequenced messages and their partitions'
    /// next numbers, number the rows, commit, then wake the processors of
    /// the partitions filled.
    pub(crate) async fn run_once(&mut self) -> Result<Pass, OutboxError> {
        let span = tracing::debug_span!("outbox.sequence", count = tracing::field::Empty);
        async {
            let filled = self.sequence_batch().await?;
            match &filled {
                Pass::Sequenced(n) => tracing::Span::current().record("count", n),
                _ => tracing::Span::current().record("count", 0),
            };
            Ok(filled)
        }
        .instrument(span)
        .await
    }

    async fn sequence_batch(&mut self) -> Result<Pass, OutboxError> {
        let floor = self.pass_floor();
        let shared = &self.shared;
        let t = &shared.tables;
        let limit = u64::from(self.config.sequencer_batch);
        let err = |e| shared.db_error(e);
        let txn = shared.begin_sequencing().await?;

        // 1. The oldest unsequenced rows: committed rows only, so a row
        //    committed late is simply taken by a later pass.
        let oldest = Query::select()
            .columns([Column::Id, Column::PartitionId, Column::MessageId])
            .from(t.message.clone())
            .and_where(Expr::col(Column::Seq).is_null())
            .and_where(Expr::col(Column::Id).gt(floor))
            .order_by(Column::Id, Order::Asc)
            .limit(limit)
            .to_owned();
        let mut waiting = Vec::new();
        let mut partitions = HashSet::new();
        for row in txn.query_all(&oldest).await.map_err(err)? {
            let id: i64 = row.try_get("", Column::Id.name()).map_err(err)?;
            let partition_id: i64 = row.try_get("", Column::PartitionId.name()).map_err(err)?;
            let message_id: Vec<u8> = row.try_get("", Column::MessageId.name()).map_err(err)?;
            partitions.insert(partition_id);
            waiting.push((id, partition_id, message_id));
        }
        if waiting.is_empty() {
            txn.commit().await.map_err(err)?;
            return Ok(Pass::Empty);
        }

        // 2. Their partitions' next numbers, derived from their messages (see
        //    `next_seq.rs`): no partition row is locked or written, so no
        //    processor waits for this pass and none holds it up.
        let next = Query::select()
            .column(Column::Id)
            .expr_as(next_seq(&shared.tables, &t.partition), Column::NextSeq)
            .from(t.partition.clone())
            .and_where(Expr::col(Column::Id).is_in(partitions.iter().copied()))
            .to_owned();
        let mut next_seq_of: BTreeMap<i64, i64> = BTreeMap::new();
        for row in txn.query_all(&next).await.map_err(err)? {
            next_seq_of.insert(
                row.try_get("", Column::Id.name()).map_err(err)?,
                row.try_get("", Column::NextSeq.name()).map_err(err)?,
            );
        }

        // 3. Number them in id order within each partition.
        let mut moved = Vec::with_capacity(waiting.len());
        for (id, partition_id, message_id) in waiting {
            let Some(seq) = next_seq_of.get_mut(&partition_id) else {
                continue;
            };
            moved.push((id, partition_id, *seq, message_id));
            *seq += 1;
        }
        if moved.is_empty() {
            txn.commit().await.map_err(err)?;
            return Ok(Pass::Empty);
        }

        // 4. Number the rows, only while still unsequenced. Another
        //    sequencer's pass over the same partitions either numbered some
        //    of these rows first (this UPDATE then numbers fewer rows than it
        //    read) or gave the same numbers to other rows (the unique
        //    `(partition_id, seq)` index refuses them, after waiting for that
        //    pass to commit). Either way nothing of this pass is kept: the
        //    next pass reads what is left and numbers on from what committed.
        for chunk in moved.chunks(ROWS_PER_STATEMENT) {
            let mut pairs: Vec<(i64, i64)> =
                chunk.iter().map(|(id, _, seq, _)| (*id, *seq)).collect();
            pairs.sort_unstable();
            let update = Query::update()
                .table(t.message.clone())
                .value(Column::Seq, seq_by_id(&pairs))
                .and_where(Expr::col(Column::Id).is_in(pairs.iter().map(|(id, _)| *id)))
                .and_where(Expr::col(Column::Seq).is_null())
                .to_owned();
            let numbered = match txn.execute(&update).await {
                Ok(result) => result.rows_affected(),
                Err(e) => match shared.db_error(e) {
                    OutboxError::Database {
                        kind: DbErrorKind::UniqueViolation,
                        ..
                    } => {
                        tracing::debug!(
                            "outbox sequencer raced another for the same numbers; pass rolled back"
                        );
                        txn.rollback().await.map_err(err)?;
                        return Ok(Pass::Contended);
                    }
                    other => return Err(other),
                },
            };
            if numbered != chunk.len() as u64 {
                tracing::warn!(
                    read = chunk.len(),
                    numbered,
                    "outbox sequencer found messages taken by another transaction; pass rolled back"
                );
                txn.rollback().await.map_err(err)?;
                return Ok(Pass::Contended);
            }
        }
        txn.commit().await.map_err(err)?;
        if let Some(highest) = moved.iter().map(|(id, ..)| *id).max() {
            self.floor = Ord::max(self.floor, highest - LATE_COMMIT_WINDOW);
        }

        // 5. Only now, after commit, wake the processors of filled partitions.
        let touched: HashSet<i64> = moved.iter().map(|(_, p, ..)| *p).collect();
        if shared.events.active() {
            shared.events.publish(
                moved
                    .iter()
                    .filter_map(|(_, partition_id, seq, message_id)| {
                        let (queue, partition) = shared.partition_names.get(partition_id)?;
                        Some(crate::Event {
                            kind: crate::event::EventKind::Sequenced,
                            queue: queue.clone(),
                            partition: *partition,
                            seq: *seq,
                            message_id: uuid::Uuid::from_slice(message_id).ok()?,
                        })
                    }),
            );
        }
        for partition_id in &touched {
            if let Some(wake) = shared.partition_wakers.get(partition_id) {
                wake.notify_one();
            }
        }
        Ok(Pass::Sequenced(moved.len()))
    }
}

/// Whether any unsequenced message waits: one index probe, outside any
/// transaction.
async fn unsequenced_waiting(shared: &Shared, floor: i64) -> Result<bool, OutboxError> {
    let probe = Query::select()
        .expr(Expr::val(1))
        .from(shared.tables.message.clone())
        .and_where(Expr::col(Column::Seq).is_null())
        .and_where(Expr::col(Column::Id).gt(floor))
        .limit(1)
        .to_owned();
    let row = shared
        .db
        .query_one(&probe)
        .await
        .map_err(|e| shared.db_error(e))?;
    Ok(row.is_some())
}

/// `seq` for each of `pairs` (message row id, seq; sorted by id) as one
/// expression: a CASE tree that halves the ids at each level, so a row finds
/// its number in about log2(n) comparisons rather than the n/2 of a flat
/// `CASE id WHEN ...` (a thousand-row pass would otherwise cost half a
/// million comparisons).
fn seq_by_id(pairs: &[(i64, i64)]) -> Expr {
    const FLAT: usize = 8;
    if pairs.len() <= FLAT {
        let mut case = CaseStatement::new();
        for (id, seq) in pairs {
            case = case.case(Expr::col(Column::Id).eq(*id), Expr::val(*seq));
        }
        return case.finally(Expr::col(Column::Seq)).into();
    }
    let (low, high) = pairs.split_at(pairs.len() / 2);
    CaseStatement::new()
        .case(Expr::col(Column::Id).lt(high[0].0), seq_by_id(low))
        .finally(seq_by_id(high))
        .into()
}

/// One statement for all of this instance's partitions: which have sequenced
/// messages beyond their cursor. Wakes their processors.
pub(crate) async fn wake_partitions_with_work(shared: &Shared) -> Result<(), OutboxError> {
    if shared.partition_wakers.is_empty() {
        return Ok(());
    }
    let select = Query::select()
        .column(Column::Id)
        .from(shared.tables.partition.clone())
        .and_where(Expr::col(Column::QueueName).is_in(shared.queues.keys().cloned()))
        .and_where(has_work(&shared.tables, &shared.tables.partition))
        .to_owned();
    let rows = shared
        .db
        .query_all(&select)
        .await
        .map_err(|e| shared.db_error(e))?;
    for row in rows {
        let id: i64 = row
            .try_get("", Column::Id.name())
            .map_err(|e| shared.db_error(e))?;
        if let Some(wake) = shared.partition_wakers.get(&id) {
            wake.notify_one();
        }
    }
    Ok(())
}
