//! `outbox-bench`: runs one benchmark scenario against a real database and
//! prints one JSON object as the last line of stdout (design §9, style rule 15).
//!
//! ```text
//! cargo run --release -p outbox-bench -- --backend postgres --messages 20000 --batch 100 --baseline
//! cargo run --release -p outbox-bench -- --backend postgres --idle-seconds 5 --partitions 64
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
//! `payload_bytes`, `rate` (null: as fast as possible),
//! `enqueue_msgs_per_sec` (messages ÷ time from the first producer's start to
//! the last commit), `e2e_msgs_per_sec` (delivered ÷ time from the first
//! producer's start to the last first delivery), `latency_p50_ms`,
//! `latency_p95_ms`, `latency_p99_ms`, `latency_max_ms`, `delivered`
//! (distinct), `lost`, `duplicates`, `order_violations`, `enqueue_retries`,
//! `timed_out`, `client_statements_per_msg` (statements the pool sent from
//! the first enqueue to the last delivery, per message, without
//! BEGIN/COMMIT), `baseline_rows_per_sec` and `e2e_vs_baseline` (with
//! `--baseline`), `idle_seconds`, `idle_db_statements_per_sec` (server side;
//! on PostgreSQL without pg_stat_statements it is transactions from
//! pg_stat_database, see `idle_db_counter`; null on SQLite),
//! `idle_db_counter`, `idle_client_statements_per_sec`, `peak_rss_mib`.
//!
//! `--idle-seconds T` starts the outbox with no traffic, lets it settle (1 s;
//! 11 s when the counter is pg_stat_database, whose counts show up late, see
//! `idle.rs`), then counts statements over T seconds; no messages are sent.

mod args;
mod db;
mod idle;
mod produce;
mod recorder;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use outbox_core::sea_orm::ConnectionTrait;
use outbox_core::{OutboxBuilder, OutboxHandle, Queue};
use serde::Serialize;

use crate::args::{Args, BackendArg, ModeArg};
use crate::db::BenchDb;
use crate::produce::{BaselineSink, OutboxSink, Produced};
use crate::recorder::{LeasedBench, Plan, Recorder, TransactionalBench};

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
    payload_bytes: u64,
    rate: Option<f64>,
    enqueue_msgs_per_sec: Option<f64>,
    e2e_msgs_per_sec: Option<f64>,
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
    let args = Args::parse();
    if let Err(err) = args.validate() {
        eprintln!("outbox-bench: {err}");
        return ExitCode::from(2);
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
    bench.cleanup().await;
    let mut report = result?;
    report.peak_rss_mib = peak_rss_mib();
    Ok(report)
}

