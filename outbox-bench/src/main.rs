//! `outbox-bench`: runs one benchmark scenario against a real database and
//! prints one JSON object as the last line of stdout (design §9, style rule 15).
//!
//! ```text
//! cargo run --release -p outbox-bench -- --backend postgres --messages 20000 --batch 100 --baseline
//! cargo run --release -p outbox-bench -- --backend postgres --idle-seconds 5 --partitions 64
//! cargo run --release -p outbox-bench -- --backend postgres --messages 1000000 --batch 1000 --backlog
//! cargo run --release -p outbox-bench -- --backend mysql --split-process --rate 200 --messages 6000 --profile low_latency
//! cargo run --release -p outbox-bench -- --backend postgres --mode transactional --soak-seconds 120 --rate 200
//! ```
//!
//! Each run works under a fresh table prefix (`b<10 hex>_`), migrates, and
//! drops its tables at the end. Progress, once a second, and a summary table
//! go to stderr. The exit code is 1 when a message was lost or delivered out
//! of order, or delivered twice in transactional mode; 2 on an error.
//!
//! JSON keys (rates in messages per second, latencies in milliseconds from
//! the producer's commit returning to the handler's first call with the
//! message, clamped at 0):
//! `backend`, `mode`, `messages`, `partitions`, `batch`, `producers`,
//! `payload_bytes`, `rate` (null: as fast as possible), `profile`,
//! `ping_idle_secs` (null: the pool pings on every acquire),
//! `metrics_recorder` (a Prometheus recorder was installed),
//! `split_process`, `backlog`,
//! `enqueue_msgs_per_sec` (messages ÷ time from the first producer's start to
//! the last commit), `e2e_msgs_per_sec` (delivered ÷ time from the first
//! producer's start to the last first delivery), `drain_msgs_per_sec`
//! (`--backlog`: delivered ÷ time from the consuming outbox's start to the
//! last first delivery), `latency_p50_ms`,
//! `latency_p95_ms`, `latency_p99_ms`, `latency_max_ms`, `delivered`
//! (distinct), `lost`, `duplicates`, `order_violations`, `enqueue_retries`,
//! `timed_out`, `client_statements_per_msg` (statements the pools sent from
//! the first enqueue to the last delivery, per message, without
//! BEGIN/COMMIT; both processes with `--split-process`),
//! `baseline_rows_per_sec` and `e2e_vs_baseline` (with
//! `--baseline`), `idle_seconds`, `idle_db_statements_per_sec` (server side;
//! on PostgreSQL without pg_stat_statements it is transactions from
//! pg_stat_database, see `idle_db_counter`; null on SQLite),
//! `idle_db_counter`, `idle_client_statements_per_sec`, `peak_rss_mib`
//! (`VmHWM` of this process: the parent with `--split-process`),
//! `drain_peak_rss_mib` (`--backlog` in one process: `VmHWM` reset when the
//! drain starts, so it counts from the RSS left by the enqueue phase),
//! `bench_tracking_mib` (estimate of this process's own per-message
//! tracking: commit times and first-delivery times, 4 bytes each a message;
//! subtract it from the RSS to judge the library), and with
//! `--split-process` `consumer_peak_rss_mib` and
//! `consumer_bench_tracking_mib` (the child running the workers).
//!
//! `--soak-seconds T --rate R` sends R messages per second for T seconds
//! and adds `soak_seconds`, `table_rows_start`, `table_rows_end`,
//! `table_bytes_start`, `table_bytes_end` (every outbox table, after the
//! first tenth of the run and at its end) and `rss_mib_start`,
//! `rss_mib_end` (`VmRSS`); see `soak.rs` for how each backend is measured.
//! Between the same two samples it counts `row_writes_per_msg` (rows
//! inserted, updated and deleted in the outbox tables per message sent) and
//! on PostgreSQL `wal_bytes_per_msg`; with `--baseline`,
//! `baseline_wal_bytes_per_row` (WAL of the baseline's inserts per row) and
//! `wal_vs_baseline`. See `writes.rs` for each backend's counter.
//!
//! `--idle-seconds T` starts the outbox with no traffic, lets it settle (1 s;
//! 11 s when the counter is pg_stat_database, whose counts show up late, see
//! `idle.rs`), then counts statements over T seconds; no messages are sent.
//!
//! `--backlog` enqueues everything through a producer-only outbox
//! (`run_workers(false)`, `Queue::produce_only`) with no worker running, then
//! starts the consuming outbox and drains. `--split-process` runs the workers
//! and the handler in a child process (see `split.rs`); both combine.
//! `--profile` picks `outbox_core::Profile`; the bench sets no worker setting
//! of its own unless `--poll-interval-ms` is given.

