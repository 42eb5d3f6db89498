//! The progress line on stderr, once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Counter = Box<dyn Fn() -> usize + Send>;

/// A counter of committed messages (or rows) for the producers to bump, and
/// the progress line that shows it (and `delivered`, if given).
pub(crate) fn spawn_commit_progress(
    label: &'static str,
    total: usize,
    delivered: Option<Counter>,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let committed = Arc::new(AtomicUsize::new(0));
    let counter = committed.clone();
    let progress = spawn_progress(
        label,
        total,
        move || counter.load(Ordering::Relaxed),
        delivered,
    );
    (committed, progress)
}

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
