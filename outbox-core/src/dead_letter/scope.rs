//! Which dead letters an admin call acts on: status, scope and page.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use sea_orm::sea_query::extension::mysql::{IndexHintScope, MySqlSelectStatementExt};
use sea_orm::sea_query::{Alias, Cond, Condition, Expr, ExprTrait, LockBehavior, SelectStatement};

use crate::column::Column;
use crate::dialect::Dialect;
use crate::error::OutboxError;

/// Most ids one scope may name, and most letters one page or one claim holds.
pub const MAX_DEAD_LETTER_BATCH: u32 = 1000;

/// Where a dead letter is in its lifecycle:
/// `pending -> reprocessing -> resolved`, or `-> discarded`.
///
/// A `reprocessing` claim whose deadline has passed counts as `pending`
/// everywhere (listing, counting, filtering, claiming): a crashed admin's
/// claims come back on their own.
///
/// Serializes as its [`as_str`](Self::as_str) text (`"pending"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DeadLetterStatus {
    /// Waiting for an operator or a replay.
    Pending,
    /// Claimed by [`DeadLetters::replay`](crate::DeadLetters::replay) until its deadline.
    Reprocessing,
    /// Handled: resolved after a replay, or requeued into its queue.
    Resolved,
    /// Given up on.
    Discarded,
}

impl DeadLetterStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [DeadLetterStatus; 4] = [
        DeadLetterStatus::Pending,
        DeadLetterStatus::Reprocessing,
        DeadLetterStatus::Resolved,
        DeadLetterStatus::Discarded,
    ];

    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reprocessing => "reprocessing",
            Self::Resolved => "resolved",
            Self::Discarded => "discarded",
        }
    }

    /// Whether the letter still needs handling (pending or reprocessing).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Reprocessing)
    }

    /// The status as the admin API reports it: a claim past its deadline is pending.
    pub(crate) fn effective(
        stored: &str,
        deadline: Option<i64>,
        now: i64,
    ) -> Result<Self, OutboxError> {
        let status: Self = stored.parse()?;
        Ok(match (status, deadline) {
            (Self::Reprocessing, Some(deadline)) if deadline < now => Self::Pending,
            (Self::Reprocessing, None) => Self::Pending,
            (status, _) => status,
        })
    }

    /// The SQL condition for letters whose effective status is `self`.
    pub(crate) fn condition(self, now: &Expr) -> Condition {
        let status = Expr::col(Column::Status);
        match self {
            Self::Pending => claimable(now),
            Self::Reprocessing => Cond::all()
                .add(status.eq(Self::Reprocessing.as_str()))
                .add(Expr::col(Column::Deadline).gte(now.clone())),
            Self::Resolved | Self::Discarded => Cond::all().add(status.eq(self.as_str())),
        }
    }
}

impl fmt::Display for DeadLetterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterStatus {
    type Err = OutboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                OutboxError::InvalidScope(format!(
                    "unknown status {s:?}: use pending, reprocessing, resolved or discarded"
                ))
            })
    }
}

/// Letters that may be claimed: pending, or claimed with a deadline that has passed.
pub(crate) fn claimable(now: &Expr) -> Condition {
    Cond::any()
        .add(Expr::col(Column::Status).eq(DeadLetterStatus::Pending.as_str()))
        .add(
            Cond::all()
                .add(Expr::col(Column::Status).eq(DeadLetterStatus::Reprocessing.as_str()))
                .add(
                    Cond::any()
                        .add(Expr::col(Column::Deadline).is_null())
                        .add(Expr::col(Column::Deadline).lt(now.clone())),
                ),
        )
}

/// Letters not yet resolved or discarded.
pub(crate) fn open() -> Expr {
    Expr::col(Column::Status).is_in([
        DeadLetterStatus::Pending.as_str(),
        DeadLetterStatus::Reprocessing.as_str(),
    ])
}

/// Letters resolved or discarded.
pub(crate) fn finished() -> Expr {
    Expr::col(Column::Status).is_in([
        DeadLetterStatus::Resolved.as_str(),
        DeadLetterStatus::Discarded.as_str(),
    ])
}