mod args;
mod clock;
mod db;
mod idle;
mod produce;
mod recorder;
mod soak;
mod split;
mod writes;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use outbox_core::sea_orm::ConnectionTrait;
use outbox_core::{OutboxBuilder, OutboxHandle, Queue};
use serde::Serialize;

use crate::args::{Args, BackendArg, ModeArg, RoleArg};
use crate::clock::{Clock, NEVER, secs_between};
use crate::db::BenchDb;
use crate::produce::{BaselineSink, OutboxSink, Produced};
use crate::recorder::{Deliveries, LeasedBench, Plan, Recorder, TransactionalBench};
use crate::split::{Consumer, ConsumerSummary};

/// The error type of the whole binary.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The single JSON line. Fields serialize in this order.
#[derive(Debug, Default, Serialize)]
struct Report {
    backend: &'static str,
    mode: &'static str,
    messages: u64,
    partitions: u32,
    batch: u32,
    producers: u32,
    hot_key: bool,
    payload_bytes: u64,
    rate: Option<f64>,
    profile: &'static str,
    ping_idle_secs: Option<u64>,
    metrics_recorder: bool,
    split_process: bool,
    backlog: bool,
    enqueue_msgs_per_sec: Option<f64>,
    e2e_msgs_per_sec: Option<f64>,
    drain_msgs_per_sec: Option<f64>,
    latency_p50_ms: Option<f64>,
    latency_p95_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    order_violations: u64,
    enqueue_retries: u64,
    timed_out: bool,
    client_statements_per_msg: Option<f64>,
    baseline_rows_per_sec: Option<f64>,
    e2e_vs_baseline: Option<f64>,
    idle_seconds: Option<f64>,
    idle_db_statements_per_sec: Option<f64>,
    idle_db_counter: Option<&'static str>,
    idle_client_statements_per_sec: Option<f64>,
    peak_rss_mib: Option<f64>,
    drain_peak_rss_mib: Option<f64>,
    bench_tracking_mib: Option<f64>,
    consumer_peak_rss_mib: Option<f64>,
    consumer_bench_tracking_mib: Option<f64>,
    soak_seconds: Option<f64>,
    table_rows_start: Option<u64>,
    table_rows_end: Option<u64>,
    table_bytes_start: Option<u64>,
    table_bytes_end: Option<u64>,
    rss_mib_start: Option<f64>,
    rss_mib_end: Option<f64>,
    row_writes_per_msg: Option<f64>,
    wal_bytes_per_msg: Option<f64>,
    baseline_wal_bytes_per_row: Option<f64>,
    wal_vs_baseline: Option<f64>,
}

