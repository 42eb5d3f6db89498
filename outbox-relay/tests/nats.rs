//! The JetStream relay against a real NATS server with JetStream.
//!
//! Each test has its own stream and subjects (random suffix) and deletes its
//! stream when it passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![cfg(feature = "nats")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Recording, TestDb, batch, delivery, enqueue, outcomes, skip, suffix, wait_for};
use futures_util::StreamExt;
use outbox_core::{LeasedHandler, Message, Outcome, Queue, RetryPolicy};
use outbox_relay::async_nats::jetstream::{self, Context, consumer::pull::OrderedConfig};
use outbox_relay::async_nats::{self, ConnectOptions};
use outbox_relay::{Backoff, JetStreamRelay, ensure_stream};
use uuid::Uuid;

/// A JetStream context, or `None` after a loud skip.
async fn connect(test: &str) -> Option<Context> {
    let url = common::nats_url()?;
    match async_nats::connect(&url).await {
        Ok(client) => Some(jetstream::new(client)),
        Err(err) => {
            skip(test, &url, err);
            None
        }
    }
}

/// Deletes test streams more than ten minutes old: what failed tests left.
async fn sweep(js: &Context) {
    let mut names = js.stream_names();
    let mut stale = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if !name.starts_with(STREAM_PREFIX) {
            continue;
        }
        let Ok(mut stream) = js.get_stream(&name).await else {
            continue;
        };
        let Ok(info) = stream.info().await else {
            continue;
        };
        if time::OffsetDateTime::now_utc() - info.created > time::Duration::minutes(10) {
            stale.push(name);
        }
    }
    for name in stale {
        let _ = js.delete_stream(&name).await;
    }
}

const STREAM_PREFIX: &str = "OUTBOX_RELAY_TEST_";

/// This test's stream, taking `relaytest.<suffix>.>`; returns its name and
/// subject prefix.
async fn stream(js: &Context) -> (String, String) {
    sweep(js).await;
    let suffix = suffix();
    let name = format!("{STREAM_PREFIX}{suffix}");
    let prefix = format!("relaytest.{suffix}");
    ensure_stream(js, &name, &[&format!("{prefix}.>")])
        .await
        .expect("create stream");
    (name, prefix)
}

async fn stream_len(js: &Context, name: &str) -> u64 {
    let mut stream = js.get_stream(name).await.expect("get stream");
    stream.info().await.expect("stream info").state.messages
}

/// Reads the whole stream with an ordered consumer, in stream order.
async fn read_all(js: &Context, name: &str) -> Vec<jetstream::Message> {
    let expected = stream_len(js, name).await;
    let stream = js.get_stream(name).await.expect("get stream");
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("consume");
    let mut read = Vec::new();
    while (read.len() as u64) < expected {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("stream message within 10 s")
            .expect("stream not ended")
            .expect("stream message");
        read.push(next);
    }
    read
}

fn header(message: &jetstream::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map(|value| value.as_str().to_owned())
}

fn traceparent(i: usize) -> String {
    format!("00-{:032x}-{:016x}-01", i + 1, i + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_jetstream_once_each_in_order_per_partition() {
    const TEST: &str = "messages_arrive_in_jetstream_once_each_in_order_per_partition";
    let Some(js) = connect(TEST).await else {
        return;
    };
    let (name, prefix) = stream(&js).await;
    let relay = JetStreamRelay::builder(js.clone())
        .subject(format!("{prefix}.{{queue}}.{{partition}}"))
        .build()
        .expect("relay");
    let db = TestDb::new().await;
    let handle = db.start(Queue::leased("orders", 4, relay)).await;

    const N: usize = 500;
    let mut ids = Vec::new();
    for chunk in 0..5 {
        let messages = (chunk * 100..(chunk + 1) * 100)
            .map(|i: usize| {
                let mut message =
                    Message::new("OrderPlaced", format!("{{\"i\":{i}}}").into_bytes())
                        .header("tenant", format!("t{}", i % 3));
                if i.is_multiple_of(2) {
                    message = message.header("traceparent", traceparent(i));
                }
                (format!("customer-{}", i % 17), message)
            })
            .collect();
        ids.extend(enqueue(handle.outbox(), "orders", messages).await);
    }
    wait_for("every message relayed", Duration::from_secs(90), || async {
        common::backlog(&handle, "orders").await == (0, 0)
    })
    .await;
    handle.stop().await;

    let read = read_all(&js, &name).await;
    assert_eq!(
        read.len(),
        N,
        "the stream holds {} messages, sent {N}",
        read.len()
    );
    let sent: HashSet<Uuid> = ids.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut seqs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut last_i_per_customer: BTreeMap<usize, usize> = BTreeMap::new();
    for message in &read {
        let id: Uuid = header(message, "Nats-Msg-Id")
            .expect("Nats-Msg-Id")
            .parse()
            .expect("uuid");
        assert!(sent.contains(&id), "unknown message id {id}");
        assert!(seen.insert(id), "message {id} is in the stream twice");
        let partition = header(message, "Outbox-Partition").expect("Outbox-Partition");
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}.orders.{partition}")
        );
        assert_eq!(header(message, "Outbox-Queue").as_deref(), Some("orders"));
        assert_eq!(
            header(message, "Outbox-Payload-Type").as_deref(),
            Some("OrderPlaced")
        );
        let enqueued_at: i64 = header(message, "Outbox-Enqueued-At")
            .expect("Outbox-Enqueued-At")
            .parse()
            .expect("integer");
        assert!(enqueued_at > 1_600_000_000_000, "{enqueued_at}");
        let seq: i64 = header(message, "Outbox-Seq")
            .expect("Outbox-Seq")
            .parse()
            .expect("integer");
        seqs.entry(partition).or_default().push(seq);

        let payload = std::str::from_utf8(&message.payload).expect("utf-8");
        let i: usize = payload
            .trim_start_matches("{\"i\":")
            .trim_end_matches('}')
            .parse()
            .expect("payload");
        assert_eq!(header(message, "tenant"), Some(format!("t{}", i % 3)));
        let expected_trace = i.is_multiple_of(2).then(|| traceparent(i));
        assert_eq!(
            header(message, "traceparent"),
            expected_trace,
            "message {i}"
        );
        if let Some(previous) = last_i_per_customer.insert(i % 17, i) {
            assert!(previous < i, "customer {}: {i} after {previous}", i % 17);
        }
    }
    assert_eq!(seen, sent);
    assert_eq!(
        seqs.len(),
        4,
        "messages landed on partitions {:?}",
        seqs.keys()
    );
    for (partition, seqs) in &seqs {
        common::assert_in_order(partition, seqs);
    }
    js.delete_stream(&name).await.expect("delete stream");
}

