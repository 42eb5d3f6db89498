//! What every HTTP handler shares.

use outbox_core::Outbox;

/// The state of the router: the producer API of the running outbox (its
/// admin API hangs off it too).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The outbox to enqueue to and administer.
    pub outbox: Outbox,
    /// Renders `GET /metrics`; `None` when no Prometheus recorder could be
    /// installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}