impl Report {
    /// Whether the run broke a guarantee.
    fn failed(&self, mode: ModeArg) -> bool {
        self.lost > 0
            || self.order_violations > 0
            || (mode == ModeArg::Transactional && self.duplicates > 0)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Err(err) = args.validate() {
        eprintln!("outbox-bench: {err}");
        return ExitCode::from(2);
    }
    if let (Some(seconds), Some(rate)) = (args.soak_seconds, args.rate) {
        args.messages = soak::messages(seconds, rate);
    }
    // Kept alive for the whole run: dropping the handle keeps the recorder
    // installed, but holding it makes the intent plain.
    let _metrics = if args.metrics_recorder {
        match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(err) => {
                eprintln!("outbox-bench: cannot install the metrics recorder: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    if args.role == Some(RoleArg::Consumer) {
        return match split::consumer(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("outbox-bench: consumer: error: {err}");
                ExitCode::from(2)
            }
        };
    }
    match run(&args).await {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => {
                summary(&line);
                println!("{line}");
                if report.failed(args.mode) {
                    eprintln!("outbox-bench: FAILED: lost, reordered or duplicated messages");
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(err) => {
                eprintln!("outbox-bench: cannot encode the report: {err}");
                ExitCode::from(2)
            }
        },
        Err(err) => {
            eprintln!("outbox-bench: error: {err}");
            ExitCode::from(2)
        }
    }
}

/// Connects, runs the scenario, and always cleans up after a connection.
async fn run(args: &Args) -> Result<Report, BoxError> {
    let bench = BenchDb::connect(args).await?;
    eprintln!(
        "outbox-bench: {} ({}), table prefix {}",
        args.backend.name(),
        db::redact(&bench.url),
        bench.prefix
    );
    let result = scenario(args, &bench).await;
    bench.print_statement_tally(args.messages);
    bench.cleanup().await;
    let mut report = result?;
    report.peak_rss_mib = peak_rss_mib();
    Ok(report)
}

async fn scenario(args: &Args, bench: &BenchDb) -> Result<Report, BoxError> {
    bench.migrate().await?;
    if args.soak_seconds.is_some() {
        writes::prepare(bench).await?;
    }
    let mut report = Report {
        backend: args.backend.name(),
        mode: args.mode.name(),
        messages: args.messages,
        partitions: args.partitions,
        batch: args.batch,
        producers: args.producers,
        hot_key: args.hot_key,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
        profile: args.profile.name(),
        ping_idle_secs: args.ping_idle_secs,
        metrics_recorder: args.metrics_recorder,
        split_process: args.split_process,
        backlog: args.backlog,
        soak_seconds: args.soak_seconds,
        ..Report::default()
    };
    if let Some(seconds) = args.idle_seconds {
        report.messages = 0;
        report.idle_seconds = Some(seconds);
        let probe = idle::Probe::connect(bench).await?;
        let recorder = Arc::new(Recorder::new(
            Plan::new(0, args.producers),
            Clock::monotonic(),
        ));
        let handle = start_consumer(args, bench, recorder).await?;
        let settle = idle::Probe::settle(probe.as_ref());
        eprintln!(
            "outbox-bench: idle: started, settling for {} s",
            settle.as_secs_f64()
        );
        tokio::time::sleep(settle).await;
        let cost = idle::measure(bench, probe, seconds).await;
        handle.stop().await;
        let cost = cost?;
        report.idle_db_statements_per_sec = cost.db_per_sec.map(round3);
        report.idle_db_counter = cost.counter;
        report.idle_client_statements_per_sec = Some(round3(cost.client_per_sec));
        return Ok(report);
    }

    let plan = Plan::new(args.messages, args.producers);
    let payload_bytes = usize::try_from(args.payload_bytes)?;
    if args.baseline {
        let (rows_per_sec, wal_per_row) = baseline(args, bench, &plan, payload_bytes).await?;
        report.baseline_rows_per_sec = Some(round3(rows_per_sec));
        report.baseline_wal_bytes_per_row = wal_per_row.map(round3);
    }

    let clock = if args.split_process {
        Clock::wall()
    } else {
        Clock::monotonic()
    };
    let run = if args.split_process {
        split_process(args, bench, &plan, clock, payload_bytes).await?
    } else {
        in_process(args, bench, &plan, clock, payload_bytes).await?
    };
    fill(&mut report, args, run);
    Ok(report)
}

/// What one message phase produced, for [`fill`].
struct Run {
    produced: Produced,
    delivered: Deliveries,
    /// Every message arrived before the timeout.
    waited: bool,
    /// Statements sent by the pools from the first enqueue to the last delivery.
    statements: u64,
    /// `--backlog`: when the consuming outbox was started.
    drain_start: Option<u32>,
    /// `--backlog` in one process: the peak RSS counted from the drain's start.
    drain_peak_rss_mib: Option<f64>,
    /// `--split-process`: what the child said about itself.
    consumer: Option<ConsumerSummary>,
    /// `--soak-seconds`: the tables and memory at a tenth and at the end.
    soak: Option<soak::Figures>,
}

/// Producers, workers and handler in this process.
async fn in_process(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    clock: Clock,
    payload_bytes: usize,
) -> Result<Run, BoxError> {
    let recorder = Arc::new(Recorder::new(plan.clone(), clock));
    let total = usize::try_from(args.messages)?;
    let committed = Arc::new(AtomicUsize::new(0));
    let progress = {
        let committed = committed.clone();
        let recorder = recorder.clone();
        spawn_progress(
            "enqueued",
            total,
            move || committed.load(Ordering::Relaxed),
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

/// Producers in this process with a producer-only outbox, workers and
/// handler in a child process (`split.rs`).
async fn split_process(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    clock: Clock,
    payload_bytes: usize,
) -> Result<Run, BoxError> {
    let mut consumer = None;
    if !args.backlog {
        let mut child = Consumer::spawn(args, bench, clock)?;
        child.ready().await?;
        consumer = Some(child);
    }
    let total = usize::try_from(args.messages)?;
    let committed = Arc::new(AtomicUsize::new(0));
    let progress = {
        let committed = committed.clone();
        spawn_progress(
            "enqueued",
            total,
            move || committed.load(Ordering::Relaxed),
            None,
        )
    };
    let statements_before = bench.client_statements();
    let producer = start_producer(args, bench).await;
    let produced = match producer {
        Ok(producer) => {
            let produced = produce_into(
                args,
                bench,
                &producer,
                plan,
                clock,
                payload_bytes,
                &committed,
            )
            .await;
            producer.stop().await;
            produced
        }
        Err(err) => Err(err),
    };
    progress.abort();
    let produced = produced?;
    let statements = bench.client_statements() - statements_before;
    let consumer = match consumer {
        Some(consumer) => consumer,
        None => {
            eprintln!(
                "outbox-bench: backlog of {} enqueued; starting the consumer process",
                args.messages
            );
            Consumer::spawn(args, bench, clock)?
        }
    };
    let (summary, delivered) = consumer.finish(wait_timeout(args)).await?;
    Ok(Run {
        produced,
        delivered,
        waited: !summary.stopped_early,
        statements: statements + summary.statements,
        drain_start: args.backlog.then_some(summary.started_us),
        drain_peak_rss_mib: None,
        consumer: Some(summary),
        soak: None,
    })
}

/// The report's message figures from a run.
fn fill(report: &mut Report, args: &Args, run: Run) {
    let Run {
        produced,
        delivered,
        waited,
        statements,
        drain_start,
        drain_peak_rss_mib,
        consumer,
        soak,
    } = run;
    // Turn first-delivery times into latencies in place: no second table
    // of a million entries.
    let mut times = delivered.first;
    let mut last_delivery: Option<u32> = None;
    let mut index = 0;
    for commits in &produced.commits {
        for &commit in commits {
            if let Some(slot) = times.get_mut(index)
                && *slot != NEVER
            {
                last_delivery = last_delivery.max(Some(*slot));
                *slot = slot.saturating_sub(commit);
            }
            index += 1;
        }
    }
    times.truncate(index);
    let tracking = produced.tracking_bytes()
        + (times.capacity() * std::mem::size_of::<u32>()) as u64
        + u64::from(args.partitions) * u64::from(args.producers) * 32;
    times.retain(|&t| t != NEVER);
    times.sort_unstable();
    let latencies = times;
    let distinct = latencies.len() as u64;
    let n = args.messages as f64;
    let enqueue_secs = secs_between(produced.start, produced.last_commit());
    report.enqueue_msgs_per_sec = (enqueue_secs > 0.0).then(|| round3(n / enqueue_secs));
    let rate_since = |from: Option<u32>| {
        let (from, last) = (from?, last_delivery?);
        let secs = secs_between(from, last);
        (secs > 0.0).then(|| round3(distinct as f64 / secs))
    };
    report.e2e_msgs_per_sec = rate_since(Some(produced.start));
    report.drain_msgs_per_sec = rate_since(drain_start);
    report.latency_p50_ms = percentile_ms(&latencies, 50.0);
    report.latency_p95_ms = percentile_ms(&latencies, 95.0);
    report.latency_p99_ms = percentile_ms(&latencies, 99.0);
    report.latency_max_ms = percentile_ms(&latencies, 100.0);
    report.delivered = distinct;
    report.lost = args.messages.saturating_sub(distinct);
    report.duplicates = delivered
        .deliveries
        .saturating_sub(distinct + delivered.unknown);
    report.order_violations = delivered.order_violations;
    report.enqueue_retries = produced.retries;
    report.timed_out = !waited;
    report.client_statements_per_msg = Some(round3(statements as f64 / n));
    report.e2e_vs_baseline = report
        .baseline_rows_per_sec
        .zip(report.e2e_msgs_per_sec)
        .and_then(|(baseline, e2e)| (baseline > 0.0).then(|| round3(e2e / baseline)));
    report.drain_peak_rss_mib = drain_peak_rss_mib;
    report.bench_tracking_mib = Some(mib(tracking));
    if let Some(consumer) = consumer {
        report.consumer_peak_rss_mib = consumer.peak_rss_mib;
        report.consumer_bench_tracking_mib = Some(mib(consumer.tracking_bytes));
    }
    if let Some(soak) = soak {
        report.table_rows_start = Some(soak.table_rows_start);
        report.table_rows_end = Some(soak.table_rows_end);
        report.table_bytes_start = Some(soak.table_bytes_start);
        report.table_bytes_end = Some(soak.table_bytes_end);
        report.rss_mib_start = soak.rss_mib_start;
        report.rss_mib_end = soak.rss_mib_end;
        report.row_writes_per_msg = soak.row_writes_per_msg.map(round3);
        report.wal_bytes_per_msg = soak.wal_bytes_per_msg.map(round3);
        report.wal_vs_baseline = report
            .wal_bytes_per_msg
            .zip(report.baseline_wal_bytes_per_row)
            .and_then(|(wal, base)| (base > 0.0).then(|| round3(wal / base)));
        // A soak runs at a set rate: its e2e rate is that rate, not a
        // throughput to hold against the baseline's.
        report.e2e_vs_baseline = None;
    }
    if delivered.unknown > 0 {
        eprintln!(
            "outbox-bench: {} deliveries were not messages of this run",
            delivered.unknown
        );
    }
}

fn mib(bytes: u64) -> f64 {
    round3(bytes as f64 / (1024.0 * 1024.0))
}

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
async fn start_producer(args: &Args, bench: &BenchDb) -> Result<OutboxHandle, BoxError> {
    let handle = builder(args, bench)
        .queue(Queue::produce_only("bench", args.partitions))
        .run_workers(false)
        .start()
        .await?;
    Ok(handle)
}

/// Runs the producers against `handle`'s outbox.
async fn produce_into(
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
fn wait_timeout(args: &Args) -> Duration {
    Duration::from_secs(60).max(Duration::from_millis(args.messages.saturating_mul(10)))
}

/// Waits for every delivery, up to [`wait_timeout`]; false on timeout.
async fn wait_all(args: &Args, recorder: &Recorder) -> bool {
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

/// Inserts the same rows into a plain table with the same producers and
/// transaction size, then drops it. Returns rows per second. Not paced:
/// it measures what the database can take.
async fn baseline(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    payload_bytes: usize,
) -> Result<(f64, Option<f64>), BoxError> {
    let table = bench.table("baseline");
    let ddl = match args.backend {
        BackendArg::Postgres => {
            format!("CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)")
        }
        BackendArg::Mysql => format!(
            "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload LONGBLOB NOT NULL)"
        ),
        BackendArg::Sqlite => {
            format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        }
    };
    bench.db.execute_unprepared(&ddl).await?;
    let total = usize::try_from(args.messages)?;
    let committed = Arc::new(AtomicUsize::new(0));
    let progress = {
        let committed = committed.clone();
        spawn_progress(
            "baseline inserted",
            total,
            move || committed.load(Ordering::Relaxed),
            None,
        )
    };
    let sink = Arc::new(BaselineSink {
        table: table.clone(),
        backend: bench.db_backend(),
        payload_bytes,
    });
    let clock = Clock::monotonic();
    let wal_before = writes::wal_bytes(&bench.db).await?;
    let produced = produce::run(&bench.db, sink, plan, args.batch, None, committed, clock).await;
    progress.abort();
    let produced = produced?;
    let wal_per_row = writes::per_message(
        wal_before,
        writes::wal_bytes(&bench.db).await?,
        args.messages as f64,
    );
    let secs = secs_between(produced.start, produced.last_commit());
    bench
        .db
        .execute_unprepared(&format!("DROP TABLE {table}"))
        .await?;
    let rows_per_sec = if secs > 0.0 {
        args.messages as f64 / secs
    } else {
        0.0
    };
    eprintln!(
        "outbox-bench: baseline: {rows_per_sec:.0} rows/s, {wal_per_row:?} WAL bytes per row"
    );
    Ok((rows_per_sec, wal_per_row))
}

type Counter = Box<dyn Fn() -> usize + Send>;

/// Prints a progress line to stderr once a second until aborted.
pub(crate) fn spawn_progress(
    label: &'static str,
    total: usize,
    produced: impl Fn() -> usize + Send + 'static,
    delivered: Option<Counter>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval_at(
            (start + Duration::from_secs(1)).into(),
            Duration::from_secs(1),
        );
        let (mut last_produced, mut last_delivered) = (0, 0);
        loop {
            tick.tick().await;
            let p = produced();
            let mut line = format!(
                "outbox-bench: [{:>5.1}s] {label} {p}/{total} ({}/s)",
                start.elapsed().as_secs_f64(),
                p.saturating_sub(last_produced)
            );
            last_produced = p;
            if let Some(delivered) = &delivered {
                let d = delivered();
                line.push_str(&format!(
                    ", delivered {d}/{total} ({}/s)",
                    d.saturating_sub(last_delivered)
                ));
                last_delivered = d;
            }
            eprintln!("{line}");
        }
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Nearest-rank percentile of sorted microsecond latencies, in milliseconds.
fn percentile_ms(sorted_micros: &[u32], p: f64) -> Option<f64> {
    percentile(sorted_micros, p).map(|us| round3(f64::from(us) / 1000.0))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Peak resident set size (`VmHWM`) in MiB; `None` off Linux.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round3(kib / 1024.0))
}

/// The report's fields in the order of the JSON line (serde_json's own map
/// would sort them).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Ordered(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// The summary table on stderr, from the JSON line.
fn summary(line: &str) {
    let Ok(Ordered(fields)) = serde_json::from_str(line) else {
        return;
    };
    eprintln!("outbox-bench: result");
    for (key, value) in fields {
        eprintln!("  {key:<32} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile::<f64>(&[], 50.0), None);
        assert_eq!(percentile_ms(&[1500, 2500, 9999], 50.0), Some(2.5));
        assert_eq!(percentile_ms(&[1500, 2500, 9999], 100.0), Some(9.999));
    }
}