#[tokio::test]
async fn redelivered_message_is_deduplicated_by_the_stream() {
    const TEST: &str = "redelivered_message_is_deduplicated_by_the_stream";
    let Some(js) = connect(TEST).await else {
        return;
    };
    let (name, prefix) = stream(&js).await;
    let relay = JetStreamRelay::builder(js.clone())
        .subject(format!("{prefix}.{{queue}}.{{partition}}"))
        .build()
        .expect("relay");

    let first = delivery(1, &[]);
    let once = batch("orders", 0, vec![first.clone()]);
    assert_eq!(
        outcomes(LeasedHandler::handle(&relay, &once).await),
        [Outcome::Success]
    );
    // The outbox delivers it again (a lost ack, a lease that moved): the
    // relay publishes it again and the stream drops the copy.
    assert_eq!(
        outcomes(LeasedHandler::handle(&relay, &once).await),
        [Outcome::Success]
    );
    assert_eq!(stream_len(&js, &name).await, 1);

    let second = batch("orders", 0, vec![first, delivery(2, &[])]);
    assert_eq!(
        outcomes(LeasedHandler::handle(&relay, &second).await),
        [Outcome::Success, Outcome::Success]
    );
    assert_eq!(stream_len(&js, &name).await, 2);
    js.delete_stream(&name).await.expect("delete stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_unavailable_and_never_dead_letters() {
    const TEST: &str = "unreachable_broker_is_unavailable_and_never_dead_letters";
    let Some(js) = connect(TEST).await else {
        return;
    };
    let (name, prefix) = stream(&js).await;
    let subject = format!("{prefix}.{{queue}}.{{partition}}");

    // A client whose server never answers: port 1 is closed.
    let down = ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .expect("client connecting in the background");
    let relay = JetStreamRelay::builder(jetstream::new(down))
        .subject(subject.clone())
        .publish_timeout(Duration::from_millis(200))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .build()
        .expect("relay");

    // Called directly: the first message is Unavailable, nothing after it.
    let two = batch("orders", 0, vec![delivery(1, &[]), delivery(2, &[])]);
    let first = outcomes(LeasedHandler::handle(&relay, &two).await);
    let [
        Outcome::Unavailable {
            after: Some(first_after),
            ..
        },
    ] = first.as_slice()
    else {
        panic!("expected one Unavailable, got {first:?}");
    };
    assert!(*first_after <= Duration::from_millis(10), "{first_after:?}");
    let again = outcomes(LeasedHandler::handle(&relay, &two).await);
    let [
        Outcome::Unavailable {
            after: Some(second_after),
            ..
        },
    ] = again.as_slice()
    else {
        panic!("expected one Unavailable, got {again:?}");
    };
    assert!(
        *second_after >= Duration::from_millis(10),
        "the backoff grows: {second_after:?}"
    );

    // Through the outbox, with a policy that dead-letters after 2 attempts:
    // many Unavailable outcomes later, nothing is dead-lettered.
    let db = TestDb::new().await;
    let (recording, seen) = Recording::new(relay);
    let policy = RetryPolicy::exponential(Duration::from_millis(10), Duration::from_millis(20))
        .max_attempts(Some(2));
    let handle = db
        .start(Queue::leased("orders", 1, recording).retry(policy.clone()))
        .await;
    let messages = (0..3)
        .map(|i| ("k".to_owned(), Message::new("OrderPlaced", vec![i])))
        .collect();
    enqueue(handle.outbox(), "orders", messages).await;
    wait_for("five Unavailable outcomes", Duration::from_secs(30), || {
        let count = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|o| matches!(o, Outcome::Unavailable { .. }))
            .count();
        async move { count >= 5 }
    })
    .await;
    handle.stop().await;
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|o| matches!(o, Outcome::Unavailable { .. })),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        common::backlog(&handle, "orders").await,
        (3, 0),
        "the messages wait, none dead-lettered"
    );

    // The broker is back (a relay that reaches it): the partition delivers.
    let relay = JetStreamRelay::builder(js.clone())
        .subject(subject)
        .build()
        .expect("relay");
    let handle = db
        .start(Queue::leased("orders", 1, relay).retry(policy))
        .await;
    wait_for(
        "the waiting messages relayed",
        Duration::from_secs(30),
        || async { common::backlog(&handle, "orders").await == (0, 0) },
    )
    .await;
    handle.stop().await;
    let read = read_all(&js, &name).await;
    let seqs: Vec<i64> = read
        .iter()
        .map(|m| header(m, "Outbox-Seq").unwrap().parse().unwrap())
        .collect();
    common::assert_in_order("0", &seqs);
    assert_eq!(seqs.len(), 3);
    js.delete_stream(&name).await.expect("delete stream");
}

