//! A process-wide metrics recorder for the suite: values read without
//! resetting them, filtered by metric name and labels.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

type Store = Registry<Key, AtomicStorage>;

struct ProbeRecorder(Arc<Store>);

impl metrics::Recorder for ProbeRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// Reads what the outbox recorded in this test process.
#[derive(Clone)]
pub struct MetricProbe(Arc<Store>);

impl MetricProbe {
    /// The suite's recorder, installed as the global one on first use. An
    /// outbox records into it only if started after this call.
    pub fn install() -> Self {
        static PROBE: OnceLock<Arc<Store>> = OnceLock::new();
        let store = PROBE.get_or_init(|| {
            let store = Arc::new(Registry::atomic());
            metrics::set_global_recorder(ProbeRecorder(store.clone()))
                .expect("no other metrics recorder in the suite");
            store
        });
        Self(store.clone())
    }

    fn key(name: &str, labels: &[(&str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(k.to_string(), v.to_string()))
            .collect();
        Key::from_parts(name.to_owned(), labels)
    }

    /// A counter's value; 0 when never registered.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .get_counter(&Self::key(name, labels))
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A gauge's value; `None` when never registered.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .get_gauge(&Self::key(name, labels))
            .map(|g| f64::from_bits(g.load(std::sync::atomic::Ordering::SeqCst)))
    }

    /// A histogram's recorded values.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .get_histogram(&Self::key(name, labels))
            .map_or_else(Vec::new, |h| h.data())
    }
}