async fn scenario(args: &Args, bench: &BenchDb) -> Result<Report, BoxError> {
    bench.migrate().await?;
    let mut report = Report {
        backend: args.backend.name(),
        mode: args.mode.name(),
        messages: args.messages,
        partitions: args.partitions,
        batch: args.batch,
        producers: args.producers,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
        ..Report::default()
    };
    if let Some(seconds) = args.idle_seconds {
        report.messages = 0;
        report.idle_seconds = Some(seconds);
        let probe = idle::Probe::connect(bench).await?;
        let recorder = Arc::new(Recorder::new(Plan::new(0, args.producers)));
        let handle = start(args, bench, recorder).await?;
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
        let rows_per_sec = baseline(args, bench, &plan, payload_bytes).await?;
        report.baseline_rows_per_sec = Some(round3(rows_per_sec));
    }

    let recorder = Arc::new(Recorder::new(plan.clone()));
    let handle = start(args, bench, recorder.clone()).await?;
    let outcome = messages(args, bench, &handle, &plan, &recorder, payload_bytes).await;
    handle.stop().await;
    let (produced, waited, statements) = outcome?;
    let delivered = recorder.snapshot();

    let mut latencies = Vec::with_capacity(delivered.first.len());
    let mut last_delivery = None;
    let mut index = 0;
    for commits in &produced.commits {
        for commit in commits {
            if let Some(Some(first)) = delivered.first.get(index) {
                latencies.push(first.saturating_duration_since(*commit).as_secs_f64() * 1000.0);
                last_delivery = last_delivery.max(Some(*first));
            }
            index += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let distinct = latencies.len() as u64;
    let n = args.messages as f64;
    let enqueue_secs = produced
        .last_commit()
        .duration_since(produced.start)
        .as_secs_f64();
    report.enqueue_msgs_per_sec = (enqueue_secs > 0.0).then(|| round3(n / enqueue_secs));
    report.e2e_msgs_per_sec = last_delivery.and_then(|last| {
        let secs = last.duration_since(produced.start).as_secs_f64();
        (secs > 0.0).then(|| round3(distinct as f64 / secs))
    });
    report.latency_p50_ms = percentile(&latencies, 50.0).map(round3);
    report.latency_p95_ms = percentile(&latencies, 95.0).map(round3);
    report.latency_p99_ms = percentile(&latencies, 99.0).map(round3);
    report.latency_max_ms = latencies.last().copied().map(round3);
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
    if delivered.unknown > 0 {
        eprintln!(
            "outbox-bench: {} deliveries were not messages of this run",
            delivered.unknown
        );
    }
    Ok(report)
}

/// Builds and starts the outbox: one queue `bench` in the chosen mode.
async fn start(
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
    let handle = OutboxBuilder::new(bench.db.clone(), bench.dialect.clone())
        .table_prefix(bench.prefix.clone())
        .poll_interval(Duration::from_millis(100))
        .queue(queue)
        .run_workers(true)
        .start()
        .await?;
    Ok(handle)
}

/// Enqueues every message and waits for its delivery. Returns what the
/// producers did, whether everything arrived before the timeout, and the
/// statements the pool sent meanwhile.
async fn messages(
    args: &Args,
    bench: &BenchDb,
    handle: &OutboxHandle,
    plan: &Plan,
    recorder: &Arc<Recorder>,
    payload_bytes: usize,
) -> Result<(Produced, bool, u64), BoxError> {
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
    let sink = Arc::new(OutboxSink {
        outbox: handle.outbox().clone(),
        payload_bytes,
    });
    let produced = produce::run(
        &bench.db,
        sink,
        plan,
        args.batch,
        args.rate,
        committed.clone(),
    )
    .await;
    let produced = match produced {
        Ok(produced) => produced,
        Err(err) => {
            progress.abort();
            return Err(err);
        }
    };
    // Wait for the backlog: at least 60 s, or 10 ms per message, after the
    // last commit.
    let timeout =
        Duration::from_secs(60).max(Duration::from_millis(args.messages.saturating_mul(10)));
    let waited = tokio::time::timeout(timeout, recorder.wait_all())
        .await
        .is_ok();
    let statements = bench.client_statements() - statements_before;
    progress.abort();
    if !waited {
        eprintln!(
            "outbox-bench: timed out after {:.0} s with {}/{} delivered",
            timeout.as_secs_f64(),
            recorder.distinct(),
            total
        );
    }
    Ok((produced, waited, statements))
}

/// Inserts the same rows into a plain table with the same producers and
/// transaction size, then drops it. Returns rows per second. Not paced:
/// it measures what the database can take.
async fn baseline(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    payload_bytes: usize,
) -> Result<f64, BoxError> {
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
    let produced = produce::run(&bench.db, sink, plan, args.batch, None, committed).await;
    progress.abort();
    let produced = produced?;
    let secs = produced
        .last_commit()
        .duration_since(produced.start)
        .as_secs_f64();
    bench
        .db
        .execute_unprepared(&format!("DROP TABLE {table}"))
        .await?;
    let rows_per_sec = if secs > 0.0 {
        args.messages as f64 / secs
    } else {
        0.0
    };
    eprintln!("outbox-bench: baseline: {rows_per_sec:.0} rows/s");
    Ok(rows_per_sec)
}

type Counter = Box<dyn Fn() -> usize + Send>;

/// Prints a progress line to stderr once a second until aborted.
fn spawn_progress(
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
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Peak resident set size (`VmHWM`) in MiB; `None` off Linux.
fn peak_rss_mib() -> Option<f64> {
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
        assert_eq!(percentile(&[], 50.0), None);
    }
}