#[tokio::test]
async fn messages_that_cannot_be_published_are_rejected_or_retried() {
    const TEST: &str = "messages_that_cannot_be_published_are_rejected_or_retried";
    let Some(js) = connect(TEST).await else {
        return;
    };
    let (name, prefix) = stream(&js).await;
    let relay = JetStreamRelay::builder(js.clone())
        .subject(format!("{prefix}.{{header:tenant}}"))
        .build()
        .expect("relay");

    // A missing header and a header NATS cannot carry are rejected; the
    // messages around them go through.
    let mixed = batch(
        "orders",
        0,
        vec![
            delivery(1, &[("tenant", "a")]),
            delivery(2, &[]),
            delivery(3, &[("tenant", "a"), ("bad name", "x")]),
            delivery(4, &[("tenant", "b")]),
        ],
    );
    let got = outcomes(LeasedHandler::handle(&relay, &mixed).await);
    assert!(matches!(got[0], Outcome::Success), "{got:?}");
    assert!(matches!(got[1], Outcome::Reject { .. }), "{got:?}");
    assert!(matches!(got[2], Outcome::Reject { .. }), "{got:?}");
    assert!(matches!(got[3], Outcome::Success), "{got:?}");
    assert_eq!(stream_len(&js, &name).await, 2);

    // No stream takes the subject: Retry (an attempt is counted), and the
    // batch stops there.
    let nowhere = JetStreamRelay::builder(js.clone())
        .subject(format!("outbox-relay-no-stream.{}.{{queue}}", suffix()))
        .build()
        .expect("relay");
    let got = outcomes(
        LeasedHandler::handle(
            &nowhere,
            &batch("orders", 0, vec![delivery(1, &[]), delivery(2, &[])]),
        )
        .await,
    );
    assert!(
        matches!(got.as_slice(), [Outcome::Retry { reason, .. }] if reason.contains("no JetStream stream")),
        "{got:?}"
    );
    js.delete_stream(&name).await.expect("delete stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_queue_relays_in_order() {
    const TEST: &str = "transactional_queue_relays_in_order";
    let Some(js) = connect(TEST).await else {
        return;
    };
    let (name, prefix) = stream(&js).await;
    let relay = JetStreamRelay::builder(js.clone())
        .subject(format!("{prefix}.{{queue}}.{{partition}}"))
        .build()
        .expect("relay");
    let db = TestDb::new().await;
    let handle = db.start(Queue::transactional("orders", 2, relay)).await;
    let messages = (0..40)
        .map(|i| (format!("k{}", i % 5), Message::new("OrderPlaced", vec![i])))
        .collect();
    enqueue(handle.outbox(), "orders", messages).await;
    wait_for("every message relayed", Duration::from_secs(30), || async {
        common::backlog(&handle, "orders").await == (0, 0)
    })
    .await;
    handle.stop().await;
    let read = read_all(&js, &name).await;
    assert_eq!(read.len(), 40);
    let mut seqs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for message in &read {
        seqs.entry(header(message, "Outbox-Partition").unwrap())
            .or_default()
            .push(header(message, "Outbox-Seq").unwrap().parse().unwrap());
    }
    for (partition, seqs) in &seqs {
        common::assert_in_order(partition, seqs);
    }
    js.delete_stream(&name).await.expect("delete stream");
}
