//! Dead-letter administration: list, count, show, replay (claim with a
//! deadline), resolve, reject, discard, clean up and requeue.
//!
//! Every status change is one conditional statement or one transaction, and
//! is safe when several admins (or CLI runs) act at once: a letter is claimed
//! by one replay or one requeue only. Claims lock the candidate rows with
//! `SKIP LOCKED` where the backend has row locks (PostgreSQL, MySQL), run in
//! the single-writer `BEGIN IMMEDIATE` transaction on SQLite, and are checked
//! with `rows_affected`.

mod record;
mod requeue;
pub(crate) mod scope;

use std::time::Duration;

use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Func, Order, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use tracing::Instrument;

use crate::column::Column;
use crate::error::OutboxError;
use crate::outbox::Outbox;
use crate::outbox_admin::OutboxAdmin;

pub use record::{DeadLetter, DeadLetterList, DeadLetterSummary};
pub use requeue::Requeued;
pub use scope::{DeadLetterPage, DeadLetterScope, DeadLetterStatus, MAX_DEAD_LETTER_BATCH};

use record::{BODY_COLUMNS, NOW_COLUMN, SUMMARY_COLUMNS, parse_letter, parse_summary};
use scope::{check_limit, claimable, finished, lock_candidates, open};

/// How many times a claim is tried again when another admin changed a
/// candidate between reading and claiming it (only possible without row locks).
const CLAIM_TRIES: usize = 5;

/// The dead-letter API of one set of outbox tables.
///
/// Get it from [`OutboxAdmin::dead_letters`] (no started outbox needed) or
/// [`Outbox::dead_letters`](crate::Outbox::dead_letters).
///
/// A letter's lifecycle is `pending -> reprocessing -> resolved`, or
/// `-> discarded`:
/// - [`replay`](Self::replay) claims pending letters until a deadline and
///   returns them for the application to process, which then calls
///   [`resolve`](Self::resolve) or [`reject`](Self::reject); a claim left past
///   its deadline counts as pending again.
/// - [`requeue`](Self::requeue) puts pending letters back into their queue as
///   new messages (same id and headers, a new sequence number) and resolves
///   them, in one transaction.
/// - [`discard`](Self::discard) gives up on letters; [`cleanup`](Self::cleanup)
///   deletes resolved and discarded ones after a while.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    admin: OutboxAdmin,
}

impl DeadLetters {
    pub(crate) fn new(admin: OutboxAdmin) -> Self {
        Self { admin }
    }

