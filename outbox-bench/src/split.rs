//! `--split-process`: the outbox workers and the handler run in a child
//! process, the producers in the parent.
//!
//! The parent re-executes its own binary with the hidden `--role consumer`,
//! the same backend, mode, partitions, messages, producers, profile, the
//! parent's table prefix and the clock origin (Unix epoch microseconds); the
//! URL goes through the environment (`OUTBOX_BENCH_CONSUMER_URL`), not the
//! command line. Both processes time with the wall clock from that origin.
//!
//! The child starts a consuming outbox on the parent's tables, prints
//! `ready` on stdout, and runs until every message was delivered or a
//! `stop` line (or end of file) arrives on its stdin. It then writes the
//! result file: one JSON line ([`ConsumerSummary`]) and the first-delivery
//! time of each message as a little-endian `u32` (`NEVER` if none), prints
//! `done` and exits. Its progress and errors go to the shared stderr.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::BoxError;
use crate::args::Args;
use crate::clock::{Clock, NEVER};
use crate::db::BenchDb;
use crate::outboxes::{produce_into, start_consumer, start_producer, wait_timeout};
use crate::progress::{spawn_commit_progress, spawn_progress};
use crate::recorder::{Deliveries, Plan, Recorder};
use crate::report::{Run, peak_rss_mib};

/// The environment variable that carries the database URL to the child.
const URL_VAR: &str = "OUTBOX_BENCH_CONSUMER_URL";

/// The first line of the result file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ConsumerSummary {
    /// Clock time just before the consuming outbox was started.
    pub(crate) started_us: u32,
    pub(crate) deliveries: u64,
    pub(crate) unknown: u64,
    pub(crate) order_violations: u64,
    /// Statements the child's pool sent while it ran.
    pub(crate) statements: u64,
    /// Whether it was told to stop before every message arrived.
    pub(crate) stopped_early: bool,
    pub(crate) peak_rss_mib: Option<f64>,
    /// Bytes of the child's own tracking (its first-delivery table).
    pub(crate) tracking_bytes: u64,
}

/// The child, seen from the parent.
pub(crate) struct Consumer {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    result: PathBuf,
}

impl Consumer {
    /// Starts the child on `bench`'s tables.
    pub(crate) fn spawn(args: &Args, bench: &BenchDb, clock: Clock) -> Result<Self, BoxError> {
        let origin = clock
            .wall_origin()
            .ok_or("--split-process needs the wall clock")?;
        let result =
            std::env::temp_dir().join(format!("outbox-bench-{}consumer.bin", bench.prefix));
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["--role", "consumer", "--backend", args.backend.name()])
            .args(["--mode", args.mode.name(), "--profile", args.profile.name()])
            .args(["--table-prefix", &bench.prefix])
            .arg(format!("--partitions={}", args.partitions))
            .arg(format!("--messages={}", args.messages))
            .arg(format!("--producers={}", args.producers))
            .arg(format!("--payload-bytes={}", args.payload_bytes))
            .arg(format!("--clock-origin-us={origin}"))
            .arg("--result-file")
            .arg(&result)
            .env(URL_VAR, &bench.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(secs) = args.ping_idle_secs {
            command.arg(format!("--ping-idle-secs={secs}"));
        }
        if let Some(ms) = args.poll_interval_ms {
            command.arg(format!("--poll-interval-ms={ms}"));
        }
        if args.no_listen {
            command.arg("--no-listen");
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("the child has no stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child: Some(child),
            stdin,
            lines,
            result,
        })
    }

    /// Waits up to `timeout` for the line `want`; `Ok(false)` on timeout.
    async fn line(&mut self, want: &str, timeout: Duration) -> Result<bool, BoxError> {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.trim() == want {
                    return Ok(());
                }
            }
            Err::<(), BoxError>("the consumer process exited early (see its errors above)".into())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Waits until the child's outbox has started.
    pub(crate) async fn ready(&mut self) -> Result<(), BoxError> {
        if self.line("ready", Duration::from_secs(120)).await? {
            Ok(())
        } else {
            Err("the consumer process did not start within 120 s".into())
        }
    }

