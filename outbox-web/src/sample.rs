//! Throughput over the last minutes, from in-memory samples of each
//! queue's settled count (the sum of its partitions' cursors).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Samples kept per queue: with one every [`SAMPLE_EVERY`], ten minutes.
pub(crate) const SAMPLES: usize = 60;
/// How often the console samples while it is mounted.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The samples of every queue.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    queues: BTreeMap<String, VecDeque<(Instant, i64)>>,
}

impl Samples {
    /// Records `settled` messages of `queue` at `at`.
    pub(crate) fn record(&mut self, queue: &str, at: Instant, settled: i64) {
        let ring = self.queues.entry(queue.to_owned()).or_default();
        if ring
            .back()
            .is_some_and(|(last, _)| at.duration_since(*last) < Duration::from_secs(1))
        {
            return;
        }
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back((at, settled));
    }

    /// Messages per second between consecutive samples of `queue`, oldest
    /// first. A cursor that went back (tables recreated) counts as 0.
    pub(crate) fn rates(&self, queue: &str) -> Vec<f64> {
        let Some(ring) = self.queues.get(queue) else {
            return Vec::new();
        };
        ring.iter()
            .zip(ring.iter().skip(1))
            .map(|((t0, n0), (t1, n1))| {
                let secs = t1.duration_since(*t0).as_secs_f64();
                if secs <= 0.0 {
                    0.0
                } else {
                    (n1 - n0).max(0) as f64 / secs
                }
            })
            .collect()
    }
}

/// A small inline SVG bar chart of `rates` (not escaped: numbers only).
pub(crate) fn chart(rates: &[f64]) -> String {
    const W: f64 = 240.0;
    const H: f64 = 40.0;
    if rates.is_empty() {
        return "<span class=\"muted\">collecting samples</span>".to_owned();
    }
    let max = rates.iter().copied().fold(0.0_f64, f64::max);
    let bar = W / SAMPLES as f64;
    let mut svg = format!(
        "<svg class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\"><title>max {max:.1}/s</title>"
    );
    let offset = SAMPLES.saturating_sub(rates.len()) as f64 * bar;
    for (i, rate) in rates.iter().enumerate() {
        let h = if max > 0.0 { rate / max * H } else { 0.0 };
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
            offset + i as f64 * bar,
            H - h,
            (bar - 1.0).max(1.0),
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_over_time_and_the_ring_is_bounded() {
        let mut samples = Samples::default();
        let t = Instant::now();
        for i in 0..(SAMPLES as u64 + 5) {
            samples.record("q", t + Duration::from_secs(10 * i), 100 * i as i64);
        }
        let rates = samples.rates("q");
        assert_eq!(rates.len(), SAMPLES - 1);
        assert!(rates.iter().all(|r| (r - 10.0).abs() < 1e-9), "{rates:?}");
        assert!(samples.rates("other").is_empty());
    }
}