/// Selects dead letters: every filter set must match (an unset one matches
/// everything; several statuses or ids match any of them).
///
/// ```
/// use outbox_core::{DeadLetterScope, DeadLetterStatus};
/// let scope = DeadLetterScope::all()
///     .queue("orders")
///     .partition(3)
///     .status(DeadLetterStatus::Pending)
///     .failed_after(1_767_225_600_000); // epoch ms, inclusive
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterScope {
    queue: Option<String>,
    partition: Option<u32>,
    payload_type: Option<String>,
    statuses: BTreeSet<DeadLetterStatus>,
    failed_after_ms: Option<i64>,
    failed_before_ms: Option<i64>,
    ids: Vec<i64>,
}

impl DeadLetterScope {
    /// Every dead letter.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only letters of this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only letters of this partition number (of every queue, unless a queue is set too).
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Only letters of this payload type.
    pub fn payload_type(mut self, payload_type: impl Into<String>) -> Self {
        self.payload_type = Some(payload_type.into());
        self
    }

    /// Adds a status; letters with any of the added statuses match. Default: any status.
    pub fn status(mut self, status: DeadLetterStatus) -> Self {
        self.statuses.insert(status);
        self
    }

    /// Only letters dead-lettered at or after this time (epoch milliseconds,
    /// database clock).
    pub fn failed_after(mut self, epoch_ms: i64) -> Self {
        self.failed_after_ms = Some(epoch_ms);
        self
    }

    /// Only letters dead-lettered strictly before this time (epoch milliseconds).
    pub fn failed_before(mut self, epoch_ms: i64) -> Self {
        self.failed_before_ms = Some(epoch_ms);
        self
    }

    /// Adds a dead-letter id; letters with any of the added ids match.
    pub fn id(mut self, id: i64) -> Self {
        self.ids.push(id);
        self
    }

    /// Adds several dead-letter ids.
    pub fn ids(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.ids.extend(ids);
        self
    }

    /// Whether no filter is set (the scope is every dead letter).
    pub fn is_unfiltered(&self) -> bool {
        *self == Self::default()
    }

    /// The statuses added with [`DeadLetterScope::status`].
    pub fn statuses(&self) -> impl Iterator<Item = DeadLetterStatus> + '_ {
        self.statuses.iter().copied()
    }

    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        if let (Some(after), Some(before)) = (self.failed_after_ms, self.failed_before_ms)
            && after >= before
        {
            return Err(OutboxError::InvalidScope(format!(
                "failed-after ({after}) must be earlier than failed-before ({before})"
            )));
        }
        if self.ids.len() > MAX_DEAD_LETTER_BATCH as usize {
            return Err(OutboxError::InvalidScope(format!(
                "{} ids given; name at most {MAX_DEAD_LETTER_BATCH} per call",
                self.ids.len()
            )));
        }
        Ok(())
    }

    /// Checks that the scope's statuses are only among `allowed` (an empty
    /// status filter is fine); `action` names the call in the message.
    pub(crate) fn require_statuses(
        &self,
        allowed: &[DeadLetterStatus],
        action: &str,
    ) -> Result<(), OutboxError> {
        match self.statuses.iter().find(|s| !allowed.contains(s)) {
            None => Ok(()),
            Some(status) => {
                let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                Err(OutboxError::InvalidScope(format!(
                    "{action} acts on {} dead letters only, not {status}: drop the status filter or use {}",
                    names.join(" or "),
                    names.join(" or ")
                )))
            }
        }
    }

    /// The scope as one SQL condition on the dead-letter table; `now` is the
    /// database clock.
    pub(crate) fn condition(&self, now: &Expr) -> Condition {
        let mut cond = Cond::all();
        if let Some(queue) = &self.queue {
            cond = cond.add(Expr::col(Column::QueueName).eq(queue.clone()));
        }
        if let Some(partition) = self.partition {
            cond = cond.add(Expr::col(Column::PartitionNo).eq(i64::from(partition)));
        }
        if let Some(payload_type) = &self.payload_type {
            cond = cond.add(Expr::col(Column::PayloadType).eq(payload_type.clone()));
        }
        if !self.statuses.is_empty() {
            let mut any = Cond::any();
            for status in &self.statuses {
                any = any.add(status.condition(now));
            }
            cond = cond.add(any);
        }
        if let Some(after) = self.failed_after_ms {
            cond = cond.add(Expr::col(Column::FailedAt).gte(after));
        }
        if let Some(before) = self.failed_before_ms {
            cond = cond.add(Expr::col(Column::FailedAt).lt(before));
        }
        if !self.ids.is_empty() {
            cond = cond.add(Expr::col(Column::Id).is_in(self.ids.iter().copied()));
        }
        cond
    }
}

