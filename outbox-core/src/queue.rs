//! The configuration of one queue: partitions, mode, handler, lease, retry.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConfigError, OutboxError};
use crate::handler::{LeasedHandler, TransactionalHandler};
use crate::retry::RetryPolicy;

/// Most partitions a queue may have.
pub const MAX_PARTITIONS: u32 = 4096;
/// Longest queue name, in bytes.
pub const MAX_QUEUE_NAME_LEN: usize = 64;
/// Longest lease (and so handler timeout) a queue may have: 24 hours.
pub(crate) const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// How a queue's messages reach its handler.
#[derive(Clone)]
pub(crate) enum Mode {
    /// In the transaction that holds the partition: exactly once in the database.
    Transactional(Arc<dyn TransactionalHandler>),
    /// Outside any transaction, under a lease: at least once.
    Leased(Arc<dyn LeasedHandler>),
    /// This process only enqueues; another process runs the handler.
    ProduceOnly,
}

/// One queue: its name, partition count, delivery mode and policies.
///
/// ```
/// # use outbox_core::{Queue, LeasedHandler, Batch, BatchResult};
/// # struct Publish;
/// # #[async_trait::async_trait]
/// # impl LeasedHandler for Publish {
/// #     async fn handle(&self, _: &Batch) -> BatchResult { BatchResult::success() }
/// # }
/// use std::time::Duration;
/// let queue = Queue::leased("orders", 8, Publish)
///     .lease(Duration::from_secs(30))
///     .batch_size(50);
/// ```
#[derive(Clone)]
pub struct Queue {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) mode: Mode,
    /// `None`: the profile's batch size, filled in at start.
    pub(crate) batch_size: Option<u32>,
    pub(crate) handler_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) lease_headroom: Duration,
    pub(crate) retry: RetryPolicy,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Transactional(_) => "transactional",
            Mode::Leased(_) => "leased",
            Mode::ProduceOnly => "produce-only",
        };
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("partitions", &self.partitions)
            .field("mode", &mode)
            .field("batch_size", &self.batch_size)
            .field("handler_timeout", &self.handler_timeout)
            .field("lease", &self.lease)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Queue {
    fn new(name: impl Into<String>, partitions: u32, mode: Mode) -> Self {
        Self {
            name: name.into(),
            partitions,
            mode,
            batch_size: None,
            handler_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            lease_headroom: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        }
    }

    /// A queue in transactional mode: the handler runs in the transaction that
    /// locks the partition and advances its cursor, so its database writes
    /// commit with the acknowledgement, exactly once.
    pub fn transactional(
        name: impl Into<String>,
        partitions: u32,
        handler: impl TransactionalHandler,
    ) -> Self {
        Self::new(name, partitions, Mode::Transactional(Arc::new(handler)))
    }

    /// A queue in leased mode: the handler runs outside any transaction under
    /// a lease with a fencing token; delivery is at least once.
    pub fn leased(name: impl Into<String>, partitions: u32, handler: impl LeasedHandler) -> Self {
        Self::new(name, partitions, Mode::Leased(Arc::new(handler)))
    }

    /// A queue this process only enqueues to; another process handles it.
    pub fn produce_only(name: impl Into<String>, partitions: u32) -> Self {
        Self::new(name, partitions, Mode::ProduceOnly)
    }

    /// Messages handed to the handler at most per call. Default: the
    /// profile's (100 in [`Profile::default`](crate::Profile)), range 1 to 10,000.
    pub fn batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// How long one handler call may run before it is cancelled and counted
    /// as a retry. Default 30 s; at least 1 ms, and the lease must cover it
    /// plus the headroom. In transactional mode each statement the handler
    /// runs is bounded by it on the server too (PostgreSQL, MySQL/MariaDB),
    /// so a handler waiting on a row lock ends and its transaction rolls
    /// back rather than holding the partition.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// How long a lease on a partition lasts without renewal: in leased mode
    /// the handler runs under it; in both modes it is how long a crashed
    /// instance keeps its partitions. Default 60 s, at most 24 h; must be at
    /// least the handler timeout plus the headroom (in transactional mode
    /// too: a handler that outlives the lease can have its batch taken over
    /// by another instance and rolled back, again and again).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Leased mode: how long before a lease expires a running handler is
    /// cancelled if the lease could not be renewed. Default 2 s.
    pub fn lease_headroom(mut self, headroom: Duration) -> Self {
        self.lease_headroom = headroom;
        self
    }

    /// The retry policy. Default [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages per handler call (after start, the profile's when unset).
    pub(crate) fn batch_limit(&self) -> u32 {
        self.batch_size.unwrap_or(100)
    }

    /// The queue's partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        validate_queue_name(&self.name)?;
        let queue = || self.name.clone();
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(ConfigError::Partitions {
                queue: queue(),
                partitions: self.partitions,
            }
            .into());
        }
        if let Some(batch_size) = self.batch_size
            && (batch_size == 0 || batch_size > 10_000)
        {
            return Err(ConfigError::BatchSize {
                queue: queue(),
                batch_size,
            }
            .into());
        }
        if self.handler_timeout.is_zero() {
            return Err(ConfigError::ZeroHandlerTimeout { queue: queue() }.into());
        }
        if self.lease > MAX_LEASE {
            return Err(ConfigError::LeaseTooLong {
                queue: queue(),
                lease: self.lease,
            }
            .into());
        }
        if !matches!(self.mode, Mode::ProduceOnly)
            && self.lease < self.handler_timeout.saturating_add(self.lease_headroom)
        {
            return Err(ConfigError::LeaseShorterThanHandlerTimeout {
                queue: queue(),
                lease: self.lease,
                handler_timeout: self.handler_timeout,
                headroom: self.lease_headroom,
            }
            .into());
        }
        if !(0.0..=1.0).contains(&self.retry.jitter) {
            return Err(ConfigError::RetryJitter {
                queue: queue(),
                jitter: self.retry.jitter,
            }
            .into());
        }
        if self.retry.base > self.retry.cap {
            return Err(ConfigError::RetryBaseOverCap {
                queue: queue(),
                base: self.retry.base,
                cap: self.retry.cap,
            }
            .into());
        }
        Ok(())
    }
}

