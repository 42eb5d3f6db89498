//! The suite's cases: each a plain `async fn` taking a [`TestDb`](crate::TestDb).

mod batch_failure;
mod config;
mod dead_letter;
mod delivery;
mod enqueue;
mod event;
mod failure;
mod fault;
mod handler_timeout;
mod hostile;
mod instance_name;
mod lease_hooks;
mod leased;
mod message_id_reuse;
mod metric;
mod model;
mod ordering;
mod ownership;
mod partition_independence;
mod process;
mod repartition;
mod requeue;
mod settlement_recording;
mod stats;
mod transactional;
mod upgrade;
mod vacuum;
mod wakeup;

pub(crate) use outbox_test_support::{PATIENCE, eventually};

pub use batch_failure::{
    batch_reject_dead_letters_only_the_failing_message,
    batch_retry_charges_only_the_failing_message,
    failed_statement_error_is_recorded_not_the_aborted_transaction,
    panicking_message_in_a_batch_is_the_only_one_charged,
    timeout_retry_charges_only_the_hanging_message,
};
pub use config::{bad_configuration_fails_at_start, migrations_are_rerunnable_and_concurrent};
pub use dead_letter::{
    concurrent_replays_claim_disjoint_letters, dead_letters_are_listed_counted_and_shown_by_scope,
    discard_and_cleanup_remove_letters_by_scope, expired_replay_claims_return_to_pending,
};
pub use delivery::message_handler_is_told_each_deliverys_queue_and_partition;
pub use enqueue::{bad_input_returns_typed_errors_and_changes_nothing, rollback_leaves_no_message};
pub use event::event_subscribers_get_filtered_events_and_a_full_one_is_dropped;
pub use failure::{
    panicking_and_hanging_handlers_count_as_retries, reject_dead_letters_and_partition_goes_on,
    retry_then_success_keeps_order, unavailable_dependency_never_dead_letters,
};
pub use fault::{
    fault_connections_terminated_mid_load, fault_flaky_handler_delays_only_its_partition,
    fault_long_transaction_held_open_during_load, fault_poison_message_under_load,
    fault_sqlite_concurrent_writers, fault_worker_killed_repeatedly_under_load,
};
pub use handler_timeout::transactional_handler_timeout_bounds_lock_waits_and_stop;
pub use hostile::{
    heartbeat_rows_of_gone_instances_are_deleted, multi_primary_check_runs_and_finds_no_cluster,
    notify_flood_is_coalesced_and_wakeups_stay_prompt,
    sequencer_rolls_back_when_incoming_rows_were_taken,
};
pub use instance_name::{
    duplicate_instance_name_is_refused_at_start,
    instance_whose_name_is_taken_while_running_stands_down,
    migrations_add_the_incarnation_column_to_old_tables,
};
pub use lease_hooks::acknowledge_outside_the_sequenced_range_is_refused;
pub use leased::{
    leased_redelivers_after_lease_expiry_and_refuses_stale_ack,
    leased_worker_that_lost_its_lease_cannot_acknowledge, two_leased_instances_lose_nothing,
};
pub use message_id_reuse::{
    requeue_after_message_id_reuse_delivers_both_and_stalls_nothing,
    requeue_refuses_an_id_waiting_in_another_partition,
};
pub use metric::{
    metrics_count_each_message_exactly_once, metrics_count_each_transactional_message_exactly_once,
};
pub use model::model_random_operations_match_the_model;
pub use ordering::{
    late_committed_message_is_not_skipped, long_open_producer_transaction_is_not_skipped,
    no_loss_across_ten_thousand_messages, order_per_partition_with_four_producers,
    partitions_taking_turns_for_connections_lose_and_reorder_nothing,
};
pub use ownership::partitions_spread_over_instances_and_move_on_stop;
pub use partition_independence::blocked_partition_does_not_stall_other_partitions;
pub use process::{
    producer_and_consumer_processes, three_processes_share_partitions_and_survive_a_kill,
};
pub use repartition::shrinking_partitions_refuses_until_the_removed_ones_are_drained;
pub use requeue::{
    concurrent_requeues_move_each_letter_once,
    requeue_refuses_missing_partitions_and_queued_duplicates,
    requeued_letter_is_delivered_after_the_partitions_messages,
};
pub use settlement_recording::{
    control_bytes_and_long_reasons_are_stored_sanitized,
    rejects_beyond_the_parameter_limit_are_all_dead_lettered,
    twenty_mib_of_dead_letters_are_recorded_in_chunks,
    unrecordable_outcome_blocks_the_partition_and_backs_off,
};
pub use stats::{
    stats_count_each_waiting_message_once_while_sequencing,
    stats_report_backlog_cursor_retry_and_dead_letters,
};
pub use transactional::{
    failed_statement_in_handler_does_not_stall_partition,
    stop_then_restart_resumes_without_redelivery, transactional_handler_writes_commit_exactly_once,
    two_instances_share_partitions_without_duplicates,
};
pub use upgrade::upgrade_from_v1_keeps_every_message_in_flight;
pub use vacuum::vacuum_removes_processed_rows;
pub use wakeup::{
    notifications_wake_another_instance_without_polling,
    quick_polls_after_activity_see_another_instances_commit,
    quick_polls_after_start_see_another_instances_commit,
};