/// One page of a listing: at most `limit` letters with ids after the cursor,
/// in id order (the order they were dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterPage {
    limit: u32,
    after: Option<i64>,
}

impl Default for DeadLetterPage {
    fn default() -> Self {
        Self::new(50)
    }
}

impl DeadLetterPage {
    /// The first page of `limit` letters (1 to 1,000; default 50).
    pub fn new(limit: u32) -> Self {
        Self { limit, after: None }
    }

    /// Continues after `cursor`, the [`DeadLetterList::next_cursor`](crate::DeadLetterList::next_cursor)
    /// of the previous page (a dead-letter id).
    pub fn cursor(mut self, cursor: i64) -> Self {
        self.after = Some(cursor);
        self
    }

    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The cursor, if any.
    pub fn after(&self) -> Option<i64> {
        self.after
    }

    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        check_limit(self.limit, "the page limit")
    }
}

/// Checks a batch or page size.
pub(crate) fn check_limit(limit: u32, what: &str) -> Result<(), OutboxError> {
    if (1..=MAX_DEAD_LETTER_BATCH).contains(&limit) {
        Ok(())
    } else {
        Err(OutboxError::InvalidScope(format!(
            "{what} is {limit}; use 1 to {MAX_DEAD_LETTER_BATCH}"
        )))
    }
}

/// Makes a candidate read a claim: locks the rows it returns with `SKIP
/// LOCKED` where the backend has row locks, so a concurrent claimer skips
/// them and takes the next ones.
///
/// On MySQL/MariaDB the read walks the primary key: planned through the
/// scope index with a filesort, InnoDB would lock every matching row, not
/// only the `LIMIT` returned, and a concurrent claimer would find nothing.
/// The hint is MySQL syntax; the other backends' builders leave it out.
pub(crate) fn lock_candidates(select: &mut SelectStatement, dialect: &dyn Dialect) {
    if let Some(lock) = dialect.partition_lock() {
        select.force_index(Alias::new("PRIMARY"), IndexHintScope::All);
        select.lock_with_behavior(lock, LockBehavior::SkipLocked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_refused() {
        for status in DeadLetterStatus::ALL {
            assert_eq!(
                status.as_str().parse::<DeadLetterStatus>().ok(),
                Some(status)
            );
        }
        assert!(matches!(
            "done".parse::<DeadLetterStatus>(),
            Err(OutboxError::InvalidScope(m)) if m.contains("pending")
        ));
    }

    #[test]
    fn expired_claims_count_as_pending() {
        let eff = |s, d| DeadLetterStatus::effective(s, d, 1000).ok();
        assert_eq!(
            eff("reprocessing", Some(999)),
            Some(DeadLetterStatus::Pending)
        );
        assert_eq!(
            eff("reprocessing", Some(1000)),
            Some(DeadLetterStatus::Reprocessing)
        );
        assert_eq!(eff("resolved", None), Some(DeadLetterStatus::Resolved));
    }

    #[test]
    fn bad_scopes_and_pages_are_refused() {
        assert!(DeadLetterScope::all().validate().is_ok());
        assert!(
            DeadLetterScope::all()
                .failed_after(10)
                .failed_before(10)
                .validate()
                .is_err()
        );
        assert!(DeadLetterScope::all().ids(0..1001).validate().is_err());
        assert!(DeadLetterPage::new(0).validate().is_err());
        assert!(DeadLetterPage::new(1001).validate().is_err());
        assert!(DeadLetterPage::new(1000).validate().is_ok());
        let scope = DeadLetterScope::all().status(DeadLetterStatus::Resolved);
        assert!(
            scope
                .require_statuses(&[DeadLetterStatus::Pending], "requeue")
                .is_err()
        );
        assert!(
            DeadLetterScope::all()
                .require_statuses(&[DeadLetterStatus::Pending], "requeue")
                .is_ok()
        );
    }
}
