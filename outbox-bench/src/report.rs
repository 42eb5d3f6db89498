//! The run's result: the one JSON line ([`Report`]), filled from what a
//! message phase produced, and the summary table printed from it.

use serde::Serialize;

use crate::args::{Args, ModeArg};
use crate::clock::{NEVER, secs_between};
use crate::produce::Produced;
use crate::recorder::Deliveries;
use crate::soak;
use crate::split::ConsumerSummary;

/// The single JSON line. Fields serialize in this order.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) backend: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) messages: u64,
    pub(crate) partitions: u32,
    pub(crate) batch: u32,
    pub(crate) producers: u32,
    pub(crate) hot_key: bool,
    pub(crate) payload_bytes: u64,
    pub(crate) rate: Option<f64>,
    pub(crate) profile: &'static str,
    pub(crate) ping_idle_secs: Option<u64>,
    pub(crate) metrics_recorder: bool,
    pub(crate) split_process: bool,
    pub(crate) backlog: bool,
    pub(crate) enqueue_msgs_per_sec: Option<f64>,
    pub(crate) e2e_msgs_per_sec: Option<f64>,
    pub(crate) drain_msgs_per_sec: Option<f64>,
    pub(crate) latency_p50_ms: Option<f64>,
    pub(crate) latency_p95_ms: Option<f64>,
    pub(crate) latency_p99_ms: Option<f64>,
    pub(crate) latency_max_ms: Option<f64>,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) order_violations: u64,
    pub(crate) enqueue_retries: u64,
    pub(crate) timed_out: bool,
    pub(crate) client_statements_per_msg: Option<f64>,
    pub(crate) baseline_rows_per_sec: Option<f64>,
    pub(crate) e2e_vs_baseline: Option<f64>,
    pub(crate) idle_seconds: Option<f64>,
    pub(crate) idle_db_statements_per_sec: Option<f64>,
    pub(crate) idle_db_counter: Option<&'static str>,
    pub(crate) idle_client_statements_per_sec: Option<f64>,
    pub(crate) peak_rss_mib: Option<f64>,
    pub(crate) drain_peak_rss_mib: Option<f64>,
    pub(crate) bench_tracking_mib: Option<f64>,
    pub(crate) consumer_peak_rss_mib: Option<f64>,
    pub(crate) consumer_bench_tracking_mib: Option<f64>,
    pub(crate) soak_seconds: Option<f64>,
    pub(crate) table_rows_start: Option<u64>,
    pub(crate) table_rows_end: Option<u64>,
    pub(crate) table_bytes_start: Option<u64>,
    pub(crate) table_bytes_end: Option<u64>,
    pub(crate) rss_mib_start: Option<f64>,
    pub(crate) rss_mib_end: Option<f64>,
    pub(crate) row_writes_per_msg: Option<f64>,
    pub(crate) wal_bytes_per_msg: Option<f64>,
    pub(crate) baseline_wal_bytes_per_row: Option<f64>,
    pub(crate) wal_vs_baseline: Option<f64>,
}

impl Report {
    /// Whether the run broke a guarantee.
    pub(crate) fn failed(&self, mode: ModeArg) -> bool {
        self.lost > 0
            || self.order_violations > 0
            || (mode == ModeArg::Transactional && self.duplicates > 0)
    }
}

/// What one message phase produced, for [`fill`].
pub(crate) struct Run {
    pub(crate) produced: Produced,
    pub(crate) delivered: Deliveries,
    /// Every message arrived before the timeout.
    pub(crate) waited: bool,
    /// Statements sent by the pools from the first enqueue to the last delivery.
    pub(crate) statements: u64,
    /// `--backlog`: when the consuming outbox was started.
    pub(crate) drain_start: Option<u32>,
    /// `--backlog` in one process: the peak RSS counted from the drain's start.
    pub(crate) drain_peak_rss_mib: Option<f64>,
    /// `--split-process`: what the child said about itself.
    pub(crate) consumer: Option<ConsumerSummary>,
    /// `--soak-seconds`: the tables and memory at a tenth and at the end.
    pub(crate) soak: Option<soak::Figures>,
}

/// The report's message figures from a run.
pub(crate) fn fill(report: &mut Report, args: &Args, run: Run) {
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

pub(crate) fn mib(bytes: u64) -> f64 {
    round3(bytes as f64 / (1024.0 * 1024.0))
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

pub(crate) fn round3(x: f64) -> f64 {
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
pub(crate) fn summary(line: &str) {
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
