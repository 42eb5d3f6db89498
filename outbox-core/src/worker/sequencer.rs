//! The sequencer: gives committed, unsequenced messages a dense
//! per-partition sequence number (the UPDATE that sets `seq`), one
//! transaction per pass.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::sea_query::{Alias, CaseStatement, Expr, ExprTrait, LockBehavior, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tracing::Instrument;

use crate::column::Column;
use crate::error::OutboxError;
use crate::outbox::Shared;
use crate::statement_limits::ROWS_PER_STATEMENT;
use crate::worker::config::WorkerConfig;
use crate::worker::shutdown::{Shutdown, error_backoff};

/// How many times one pass looks past partitions held elsewhere.
const LOOK_PAST_ROUNDS: u32 = 3;

/// The pause after a pass found every waiting partition held elsewhere.
/// Brief contention (a processor between two batches) clears within a few
/// such passes; after `CONTENDED_PASSES_AT_FIRST_PAUSE` in a row the pause
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
    /// Incoming rows exist but every partition they belong to is held by
    /// another sequencer.
    Contended,
    /// Nothing waiting.
    Empty,
}

/// The sequencer of one outbox instance.
pub(crate) struct Sequencer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: WorkerConfig,
    pub(crate) shutdown: Shutdown,
}

impl Sequencer {
    pub(crate) fn new(shared: Arc<Shared>, config: WorkerConfig, shutdown: Shutdown) -> Self {
        Self {
            shared,
            config,
            shutdown,
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
            let all_held = matches!(pass, Ok(Pass::Contended));
            // While every waiting partition is held, a processor that
            // releases its partition wakes the sequencer.
            self.shared
                .sequencer_contended
                .store(all_held, Ordering::Relaxed);
            if !all_held {
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
                    // Every waiting partition is held (by other sequencers, or
                    // by transactional handlers): wait longer each time, until
                    // a commit or a released partition wakes us.
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
            match unsequenced_waiting(&shared).await {
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

    /// One pass: claim the oldest unsequenced messages, lock their partitions (skip
    /// those held elsewhere), number the rows, move them, commit, then wake
    /// the processors of the partitions filled.
    pub(crate) async fn run_once(&self) -> Result<Pass, OutboxError> {
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

    async fn sequence_batch(&self) -> Result<Pass, OutboxError> {
        let shared = &self.shared;
        let t = &shared.tables;
        let limit = u64::from(self.config.sequencer_batch);
        let err = |e| shared.db_error(e);
        let txn = shared.begin_bookkeeping().await?;

        // 1. Which partitions the oldest waiting rows belong to.
        let candidates = Query::select()
            .column(Column::PartitionId)
            .from(t.message.clone())
            .and_where(Expr::col(Column::Seq).is_null())
            .order_by(Column::Id, Order::Asc)
            .limit(limit)
            .to_owned();
        let mut partitions: Vec<i64> = Vec::new();
        let mut seen = HashSet::new();
        let mut window = 0;
        for row in txn.query_all(&candidates).await.map_err(err)? {
            let id: i64 = row.try_get("", Column::PartitionId.name()).map_err(err)?;
            window += 1;
            if seen.insert(id) {
                partitions.push(id);
            }
        }
        if partitions.is_empty() {
            txn.commit().await.map_err(err)?;
            return Ok(Pass::Empty);
        }

        // 2. Lock those partition rows; one held by another sequencer or by
        //    a transactional processor is skipped whole, never some of its rows.
        let mut next_seq: BTreeMap<i64, i64> = BTreeMap::new();
        let mut skipped = self.lock(&txn, &partitions, &mut next_seq).await?;
        let mut groups = vec![(partitions, None)];
        // 2b. Held partitions can fill the whole window (a handler that holds
        //     its partition for minutes while its backlog grows): look past
        //     them at the partitions with the oldest waiting rows, a bounded
        //     number of times, so the others keep moving.
        let mut more_beyond = window == limit;
        let mut rounds = 0;
        while !skipped.is_empty() && more_beyond && rounds < LOOK_PAST_ROUNDS {
            rounds += 1;
            let exclude: Vec<i64> = groups
                .iter()
                .flat_map(|(ids, _)| ids.iter().copied())
                .collect();
            let oldest = self.oldest_partitions_except(&txn, &exclude, limit).await?;
            if oldest.is_empty() {
                break;
            }
            more_beyond = oldest.len() as u64 == limit;
            let ids: Vec<i64> = oldest.iter().map(|(id, _)| *id).collect();
            skipped = self.lock(&txn, &ids, &mut next_seq).await?;
            let lower_bound = oldest
                .iter()
                .filter(|(id, _)| next_seq.contains_key(id))
                .map(|(_, first)| *first)
                .min();
            groups.push((ids, lower_bound));
        }
        if next_seq.is_empty() {
            txn.rollback().await.map_err(err)?;
            return Ok(Pass::Contended);
        }

        // 3. Read the locked partitions' rows in id order: committed rows only,
        //    so a row committed late is simply taken by a later pass. Rows of
        //    partitions found by looking past held ones are read from their
        //    oldest row on, so the scan does not wade through the held
        //    partitions' backlog.
        let mut moved = Vec::new();
        for (ids, lower_bound) in groups {
            let locked: Vec<i64> = ids
                .into_iter()
                .filter(|id| next_seq.contains_key(id))
                .collect();
            let room = limit.saturating_sub(moved.len() as u64);
            if locked.is_empty() || room == 0 {
                continue;
            }
            let mut rows = Query::select();
            rows.columns([Column::Id, Column::PartitionId, Column::MessageId])
                .from(t.message.clone())
                .and_where(Expr::col(Column::Seq).is_null())
                .and_where(Expr::col(Column::PartitionId).is_in(locked))
                .order_by(Column::Id, Order::Asc)
                .limit(room);
            if let Some(lower_bound) = lower_bound {
                rows.and_where(Expr::col(Column::Id).gte(lower_bound));
            }
            for row in txn.query_all(&rows).await.map_err(err)? {
                let id: i64 = row.try_get("", Column::Id.name()).map_err(err)?;
                let partition_id: i64 = row.try_get("", Column::PartitionId.name()).map_err(err)?;
                let message_id: Vec<u8> = row.try_get("", Column::MessageId.name()).map_err(err)?;
                let Some(seq) = next_seq.get_mut(&partition_id) else {
                    continue;
                };
                moved.push((id, partition_id, *seq, message_id));
                *seq += 1;
            }
        }
        if moved.is_empty() {
            txn.commit().await.map_err(err)?;
            return Ok(Pass::Empty);
        }

        // 4. Number the rows (only while still unsequenced), advance counters.
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
            let numbered = txn.execute(&update).await.map_err(err)?.rows_affected();
            if numbered != chunk.len() as u64 {
                // Another transaction numbered or deleted some of these rows
                // after step 3 read them: whoever did owns those messages,
                // and numbering the others around them would leave a gap or
                // a second copy. Nothing of this pass is kept; the next pass
                // sees what is left.
                tracing::warn!(
                    read = chunk.len(),
                    numbered,
                    "outbox sequencer found messages taken by another transaction; pass rolled back"
                );
                txn.rollback().await.map_err(err)?;
                return Ok(Pass::Contended);
            }
        }
        let touched: Vec<i64> = moved
            .iter()
            .map(|(_, p, ..)| *p)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut case = CaseStatement::new();
        for partition_id in &touched {
            case = case.case(
                Expr::col(Column::Id).eq(*partition_id),
                Expr::val(next_seq[partition_id]),
            );
        }
        let case = case.finally(Expr::col(Column::NextSeq));
        let update = Query::update()
            .table(t.partition.clone())
            .value(Column::NextSeq, case)
            .and_where(Expr::col(Column::Id).is_in(touched.iter().copied()))
            .to_owned();
        txn.execute(&update).await.map_err(err)?;
        txn.commit().await.map_err(err)?;

        // 5. Only now, after commit, wake the processors of filled partitions.
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

    /// Locks the partition rows `ids` with `SKIP LOCKED`, recording each
    /// locked one's next sequence number; returns those held elsewhere.
    async fn lock(
        &self,
        txn: &DatabaseTransaction,
        ids: &[i64],
        next_seq: &mut BTreeMap<i64, i64>,
    ) -> Result<Vec<i64>, OutboxError> {
        let shared = &self.shared;
        let err = |e| shared.db_error(e);
        let mut lock = Query::select();
        lock.columns([Column::Id, Column::NextSeq])
            .from(shared.tables.partition.clone())
            .and_where(Expr::col(Column::Id).is_in(ids.iter().copied()))
            .order_by(Column::Id, Order::Asc);
        if let Some(lock_type) = shared.dialect.partition_lock() {
            lock.lock_with_behavior(lock_type, LockBehavior::SkipLocked);
        }
        for row in txn.query_all(&lock).await.map_err(err)? {
            next_seq.insert(
                row.try_get("", Column::Id.name()).map_err(err)?,
                row.try_get("", Column::NextSeq.name()).map_err(err)?,
            );
        }
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !next_seq.contains_key(id))
            .collect())
    }

    /// Up to `limit` partitions with waiting rows, other than `exclude`,
    /// oldest waiting row first, with that row's id. One index probe per
    /// partition row (an index of unsequenced messages leads with the partition), so the
    /// cost follows the partition count, never a held partition's backlog.
    async fn oldest_partitions_except(
        &self,
        txn: &DatabaseTransaction,
        exclude: &[i64],
        limit: u64,
    ) -> Result<Vec<(i64, i64)>, OutboxError> {
        let shared = &self.shared;
        let t = &shared.tables;
        let err = |e| shared.db_error(e);
        let (p, i) = (Alias::new("p"), Alias::new("i"));
        let first = Query::select()
            .column((i.clone(), Column::Id))
            .from_as(t.message.clone(), i.clone())
            .and_where(Expr::col((i.clone(), Column::PartitionId)).equals((p.clone(), Column::Id)))
            .and_where(Expr::col((i.clone(), Column::Seq)).is_null())
            .order_by((i.clone(), Column::Id), Order::Asc)
            .limit(1)
            .to_owned();
        let per_partition = Query::select()
            .expr_as(Expr::col((p.clone(), Column::Id)), Alias::new("pid"))
            .expr_as(
                Expr::SubQuery(None, Box::new(first.into())),
                Alias::new("oldest"),
            )
            .from_as(t.partition.clone(), p.clone())
            .and_where(Expr::col((p.clone(), Column::Id)).is_not_in(exclude.iter().copied()))
            .to_owned();
        let w = Alias::new("w");
        let select = Query::select()
            .columns([Alias::new("pid"), Alias::new("oldest")])
            .from_subquery(per_partition, w)
            .and_where(Expr::col(Alias::new("oldest")).is_not_null())
            .order_by(Alias::new("oldest"), Order::Asc)
            .limit(limit)
            .to_owned();
        let mut found = Vec::new();
        for row in txn.query_all(&select).await.map_err(err)? {
            found.push((
                row.try_get("", "pid").map_err(err)?,
                row.try_get("", "oldest").map_err(err)?,
            ));
        }
        Ok(found)
    }
}

/// Whether any unsequenced message waits: one index probe, outside any
/// transaction.
async fn unsequenced_waiting(shared: &Shared) -> Result<bool, OutboxError> {
    let probe = Query::select()
        .expr(Expr::val(1))
        .from(shared.tables.message.clone())
        .and_where(Expr::col(Column::Seq).is_null())
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
        .and_where(
            Expr::col(Column::NextSeq)
                .sub(1)
                .gt(Expr::col(Column::ProcessedSeq)),
        )
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