/// Checks a queue name: 1 to 64 bytes of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_queue_name(name: &str) -> Result<(), OutboxError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_QUEUE_NAME_LEN {
        Some("it is longer than 64 bytes")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Some("use only letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(OutboxError::InvalidQueueName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_checked() {
        assert!(validate_queue_name("orders.v1-eu_2").is_ok());
        for bad in ["", "a b", "x'; drop table y", &"q".repeat(65)] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lease_must_cover_the_timeout_in_both_modes_and_stay_bounded() {
        struct Nop;
        #[async_trait::async_trait]
        impl crate::TransactionalHandler for Nop {
            async fn handle(
                &self,
                _: &sea_orm::DatabaseTransaction,
                _: &crate::Batch,
            ) -> crate::BatchResult {
                crate::BatchResult::success()
            }
        }
        let queue = || Queue::transactional("q", 1, Nop);
        assert!(queue().validate().is_ok());
        assert!(
            queue()
                .handler_timeout(Duration::from_secs(59))
                .validate()
                .is_err()
        );
        assert!(queue().lease(MAX_LEASE).validate().is_ok());
        assert!(
            queue()
                .lease(MAX_LEASE + Duration::from_secs(1))
                .validate()
                .is_err()
        );
        // No overflow panic on absurd durations: an error.
        assert!(queue().handler_timeout(Duration::MAX).validate().is_err());
        // A producer-only queue has no handler to time.
        assert!(
            Queue::produce_only("q", 1)
                .handler_timeout(Duration::from_secs(600))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn partition_counts_are_checked() {
        assert!(Queue::produce_only("q", 0).validate().is_err());
        assert!(
            Queue::produce_only("q", MAX_PARTITIONS + 1)
                .validate()
                .is_err()
        );
        assert!(Queue::produce_only("q", MAX_PARTITIONS).validate().is_ok());
    }
}
