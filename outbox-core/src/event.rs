//! Lifecycle events: a lossy, in-process broadcast for dashboards and tests.
//!
//! Events are best-effort. They are pushed after the database commit they
//! describe; a subscriber whose buffer is full is dropped (its stream ends)
//! and the workers never wait for it. Durable catch-up is by cursor on the
//! tables (`processed_seq` of each partition row), never by this stream.

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

/// What happened to a message. Serializes as `"sequenced"`, `"delivered"`,
/// `"retried"` or `"dead_lettered"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Given its sequence number in its partition.
    Sequenced,
    /// Handled and acknowledged (in transactional mode: committed with the handler's writes).
    Delivered,
    /// Failed and waits for another try.
    Retried,
    /// Moved to the dead-letter table.
    DeadLettered,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The queue.
    pub queue: String,
    /// The partition number.
    pub partition: u32,
    /// The message's sequence number in its partition.
    pub seq: i64,
    /// The message id.
    pub message_id: Uuid,
}

/// Which events a subscriber wants; the filter is applied where events are
/// pushed, so a subscriber only receives (and buffers) what matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    queue: Option<String>,
    partition: Option<u32>,
    kinds: Option<Vec<EventKind>>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only events of partition `partition` (of any queue unless [`EventFilter::queue`] is set).
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Only events of these kinds.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        self.kinds = Some(kinds.into_iter().collect());
        self
    }

    fn matches(&self, kind: EventKind, queue: &str, partition: u32) -> bool {
        self.queue.as_deref().is_none_or(|q| q == queue)
            && self.partition.is_none_or(|p| p == partition)
            && self
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.contains(&kind))
    }
}

/// A subscriber's stream of events. It ends (returns `None`) when the
/// outbox stops or when this subscriber fell behind and was dropped.
///
/// Read it with [`EventStream::recv`], or as a [`futures_core::Stream`]
/// with the combinators of `futures::StreamExt` or `tokio_stream::StreamExt`:
///
/// ```no_run
/// # async fn example(handle: outbox_core::OutboxHandle) {
/// use futures_util::StreamExt;
/// use outbox_core::{EventFilter, EventKind};
///
/// let mut dead = handle
///     .subscribe(EventFilter::all().kinds([EventKind::DeadLettered]), 64)
///     .map(|event| format!("{}/{} seq {}", event.queue, event.partition, event.seq));
/// while let Some(line) = dead.next().await {
///     eprintln!("dead-lettered: {line}");
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct EventStream(mpsc::Receiver<Event>);

impl EventStream {
    /// The next event; `None` once the stream has ended.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is only taken when the future completes.
    pub async fn recv(&mut self) -> Option<Event> {
        self.0.recv().await
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len(), None)
    }
}

struct Subscriber {
    filter: EventFilter,
    sender: mpsc::Sender<Event>,
}

/// Fans events out to subscribers.
#[derive(Default)]
pub(crate) struct EventHub {
    subscribers: Mutex<Vec<Subscriber>>,
    /// Subscriber count, read without the lock so that workers with no
    /// subscriber pay one atomic load per batch.
    count: AtomicUsize,
}

impl EventHub {
    pub(crate) fn subscribe(&self, filter: EventFilter, buffer: usize) -> EventStream {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(Subscriber { filter, sender });
            self.count.store(subscribers.len(), Ordering::Release);
        }
        EventStream(receiver)
    }

    /// Whether anybody listens: callers skip building events otherwise.
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Pushes events to every matching subscriber without waiting; drops
    /// subscribers that are full or gone.
    pub(crate) fn publish(&self, events: impl IntoIterator<Item = Event>) {
        if !self.active() {
            return;
        }
        let Ok(mut subscribers) = self.subscribers.lock() else {
            return;
        };
        for event in events {
            subscribers.retain(|subscriber| {
                if !subscriber
                    .filter
                    .matches(event.kind, &event.queue, event.partition)
                {
                    return !subscriber.sender.is_closed();
                }
                match subscriber.sender.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!("outbox event subscriber fell behind and was dropped");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        self.count.store(subscribers.len(), Ordering::Release);
    }

    /// Ends every stream.
    pub(crate) fn close(&self) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.clear();
            self.count.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(partition: u32) -> Event {
        Event {
            kind: EventKind::Delivered,
            queue: "q".into(),
            partition,
            seq: 1,
            message_id: Uuid::nil(),
        }
    }

    #[test]
    fn filters_apply_where_events_are_pushed() {
        let hub = EventHub::default();
        let mut only_one = hub.subscribe(EventFilter::all().queue("q").partition(1), 8);
        let mut other_queue = hub.subscribe(EventFilter::all().queue("r"), 8);
        hub.publish([event(0), event(1), event(2)]);
        assert_eq!(only_one.try_recv().map(|e| e.partition), Some(1));
        assert!(only_one.try_recv().is_none());
        assert!(other_queue.try_recv().is_none());
    }

    #[tokio::test]
    async fn the_stream_yields_buffered_events_then_ends_on_close() {
        use futures_core::Stream;
        let hub = EventHub::default();
        let mut stream = hub.subscribe(EventFilter::all(), 8);
        hub.publish([event(0), event(1)]);
        assert_eq!(stream.size_hint(), (2, None));
        async fn next(stream: &mut EventStream) -> Option<Event> {
            std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
        }
        assert_eq!(next(&mut stream).await.map(|e| e.partition), Some(0));
        assert_eq!(next(&mut stream).await.map(|e| e.partition), Some(1));
        hub.close();
        assert_eq!(next(&mut stream).await, None);
    }

    #[test]
    fn events_serialize_with_snake_case_kinds() {
        let json = serde_json::to_value(event(2)).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "delivered",
                "queue": "q",
                "partition": 2,
                "seq": 1,
                "message_id": "00000000-0000-0000-0000-000000000000",
            })
        );
        assert_eq!(
            serde_json::to_value(EventKind::DeadLettered).unwrap_or_default(),
            "dead_lettered"
        );
    }

    #[test]
    fn a_full_subscriber_is_dropped_and_its_stream_ends() {
        let hub = EventHub::default();
        let mut slow = hub.subscribe(EventFilter::all(), 2);
        let mut fast = hub.subscribe(EventFilter::all(), 100);
        hub.publish((0..10).map(event));
        assert_eq!(fast.try_recv().map(|e| e.partition), Some(0));
        assert!(slow.try_recv().is_some() && slow.try_recv().is_some());
        assert!(slow.try_recv().is_none());
        assert!(slow.0.is_closed(), "the full subscriber was not dropped");
        assert!(hub.active());
    }
}