    /// One page of the letters in `scope`, in id order, without payloads.
    ///
    /// # Errors
    /// [`OutboxError::InvalidScope`] for a bad scope or page;
    /// [`OutboxError::SchemaMissing`] or [`OutboxError::Database`] from the query.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn list(
        &self,
        scope: &DeadLetterScope,
        page: &DeadLetterPage,
    ) -> Result<DeadLetterList, OutboxError> {
        scope.validate()?;
        page.validate()?;
        let a = &self.admin;
        let now = a.dialect.now_millis();
        let mut cond = Cond::all().add(scope.condition(&now));
        if let Some(after) = page.after() {
            cond = cond.add(Expr::col(Column::Id).gt(after));
        }
        let select = Query::select()
            .columns(SUMMARY_COLUMNS)
            .expr_as(now, Alias::new(NOW_COLUMN))
            .from(a.tables.dead_letter.clone())
            .cond_where(cond)
            .order_by(Column::Id, Order::Asc)
            .limit(u64::from(page.limit()))
            .to_owned();
        let rows = a.db.query_all(&select).await.map_err(|e| a.error(e))?;
        let letters = rows
            .iter()
            .map(parse_summary)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if letters.len() == page.limit() as usize {
            letters.last().map(|l| l.id)
        } else {
            None
        };
        Ok(DeadLetterList {
            letters,
            next_cursor,
        })
    }

    /// How many letters are in `scope`.
    ///
    /// # Errors
    /// As [`DeadLetters::list`].
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn count(&self, scope: &DeadLetterScope) -> Result<u64, OutboxError> {
        scope.validate()?;
        let a = &self.admin;
        let now = a.dialect.now_millis();
        let select = Query::select()
            .expr_as(Func::count(Expr::col(Column::Id)), Alias::new("n"))
            .from(a.tables.dead_letter.clone())
            .cond_where(scope.condition(&now))
            .to_owned();
        let row = a.db.query_one(&select).await.map_err(|e| a.error(e))?;
        let n = match row {
            Some(row) => row.try_get::<i64>("", "n").map_err(|e| a.error(e))?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One letter in full: payload, headers, last error and attempts.
    ///
    /// # Errors
    /// [`OutboxError::DeadLetterNotFound`] when no letter has this id;
    /// [`OutboxError::SchemaMissing`] or [`OutboxError::Database`] from the query.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn get(&self, id: i64) -> Result<DeadLetter, OutboxError> {
        let a = &self.admin;
        let select = Query::select()
            .columns(SUMMARY_COLUMNS)
            .columns(BODY_COLUMNS)
            .expr_as(a.dialect.now_millis(), Alias::new(NOW_COLUMN))
            .from(a.tables.dead_letter.clone())
            .and_where(Expr::col(Column::Id).eq(id))
            .to_owned();
        match a.db.query_one(&select).await.map_err(|e| a.error(e))? {
            Some(row) => parse_letter(&row),
            None => Err(OutboxError::DeadLetterNotFound { id }),
        }
    }

    /// Claims up to `limit` pending letters of `scope` (oldest first) until
    /// `claim_for` from now, and returns them in full for the application to
    /// process; then call [`resolve`](Self::resolve) or [`reject`](Self::reject)
    /// with their ids. A letter is claimed by one replay only, also when
    /// several run at once; a claim not resolved or rejected before its
    /// deadline counts as pending again and can be claimed anew (so a slow
    /// replayer may see a letter that another one also processed: replay is
    /// at least once).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use outbox_core::{DeadLetterScope, OutboxAdmin, OutboxError};
    ///
    /// async fn replay_orders(admin: &OutboxAdmin) -> Result<(), OutboxError> {
    ///     let letters = admin.dead_letters();
    ///     let scope = DeadLetterScope::all().queue("orders").payload_type("OrderPlaced");
    ///     for letter in letters.replay(&scope, 100, Duration::from_secs(300)).await? {
    ///         match fix_and_send(&letter.payload).await {
    ///             Ok(()) => letters.resolve(&[letter.id]).await?,
    ///             Err(e) => letters.reject(&[letter.id], &e.to_string()).await?,
    ///         };
    ///     }
    ///     Ok(())
    /// }
    /// # async fn fix_and_send(_: &[u8]) -> Result<(), std::io::Error> { Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`OutboxError::InvalidScope`] for a limit outside 1 to 1,000, a zero
    /// claim, or a status filter other than pending; database errors.
    ///
    /// # Cancel safety
    /// Cancel safe: the claim is one transaction, committed or not; a
    /// committed claim nobody processes expires at its deadline.
    pub async fn replay(
        &self,
        scope: &DeadLetterScope,
        limit: u32,
        claim_for: Duration,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        scope.validate()?;
        scope.require_statuses(&[DeadLetterStatus::Pending], "replay")?;
        check_limit(limit, "the replay limit")?;
        let claim_ms = i64::try_from(claim_for.as_millis()).unwrap_or(i64::MAX / 4);
        if claim_ms <= 0 {
            return Err(OutboxError::InvalidScope(
                "the replay claim must last at least 1 ms".into(),
            ));
        }
        let span = tracing::debug_span!(
            "outbox.dead_letter",
            op = "replay",
            count = tracing::field::Empty
        );
        async {
            for _ in 0..CLAIM_TRIES {
                if let Some(claimed) = self.try_replay(scope, limit, claim_ms).await? {
                    tracing::Span::current().record("count", claimed.len());
                    return Ok(claimed);
                }
            }
            tracing::warn!("outbox replay lost every race for its candidates; returning none");
            Ok(Vec::new())
        }
        .instrument(span)
        .await
    }

    /// One claim transaction; `None` when a candidate changed under it.
    async fn try_replay(
        &self,
        scope: &DeadLetterScope,
        limit: u32,
        claim_ms: i64,
    ) -> Result<Option<Vec<DeadLetter>>, OutboxError> {
        let a = &self.admin;
        let err = |e| a.error(e);
        let now = a.dialect.now_millis();
        let txn =
            a.db.begin_with_options(a.dialect.worker_transaction())
                .await
                .map_err(err)?;
        let mut select = Query::select();
        select
            .columns(SUMMARY_COLUMNS)
            .columns(BODY_COLUMNS)
            .expr_as(now.clone(), Alias::new(NOW_COLUMN))
            .from(a.tables.dead_letter.clone())
            .cond_where(Cond::all().add(scope.condition(&now)).add(claimable(&now)))
            .order_by(Column::Id, Order::Asc)
            .limit(u64::from(limit));
        lock_candidates(&mut select, a.dialect.as_ref());
        let rows = txn.query_all(&select).await.map_err(err)?;
        let Some(first) = rows.first() else {
            txn.commit().await.map_err(err)?;
            return Ok(Some(Vec::new()));
        };
        let now_ms: i64 = first.try_get("", NOW_COLUMN).map_err(err)?;
        let deadline = now_ms.saturating_add(claim_ms);
        let mut letters = rows
            .iter()
            .map(parse_letter)
            .collect::<Result<Vec<_>, _>>()?;
        let update = Query::update()
            .table(a.tables.dead_letter.clone())
            .value(Column::Status, DeadLetterStatus::Reprocessing.as_str())
            .value(Column::Deadline, deadline)
            .cond_where(
                Cond::all()
                    .add(Expr::col(Column::Id).is_in(letters.iter().map(|l| l.id)))
                    .add(claimable(&now)),
            )
            .to_owned();
        let claimed = txn.execute(&update).await.map_err(err)?.rows_affected();
        if claimed != letters.len() as u64 {
            txn.rollback().await.map_err(err)?;
            return Ok(None);
        }
        txn.commit().await.map_err(err)?;
        for letter in &mut letters {
            letter.status = DeadLetterStatus::Reprocessing;
            letter.deadline_ms = Some(deadline);
        }
        Ok(Some(letters))
    }

    /// Marks letters handled (after a replay, or by an operator): open
    /// letters (pending or reprocessing) among `ids` become `resolved`.
    /// Returns how many changed; ids that do not exist or are already
    /// resolved or discarded are left alone.
    ///
    /// # Errors
    /// [`OutboxError::InvalidScope`] for more than 1,000 ids; database errors.
    ///
    /// # Cancel safety
    /// Cancel safe: one statement.
    pub async fn resolve(&self, ids: &[i64]) -> Result<u64, OutboxError> {
        self.finish(ids, DeadLetterStatus::Resolved).await
    }

    /// Records a failed replay: open letters among `ids` go back to
    /// `pending`, with `error` as their last error and one more attempt.
    /// Returns how many changed. The error is stored as every reason is:
    /// control characters other than newline and tab replaced by U+FFFD,
    /// cut to 4 KiB.
    ///
    /// # Errors
    /// As [`DeadLetters::resolve`].
    ///
    /// # Cancel safety
    /// Cancel safe: one statement.
    pub async fn reject(&self, ids: &[i64], error: &str) -> Result<u64, OutboxError> {
        let scope = DeadLetterScope::all().ids(ids.iter().copied());
        scope.validate()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let a = &self.admin;
        let update = Query::update()
            .table(a.tables.dead_letter.clone())
            .value(Column::Status, DeadLetterStatus::Pending.as_str())
            .value(Column::Deadline, Option::<i64>::None)
            .value(Column::LastError, crate::reason::stored_reason(error))
            .value(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .and_where(Expr::col(Column::Id).is_in(ids.iter().copied()))
            .and_where(open())
            .to_owned();
        let result = a.db.execute(&update).await.map_err(|e| a.error(e))?;
        Ok(result.rows_affected())
    }

    async fn finish(&self, ids: &[i64], status: DeadLetterStatus) -> Result<u64, OutboxError> {
        let scope = DeadLetterScope::all().ids(ids.iter().copied());
        scope.validate()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let a = &self.admin;
        let update = Query::update()
            .table(a.tables.dead_letter.clone())
            .value(Column::Status, status.as_str())
            .value(Column::Deadline, Option::<i64>::None)
            .value(Column::CompletedAt, a.dialect.now_millis())
            .and_where(Expr::col(Column::Id).is_in(ids.iter().copied()))
            .and_where(open())
            .to_owned();
        let result = a.db.execute(&update).await.map_err(|e| a.error(e))?;
        Ok(result.rows_affected())
    }

    /// Gives up on the open letters (pending or reprocessing) in `scope`:
    /// they become `discarded`. Returns how many changed. A replayer's later
    /// resolve or reject of a discarded letter changes nothing.
    ///
    /// # Errors
    /// [`OutboxError::InvalidScope`] for a bad scope or one whose statuses
    /// are not open; database errors.
    ///
    /// # Cancel safety
    /// Cancel safe: one statement.
    pub async fn discard(&self, scope: &DeadLetterScope) -> Result<u64, OutboxError> {
        scope.validate()?;
        scope.require_statuses(
            &[DeadLetterStatus::Pending, DeadLetterStatus::Reprocessing],
            "discard",
        )?;
        let a = &self.admin;
        let now = a.dialect.now_millis();
        let update = Query::update()
            .table(a.tables.dead_letter.clone())
            .value(Column::Status, DeadLetterStatus::Discarded.as_str())
            .value(Column::Deadline, Option::<i64>::None)
            .value(Column::CompletedAt, now.clone())
            .cond_where(Cond::all().add(scope.condition(&now)).add(open()))
            .to_owned();
        let result =
            a.db.execute(&update)
                .instrument(tracing::debug_span!("outbox.dead_letter", op = "discard"))
                .await
                .map_err(|e| a.error(e))?;
        Ok(result.rows_affected())
    }

    /// Deletes resolved and discarded letters in `scope` that were completed
    /// at least `older_than` ago (database clock). Returns how many.
    ///
    /// # Errors
    /// [`OutboxError::InvalidScope`] for a bad scope or one whose statuses
    /// are open; database errors.
    ///
    /// # Cancel safety
    /// Cancel safe: one statement.
    pub async fn cleanup(
        &self,
        scope: &DeadLetterScope,
        older_than: Duration,
    ) -> Result<u64, OutboxError> {
        scope.validate()?;
        scope.require_statuses(
            &[DeadLetterStatus::Resolved, DeadLetterStatus::Discarded],
            "cleanup",
        )?;
        let a = &self.admin;
        let now = a.dialect.now_millis();
        let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX / 4);
        let delete = Query::delete()
            .from_table(a.tables.dead_letter.clone())
            .cond_where(
                Cond::all()
                    .add(scope.condition(&now))
                    .add(finished())
                    .add(Expr::col(Column::CompletedAt).lte(now.clone().sub(age))),
            )
            .to_owned();
        let result =
            a.db.execute(&delete)
                .instrument(tracing::debug_span!("outbox.dead_letter", op = "cleanup"))
                .await
                .map_err(|e| a.error(e))?;
        Ok(result.rows_affected())
    }

    /// Puts up to `limit` pending letters of `scope` (oldest first) back into
    /// their queues as new messages, with the same message id, payload,
    /// payload type and headers, and a new sequence number after the
    /// partition's existing messages; marks them resolved in the same
    /// transaction. Works without the queue registered in this process (it
    /// looks the partition up by queue name and number); an in-process
    /// outbox's sequencer is woken after the commit, any other picks the
    /// messages up at its next poll.
    ///
    /// # Errors
    /// [`OutboxError::InvalidScope`] for a bad scope, a limit outside 1 to
    /// 1,000 or a status filter other than pending;
    /// [`OutboxError::PartitionRowMissing`] when a letter's partition has no
    /// row; [`OutboxError::MessageStillQueued`] when a letter's message id is
    /// waiting for delivery already (in any queue);
    /// [`OutboxError::MessageIdInUse`] when another message with the id was
    /// delivered and is not yet vacuumed (try again after the next vacuum
    /// pass); database errors. Nothing is changed on error.
    ///
    /// # Cancel safety
    /// Cancel safe: one transaction, committed or not.
    pub async fn requeue(
        &self,
        scope: &DeadLetterScope,
        limit: u32,
    ) -> Result<Vec<Requeued>, OutboxError> {
        scope.validate()?;
        scope.require_statuses(&[DeadLetterStatus::Pending], "requeue")?;
        check_limit(limit, "the requeue limit")?;
        let span = tracing::debug_span!(
            "outbox.dead_letter",
            op = "requeue",
            count = tracing::field::Empty
        );
        async {
            for tries in 1..=CLAIM_TRIES {
                let done = match requeue::run(&self.admin, scope, limit).await {
                    // A deadlock with a vacuum pass or a worker: nothing was
                    // written; run it again.
                    Err(err) if err.is_retryable() && tries < CLAIM_TRIES => {
                        tracing::debug!(error = %err, "outbox requeue conflicted; trying again");
                        continue;
                    }
                    other => other?,
                };
                if let Some(done) = done {
                    tracing::Span::current().record("count", done.len());
                    if !done.is_empty() {
                        self.admin.notify();
                    }
                    return Ok(done);
                }
            }
            tracing::warn!("outbox requeue lost every race for its candidates; returning none");
            Ok(Vec::new())
        }
        .instrument(span)
        .await
    }
}

impl OutboxAdmin {
    /// The dead-letter API.
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self.clone())
    }
}

impl Outbox {
    /// The dead-letter API on this outbox's tables.
    pub fn dead_letters(&self) -> DeadLetters {
        self.admin().dead_letters()
    }
}