    /// Waits up to `timeout` for the child to finish on its own, then tells
    /// it to stop; reads and deletes its result file. The second value is
    /// whether it finished on its own (every message delivered).
    pub(crate) async fn finish(
        mut self,
        timeout: Duration,
    ) -> Result<(ConsumerSummary, Deliveries), BoxError> {
        if !self.line("done", timeout).await? {
            eprintln!(
                "outbox-bench: timed out after {:.0} s; stopping the consumer",
                timeout.as_secs_f64()
            );
            if let Some(stdin) = self.stdin.as_mut() {
                // A child already gone is found out below.
                let _ = stdin.write_all(b"stop\n").and_then(|()| stdin.flush());
            }
            if !self.line("done", Duration::from_secs(60)).await? {
                return Err("the consumer process did not stop within 60 s".into());
            }
        }
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let status = tokio::task::spawn_blocking(move || child.wait()).await??;
            if !status.success() {
                return Err(format!("the consumer process failed: {status}").into());
            }
        }
        let read = read_result(&self.result);
        let _ = std::fs::remove_file(&self.result);
        read
    }
}

impl Drop for Consumer {
    /// On an error path: end the child rather than leave it running.
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.result);
    }
}

fn read_result(path: &Path) -> Result<(ConsumerSummary, Deliveries), BoxError> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let mut header = String::new();
    file.read_line(&mut header)?;
    let summary: ConsumerSummary = serde_json::from_str(&header)?;
    let mut first = Vec::new();
    let mut word = [0u8; 4];
    loop {
        match file.read_exact(&mut word) {
            Ok(()) => first.push(u32::from_le_bytes(word)),
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(err) => return Err(err.into()),
        }
    }
    let deliveries = Deliveries {
        first,
        deliveries: summary.deliveries,
        unknown: summary.unknown,
        order_violations: summary.order_violations,
    };
    Ok((summary, deliveries))
}

/// The child's whole life (`--role consumer`).
pub(crate) async fn consumer(args: &Args) -> Result<(), BoxError> {
    let (Some(prefix), Some(origin), Some(result)) = (
        args.table_prefix.clone(),
        args.clock_origin_us,
        args.result_file.clone(),
    ) else {
        return Err(
            "--role consumer needs --table-prefix, --clock-origin-us and --result-file".into(),
        );
    };
    let url = std::env::var(URL_VAR)
        .ok()
        .or_else(|| args.database_url.clone())
        .ok_or(format!("--role consumer needs {URL_VAR}"))?;
    let bench = BenchDb::attach(args, url, prefix).await?;
    let outcome = consume(args, &bench, Clock::Wall(origin), &result).await;
    bench.close().await;
    outcome?;
    println!("done");
    std::io::stdout().flush()?;
    Ok(())
}

async fn consume(
    args: &Args,
    bench: &BenchDb,
    clock: Clock,
    result: &Path,
) -> Result<(), BoxError> {
    let plan = Plan::new(args.messages, args.producers);
    let recorder = Arc::new(Recorder::new(plan, clock));
    let statements_before = bench.client_statements();
    let started_us = clock.now();
    let handle = start_consumer(args, bench, recorder.clone()).await?;
    println!("ready");
    std::io::stdout().flush()?;

    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        // A `stop` line or the end of stdin (the parent is gone) stops the run.
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim() != "stop" => {}
                _ => break,
            }
        }
        let _ = stop_tx.send(());
    });
    let total = usize::try_from(args.messages)?;
    let progress = {
        let recorder = recorder.clone();
        spawn_progress(
            "consumer: delivered",
            total,
            move || recorder.distinct(),
            None,
        )
    };
    let stopped_early = tokio::select! {
        () = recorder.wait_all() => false,
        _ = stop_rx.recv() => true,
    };
    progress.abort();
    let statements = bench.client_statements() - statements_before;
    handle.stop().await;
    let delivered = recorder.take();
    let summary = ConsumerSummary {
        started_us,
        deliveries: delivered.deliveries,
        unknown: delivered.unknown,
        order_violations: delivered.order_violations,
        statements,
        stopped_early,
        peak_rss_mib: peak_rss_mib(),
        tracking_bytes: (delivered.first.capacity() * std::mem::size_of::<u32>()) as u64,
    };
    let mut file = BufWriter::new(std::fs::File::create(result)?);
    serde_json::to_writer(&mut file, &summary)?;
    file.write_all(b"\n")?;
    for &first in &delivered.first {
        file.write_all(&first.to_le_bytes())?;
    }
    file.flush()?;
    if delivered.first.contains(&NEVER) {
        eprintln!("outbox-bench: consumer: stopped before every message arrived");
    }
    Ok(())
}

/// Producers in this process with a producer-only outbox, workers and
/// handler in a child process (`split.rs`).
pub(crate) async fn run(
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
    let (committed, progress) = spawn_commit_progress("enqueued", total, None);
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
