//! The outboxes a run starts: the consuming one (a queue `bench` with its
//! workers) and the producer-only one, and the producers that feed them.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use outbox_core::{OutboxBuilder, OutboxHandle, Queue};

use crate::BoxError;
use crate::args::{Args, ModeArg};
use crate::clock::Clock;
use crate::db::BenchDb;
use crate::produce::{self, OutboxSink, Produced};
use crate::recorder::{LeasedBench, Plan, Recorder, TransactionalBench};

/// The builder every outbox of the run starts from: the run's tables and
/// profile, and the poll interval only if `--poll-interval-ms` was given.
fn builder(args: &Args, bench: &BenchDb) -> OutboxBuilder {
    let builder = OutboxBuilder::new(bench.db.clone(), bench.dialect.clone())
        .table_prefix(bench.prefix.clone())
        .profile(args.profile.profile())
        .listen(!args.no_listen);
    match args.poll_interval_ms {
        Some(ms) => builder.poll_interval(Duration::from_millis(ms)),
        None => builder,
    }
}

/// Builds and starts the consuming outbox: one queue `bench` in the chosen
/// mode, with its workers.
pub(crate) async fn start_consumer(
    args: &Args,
    bench: &BenchDb,
    recorder: Arc<Recorder>,
) -> Result<OutboxHandle, BoxError> {
    let queue = match args.mode {
        ModeArg::Leased => Queue::leased("bench", args.partitions, LeasedBench(recorder)),
        ModeArg::Transactional => {
            Queue::transactional("bench", args.partitions, TransactionalBench(recorder))
        }
    };
    let handle = builder(args, bench)
        .queue(queue)
        .run_workers(true)
        .start()
        .await?;
    Ok(handle)
}

/// Builds and starts a producer-only outbox: no worker runs, enqueue knows
/// the queue's partitions (and sends `pg_notify` on PostgreSQL).
pub(crate) async fn start_producer(args: &Args, bench: &BenchDb) -> Result<OutboxHandle, BoxError> {
    let handle = builder(args, bench)
        .queue(Queue::produce_only("bench", args.partitions))
        .run_workers(false)
        .start()
        .await?;
    Ok(handle)
}

/// Runs the producers against `handle`'s outbox.
pub(crate) async fn produce_into(
    args: &Args,
    bench: &BenchDb,
    handle: &OutboxHandle,
    plan: &Plan,
    clock: Clock,
    payload_bytes: usize,
    committed: &Arc<AtomicUsize>,
) -> Result<Produced, BoxError> {
    let sink = Arc::new(OutboxSink {
        outbox: handle.outbox().clone(),
        payload_bytes,
        keys: (!args.hot_key).then(|| produce::keys_per_producer(args.partitions)),
    });
    produce::run(
        &bench.db,
        sink,
        plan,
        args.batch,
        args.rate,
        committed.clone(),
        clock,
    )
    .await
}

/// How long to wait for the backlog after the last commit: at least 60 s,
/// or 10 ms per message.
pub(crate) fn wait_timeout(args: &Args) -> Duration {
    Duration::from_secs(60).max(Duration::from_millis(args.messages.saturating_mul(10)))
}

/// Waits for every delivery, up to [`wait_timeout`]; false on timeout.
pub(crate) async fn wait_all(args: &Args, recorder: &Recorder) -> bool {
    let timeout = wait_timeout(args);
    let waited = tokio::time::timeout(timeout, recorder.wait_all())
        .await
        .is_ok();
    if !waited {
        eprintln!(
            "outbox-bench: timed out after {:.0} s with {}/{} delivered",
            timeout.as_secs_f64(),
            recorder.distinct(),
            args.messages
        );
    }
    waited
}
