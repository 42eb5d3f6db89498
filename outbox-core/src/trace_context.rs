//! Carrying the producer's trace context to the handler, through headers.
//!
//! At enqueue, a [`TracePropagator`] writes the current span's context into
//! the message's headers; when a batch is handed to a handler, it links the
//! handler's `outbox.handle` span to the context of each message. A trace then
//! shows the request that enqueued, and follows the link to the delivery and
//! to whatever the handler does inside its span (a broker publish).
//!
//! Core depends on no tracing backend. With the cargo feature
//! `opentelemetry`, [`W3cTraceContext`] (W3C `traceparent`/`tracestate`
//! through `tracing-opentelemetry`) is installed by default; turn it off with
//! [`OutboxBuilder::propagate_trace_context`](crate::OutboxBuilder::propagate_trace_context)
//! or plug another propagator with
//! [`OutboxBuilder::trace_propagator`](crate::OutboxBuilder::trace_propagator).

use std::collections::BTreeMap;

/// The W3C Trace Context header holding trace id, parent span id and flags.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The W3C Trace Context header holding vendor-specific trace state.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Moves trace context from the enqueuing span into message headers, and from
/// delivered messages' headers onto the handler's span.
pub trait TracePropagator: Send + Sync + 'static {
    /// Called once per enqueue call, in the caller's span: writes the current
    /// context into `headers` (empty). The outbox copies them into each
    /// message that has no `traceparent` of its own.
    fn inject(&self, headers: &mut BTreeMap<String, String>);

    /// Called before a batch reaches its handler, once per message: links
    /// `span` (the handler's `outbox.handle` span) to the context found in
    /// `headers`, if any.
    fn link(&self, span: &tracing::Span, headers: &BTreeMap<String, String>);
}

#[cfg(feature = "opentelemetry")]
pub use w3c::W3cTraceContext;

#[cfg(feature = "opentelemetry")]
mod w3c {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{TRACEPARENT_HEADER, TRACESTATE_HEADER, TracePropagator};

    /// W3C Trace Context (`traceparent`, `tracestate`) from and to the
    /// OpenTelemetry context of `tracing` spans (`tracing-opentelemetry`).
    /// Without an OpenTelemetry layer in the subscriber, spans have no
    /// context and nothing is written.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct W3cTraceContext;

    impl TracePropagator for W3cTraceContext {
        fn inject(&self, headers: &mut BTreeMap<String, String>) {
            let context = tracing::Span::current().context();
            let span = context.span();
            let span_context = span.span_context();
            let Some(traceparent) = format_traceparent(span_context) else {
                return;
            };
            headers.insert(TRACEPARENT_HEADER.to_owned(), traceparent);
            let state = span_context.trace_state().header();
            if !state.is_empty() {
                headers.insert(TRACESTATE_HEADER.to_owned(), state);
            }
        }

        fn link(&self, span: &tracing::Span, headers: &BTreeMap<String, String>) {
            let Some(traceparent) = headers.get(TRACEPARENT_HEADER) else {
                return;
            };
            let state = headers
                .get(TRACESTATE_HEADER)
                .and_then(|s| TraceState::from_str(s).ok())
                .unwrap_or_default();
            if let Some(context) = parse_traceparent(traceparent, state) {
                span.add_link(context);
            }
        }
    }

    /// `00-<trace id>-<span id>-<flags>`, or `None` for an invalid context.
    pub(super) fn format_traceparent(context: &SpanContext) -> Option<String> {
        context.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            )
        })
    }

    /// Parses a version-00 `traceparent`; anything malformed is ignored
    /// (a header is a hint, never a reason to fail a delivery).
    pub(super) fn parse_traceparent(value: &str, state: TraceState) -> Option<SpanContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let context = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
        context.is_valid().then_some(context)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn traceparent_round_trips() {
            let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let context = parse_traceparent(value, TraceState::default()).expect("valid");
            assert!(context.is_remote() && context.is_sampled());
            assert_eq!(format_traceparent(&context).as_deref(), Some(value));
        }

        #[test]
        fn malformed_traceparents_are_ignored() {
            for bad in [
                "",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
            ] {
                assert!(
                    parse_traceparent(bad, TraceState::default()).is_none(),
                    "{bad}"
                );
            }
        }
    }
}

/// The propagator an outbox uses unless told otherwise.
pub(crate) fn default_propagator() -> Option<std::sync::Arc<dyn TracePropagator>> {
    #[cfg(feature = "opentelemetry")]
    {
        Some(std::sync::Arc::new(W3cTraceContext))
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}
