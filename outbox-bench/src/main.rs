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
mod baseline;
mod clock;
mod db;
mod idle;
mod in_process;
mod outboxes;
mod produce;
mod progress;
mod recorder;
mod report;
mod soak;
mod split;
mod writes;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::args::{Args, RoleArg};
use crate::clock::Clock;
use crate::db::BenchDb;
use crate::outboxes::start_consumer;
use crate::recorder::{Plan, Recorder};
use crate::report::{Report, fill, peak_rss_mib, round3, summary};

/// The error type of the whole binary.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        let (rows_per_sec, wal_per_row) = baseline::run(args, bench, &plan, payload_bytes).await?;
        report.baseline_rows_per_sec = Some(round3(rows_per_sec));
        report.baseline_wal_bytes_per_row = wal_per_row.map(round3);
    }

    let clock = if args.split_process {
        Clock::wall()
    } else {
        Clock::monotonic()
    };
    let run = if args.split_process {
        split::run(args, bench, &plan, clock, payload_bytes).await?
    } else {
        in_process::run(args, bench, &plan, clock, payload_bytes).await?
    };
    fill(&mut report, args, run);
    Ok(report)
}
