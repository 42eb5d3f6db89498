//! The conformance suite: every case is written once, in `cases`, and run
//! against each backend by the entry files in `tests/` through [`suite!`].

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

pub mod cases;
mod harness;
mod metric_probe;
pub mod private_postgres;
mod recorder;

pub use harness::{Backend, TestDb};
pub use metric_probe::MetricProbe;
pub use recorder::{Received, Recorder, poll_until, wait_until};

/// Expands to one `#[tokio::test]` per case for one backend, so
/// `cargo test rollback_leaves_no_message` runs the case everywhere and a
/// failure names case and backend.
#[macro_export]
macro_rules! suite {
    ($backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(db) = $crate::TestDb::connect($backend, stringify!($case)).await {
                    $crate::cases::$case(db.clone()).await;
                    db.cleanup().await;
                }
            }
        )*
    };
}

/// Every case of the suite, for the backend entry files.
#[macro_export]
macro_rules! all_cases {
    ($backend:expr) => {
        $crate::suite!($backend;
            rollback_leaves_no_message,
            model_random_operations_match_the_model,
            order_per_partition_with_four_producers,
            partitions_taking_turns_for_connections_lose_and_reorder_nothing,
            no_loss_across_ten_thousand_messages,
            transactional_handler_writes_commit_exactly_once,
            leased_redelivers_after_lease_expiry_and_refuses_stale_ack,
            leased_worker_that_lost_its_lease_cannot_acknowledge,
            retry_then_success_keeps_order,
            unavailable_dependency_never_dead_letters,
            reject_dead_letters_and_partition_goes_on,
            panicking_and_hanging_handlers_count_as_retries,
            batch_retry_charges_only_the_failing_message,
            panicking_message_in_a_batch_is_the_only_one_charged,
            timeout_retry_charges_only_the_hanging_message,
            batch_reject_dead_letters_only_the_failing_message,
            failed_statement_error_is_recorded_not_the_aborted_transaction,
            transactional_handler_timeout_bounds_lock_waits_and_stop,
            vacuum_removes_processed_rows,
            stop_then_restart_resumes_without_redelivery,
            two_instances_share_partitions_without_duplicates,
            two_leased_instances_lose_nothing,
            bad_input_returns_typed_errors_and_changes_nothing,
            bad_configuration_fails_at_start,
            migrations_are_rerunnable_and_concurrent,
            upgrade_from_v1_keeps_every_message_in_flight,
            late_committed_message_is_not_skipped,
            long_open_producer_transaction_is_not_skipped,
            notifications_wake_another_instance_without_polling,
            quick_polls_after_activity_see_another_instances_commit,
            quick_polls_after_start_see_another_instances_commit,
            partitions_spread_over_instances_and_move_on_stop,
            three_processes_share_partitions_and_survive_a_kill,
            producer_and_consumer_processes,
            event_subscribers_get_filtered_events_and_a_full_one_is_dropped,
            message_handler_is_told_each_deliverys_queue_and_partition,
            failed_statement_in_handler_does_not_stall_partition,
            dead_letters_are_listed_counted_and_shown_by_scope,
            concurrent_replays_claim_disjoint_letters,
            expired_replay_claims_return_to_pending,
            discard_and_cleanup_remove_letters_by_scope,
            requeued_letter_is_delivered_after_the_partitions_messages,
            requeue_refuses_missing_partitions_and_queued_duplicates,
            concurrent_requeues_move_each_letter_once,
            requeue_after_message_id_reuse_delivers_both_and_stalls_nothing,
            requeue_refuses_an_id_waiting_in_another_partition,
            shrinking_partitions_refuses_until_the_removed_ones_are_drained,
            acknowledge_outside_the_sequenced_range_is_refused,
            duplicate_instance_name_is_refused_at_start,
            instance_whose_name_is_taken_while_running_stands_down,
            migrations_add_the_incarnation_column_to_old_tables,
            stats_report_backlog_cursor_retry_and_dead_letters,
            stats_count_each_waiting_message_once_while_sequencing,
            metrics_count_each_message_exactly_once,
            metrics_count_each_transactional_message_exactly_once,
            fault_worker_killed_repeatedly_under_load,
            fault_connections_terminated_mid_load,
            fault_flaky_handler_delays_only_its_partition,
            fault_poison_message_under_load,
            fault_long_transaction_held_open_during_load,
            notify_flood_is_coalesced_and_wakeups_stay_prompt,
            heartbeat_rows_of_gone_instances_are_deleted,
            sequencer_rolls_back_when_incoming_rows_were_taken,
            multi_primary_check_runs_and_finds_no_cluster,
            fault_sqlite_concurrent_writers,
            blocked_partition_does_not_stall_other_partitions,
            rejects_beyond_the_parameter_limit_are_all_dead_lettered,
            control_bytes_and_long_reasons_are_stored_sanitized,
            twenty_mib_of_dead_letters_are_recorded_in_chunks,
            unrecordable_outcome_blocks_the_partition_and_backs_off,
        );
    };
}
