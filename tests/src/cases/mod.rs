//! The suite's cases: each a plain `async fn` taking a [`TestDb`](crate::TestDb).

mod config;
mod enqueue;
mod failure;
mod leased;
mod ordering;
mod transactional;
mod vacuum;
mod wakeup;

pub use config::{bad_configuration_fails_at_start, migrations_are_rerunnable_and_concurrent};
pub use enqueue::{bad_input_returns_typed_errors_and_changes_nothing, rollback_leaves_no_message};
pub use failure::{
    panicking_and_hanging_handlers_count_as_retries, reject_dead_letters_and_partition_goes_on,
    retry_then_success_keeps_order,
};
pub use leased::{
    leased_redelivers_after_lease_expiry_and_refuses_stale_ack,
    leased_worker_that_lost_its_lease_cannot_acknowledge, two_leased_instances_lose_nothing,
};
pub use ordering::{
    late_committed_message_is_not_skipped, no_loss_across_ten_thousand_messages,
    order_per_partition_with_four_producers,
};
pub use transactional::{
    failed_statement_in_handler_does_not_stall_partition,
    stop_then_restart_resumes_without_redelivery, transactional_handler_writes_commit_exactly_once,
    two_instances_share_partitions_without_duplicates,
};
pub use vacuum::vacuum_removes_processed_rows;
pub use wakeup::notifications_wake_another_instance_without_polling;

use std::time::Duration;

/// How long a case waits for a condition before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);
