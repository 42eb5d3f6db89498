//! Logs, and OpenTelemetry trace contexts for the spans that matter: every
//! `POST /orders` runs in an `http.request` span whose W3C trace context the
//! outbox stores in the `OrderPlaced` message (`traceparent` header); the
//! outbox's `outbox.handle` span links to it and the relay forwards the
//! header to JetStream, so a consumer continues the request's trace.
//!
//! No exporter is configured: spans get real trace ids (shown in the logs
//! and on the broker) but are not shipped anywhere. Add one to the provider
//! (OTLP, say) to see the traces in a tracing backend.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: logs to stderr filtered by `RUST_LOG`
/// (default `info,sqlx=warn`), plus the OpenTelemetry layer. Keep the
/// returned provider and shut it down on exit.
pub fn init() -> SdkTracerProvider {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let provider = SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("orders-service"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .init();
    provider
}

/// The trace id of the current span, or `None` without OpenTelemetry.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
