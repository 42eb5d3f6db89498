//! Producers, workers and handler in this process; with `--backlog`, a
//! producer-only outbox first enqueues everything and the consuming outbox
//! then drains it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::BoxError;
use crate::args::Args;
use crate::clock::Clock;
use crate::db::BenchDb;
use crate::outboxes::{produce_into, start_consumer, start_producer, wait_all};
use crate::produce::Produced;
use crate::progress::spawn_commit_progress;
use crate::recorder::{Plan, Recorder};
use crate::report::{Run, peak_rss_mib};
use crate::soak;

/// Producers, workers and handler in this process.
pub(crate) async fn run(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    clock: Clock,
    payload_bytes: usize,
) -> Result<Run, BoxError> {
    let recorder = Arc::new(Recorder::new(plan.clone(), clock));
    let total = usize::try_from(args.messages)?;
    let (committed, progress) = {
        let recorder = recorder.clone();
        spawn_commit_progress(
            "enqueued",
            total,
            Some(Box::new(move || recorder.distinct())),
        )
    };
    let statements_before = bench.client_statements();
    let mut soak = None;
    let outcome = if args.backlog {
        backlog_in_process(
            args,
            bench,
            plan,
            clock,
            payload_bytes,
            &recorder,
            &committed,
        )
        .await
    } else {
        match start_consumer(args, bench, recorder.clone()).await {
            Ok(handle) => {
                let sampler = args
                    .soak_seconds
                    .zip(args.rate)
                    .map(|(seconds, rate)| soak::Sampler::start(bench, seconds, rate));
                let produced =
                    produce_into(args, bench, &handle, plan, clock, payload_bytes, &committed)
                        .await;
                if let Some(sampler) = sampler
                    && produced.is_ok()
                {
                    soak = Some(sampler.finish(bench).await);
                }
                let waited = match &produced {
                    Ok(_) => wait_all(args, &recorder).await,
                    Err(_) => false,
                };
                let statements = bench.client_statements() - statements_before;
                handle.stop().await;
                produced.map(|produced| (produced, waited, statements, None, None))
            }
            Err(err) => Err(err),
        }
    };
    progress.abort();
    let (produced, waited, statements, drain_start, drain_peak_rss_mib) = outcome?;
    Ok(Run {
        produced,
        delivered: recorder.take(),
        waited,
        statements,
        drain_start,
        drain_peak_rss_mib,
        consumer: None,
        soak: soak.transpose()?,
    })
}

/// What a message phase returns before its deliveries are collected.
type Phase = (Produced, bool, u64, Option<u32>, Option<f64>);

/// `--backlog` in one process: a producer-only outbox enqueues everything,
/// stops, then the consuming outbox starts and drains.
async fn backlog_in_process(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    clock: Clock,
    payload_bytes: usize,
    recorder: &Arc<Recorder>,
    committed: &Arc<AtomicUsize>,
) -> Result<Phase, BoxError> {
    let statements_before = bench.client_statements();
    let producer = start_producer(args, bench).await?;
    let produced = produce_into(
        args,
        bench,
        &producer,
        plan,
        clock,
        payload_bytes,
        committed,
    )
    .await;
    producer.stop().await;
    let produced = produced?;
    eprintln!(
        "outbox-bench: backlog of {} enqueued; starting the workers",
        args.messages
    );
    // From here VmHWM counts the drain only (it starts again from the
    // current RSS), when the kernel lets us reset it.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let drain_start = clock.now();
    let handle = start_consumer(args, bench, recorder.clone()).await?;
    let waited = wait_all(args, recorder).await;
    let statements = bench.client_statements() - statements_before;
    handle.stop().await;
    let drain_peak = if reset { peak_rss_mib() } else { None };
    Ok((produced, waited, statements, Some(drain_start), drain_peak))
}
