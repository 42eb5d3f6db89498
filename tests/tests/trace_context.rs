//! Trace context travels from the enqueuing span to the handler's span, on
//! every backend: the producer's `traceparent` is stored in the message
//! headers, the handler's `outbox.handle` span links to it, and what the
//! handler does runs inside `outbox.handle`. Turning propagation off stores
//! nothing.
//!
//! One binary of its own: the OpenTelemetry layer must be the global
//! subscriber, because the workers run on other threads than the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use outbox_core::{Batch, BatchResult, LeasedHandler, Message, Outbox, Queue, TRACEPARENT_HEADER};
use outbox_tests::{Backend, TestDb, wait_until};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

struct Tracing {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

fn tracing() -> &'static Tracing {
    static TRACING: OnceLock<Tracing> = OnceLock::new();
    TRACING.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("outbox-tests"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only global subscriber");
        Tracing { provider, exporter }
    })
}

/// Records each message's headers, and opens a child span as a relay would.
#[derive(Clone, Default)]
struct Capture {
    traceparents: Arc<Mutex<Vec<Option<String>>>>,
}

#[async_trait::async_trait]
impl LeasedHandler for Capture {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let publish = tracing::info_span!("test.publish");
        async {
            let mut seen = self.traceparents.lock().unwrap();
            for message in &batch.messages {
                seen.push(message.headers.get(TRACEPARENT_HEADER).cloned());
            }
        }
        .instrument(publish)
        .await;
        BatchResult::success()
    }
}

fn finished(name: &str) -> Vec<SpanData> {
    let tracing = tracing();
    tracing.provider.force_flush().unwrap();
    tracing
        .exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == name)
        .collect()
}

/// Enqueues `message` in a transaction of its own, in the current span.
async fn enqueue_one(outbox: &Outbox, message: Message) -> uuid::Uuid {
    outbox
        .transaction(|tx| Box::pin(async move { tx.enqueue("q", "k", message).await }))
        .await
        .unwrap()
}

async fn propagates(backend: Backend, name: &str) {
    tracing();
    let Some(db) = TestDb::connect(backend, name).await else {
        return;
    };
    let handler = Capture::default();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 2, handler.clone()))
        .start()
        .await
        .unwrap();
    let outbox = handle.outbox().clone();

    // The "HTTP request" that enqueues: its context is what must travel.
    let request = tracing::info_span!("test.request");
    let request_context: SpanContext = request.context().span().span_context().clone();
    assert!(
        request_context.is_valid(),
        "the OpenTelemetry layer is not installed"
    );
    let message_id = enqueue_one(&outbox, Message::new("t", b"x".to_vec()))
        .instrument(request.clone())
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || handler
            .traceparents
            .lock()
            .unwrap()
            .len()
            == 1)
        .await
    );

    // A message enqueued with propagation off carries nothing.
    let quiet = db
        .builder()
        .run_workers(false)
        .propagate_trace_context(false)
        .queue(Queue::leased("q", 2, Capture::default()))
        .start()
        .await
        .unwrap();
    enqueue_one(quiet.outbox(), Message::new("t", b"y".to_vec()))
        .instrument(tracing::info_span!("test.quiet_request"))
        .await;
    // A traceparent the caller set is kept, even inside a traced span.
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    enqueue_one(
        &outbox,
        Message::new("t", b"z".to_vec()).header(TRACEPARENT_HEADER, own),
    )
    .instrument(request.clone())
    .await;
    drop(request);
    outbox.notify();
    assert!(
        wait_until(Duration::from_secs(20), || handler
            .traceparents
            .lock()
            .unwrap()
            .len()
            == 3)
        .await
    );
    quiet.stop().await;
    handle.stop().await;

    let seen = handler.traceparents.lock().unwrap().clone();
    let expected = format!(
        "00-{}-{}-{:02x}",
        request_context.trace_id(),
        request_context.span_id(),
        request_context.trace_flags().to_u8()
    );
    assert_eq!(
        seen,
        vec![Some(expected), None, Some(own.to_owned())],
        "message {message_id}"
    );

    // The handler's span links to the request; the handler's own work is its child.
    let handle_spans: Vec<SpanData> = finished("outbox.handle")
        .into_iter()
        .filter(|s| {
            s.links
                .iter()
                .any(|l| l.span_context.trace_id() == request_context.trace_id())
        })
        .collect();
    assert_eq!(
        handle_spans.len(),
        1,
        "one outbox.handle span links to the request"
    );
    let linked = &handle_spans[0];
    let link = linked
        .links
        .iter()
        .find(|l| l.span_context.trace_id() == request_context.trace_id())
        .unwrap();
    assert_eq!(link.span_context.span_id(), request_context.span_id());
    let children = finished("test.publish")
        .into_iter()
        .filter(|s| s.parent_span_id == linked.span_context.span_id())
        .count();
    assert_eq!(children, 1, "the handler's work runs inside outbox.handle");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_context_travels_from_enqueue_to_handler_sqlite() {
    propagates(Backend::Sqlite, "trace_context_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_context_travels_from_enqueue_to_handler_postgres() {
    propagates(Backend::Postgres, "trace_context_postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_context_travels_from_enqueue_to_handler_mysql() {
    propagates(Backend::MySql, "trace_context_mysql").await;
}
