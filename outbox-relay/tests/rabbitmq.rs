//! The RabbitMQ relay against a real broker.
//!
//! Each test declares its own exchange and exclusive queue (random suffix):
//! the queue goes with the test's connection, the auto-delete exchange with
//! its last binding. No test stops the broker, which other tests share.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![cfg(feature = "rabbitmq")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestDb, batch, delivery, enqueue, outcomes, skip, suffix, wait_for};
use futures_util::StreamExt;
use outbox_core::{LeasedHandler, Message, Outcome, Queue};
use outbox_relay::lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use outbox_relay::lapin::types::{AMQPValue, FieldTable};
use outbox_relay::lapin::{Connection, ConnectionProperties, ExchangeKind};
use outbox_relay::{Backoff, RabbitMqRelay};
use uuid::Uuid;

/// One message as the test's consumer received it.
#[derive(Debug, Clone)]
struct Received {
    message_id: Uuid,
    routing_key: String,
    partition: String,
    seq: i64,
    payload_type: Option<String>,
    content_type: Option<String>,
    delivery_mode: Option<u8>,
    traceparent: Option<String>,
}

/// The test's side of the broker: a topic exchange, a queue bound to it for
/// `binding`, and everything that arrives on the queue.
struct Broker {
    _connection: Connection,
    url: String,
    exchange: String,
    received: Arc<Mutex<Vec<Received>>>,
}

fn text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        other => panic!("header {name} is {other:?}, expected a long string"),
    }
}

impl Broker {
    /// Connects, or returns `None` after a loud skip.
    async fn connect(test: &str, binding: &str) -> Option<Self> {
        let url = common::rabbitmq_url()?;
        let connection = match Connection::connect(&url, ConnectionProperties::default()).await {
            Ok(connection) => connection,
            Err(err) => {
                skip(test, &url, err);
                return None;
            }
        };
        let suffix = suffix();
        let exchange = format!("outbox-relay-test-{suffix}");
        let queue = format!("outbox-relay-test-{suffix}");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare exchange");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare queue");
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind queue");
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "outbox-relay-test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let properties = &delivery.properties;
                let headers = properties.headers().clone().unwrap_or_default();
                let message_id = properties
                    .message_id()
                    .as_ref()
                    .expect("message_id property")
                    .as_str()
                    .parse()
                    .expect("uuid message_id");
                sink.lock().unwrap().push(Received {
                    message_id,
                    routing_key: delivery.routing_key.as_str().to_owned(),
                    partition: text(&headers, "Outbox-Partition").expect("Outbox-Partition"),
                    seq: text(&headers, "Outbox-Seq")
                        .expect("Outbox-Seq")
                        .parse()
                        .expect("integer seq"),
                    payload_type: properties.kind().as_ref().map(|t| t.as_str().to_owned()),
                    content_type: properties
                        .content_type()
                        .as_ref()
                        .map(|t| t.as_str().to_owned()),
                    delivery_mode: *properties.delivery_mode(),
                    traceparent: text(&headers, "traceparent"),
                });
            }
        });
        Some(Self {
            _connection: connection,
            url,
            exchange,
            received,
        })
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Drops repeated message ids (keeping the first copy) and checks that each
/// partition then holds seq 1, 2, 3, ... in order; returns the copies dropped.
fn assert_in_order_without_duplicates(received: &[Received]) -> usize {
    let mut seen = HashSet::new();
    let mut seqs: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for message in received {
        if seen.insert(message.message_id) {
            seqs.entry(&message.partition)
                .or_default()
                .push(message.seq);
        }
    }
    for (partition, seqs) in &seqs {
        common::assert_in_order(partition, seqs);
    }
    received.len() - seen.len()
}

/// Closes the broker side of the connection named `name` with rabbitmqctl;
/// returns false when rabbitmqctl cannot do it here.
async fn close_connection_on_broker(name: &str) -> bool {
    let listed = tokio::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--silent"])
        .output()
        .await;
    let Ok(listed) = listed else { return false };
    let listing = String::from_utf8_lossy(&listed.stdout);
    // client_properties holds {"connection_name",longstr,"<name>"}.
    let quoted = format!("\"{name}\"");
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(&quoted))
        .filter_map(|line| line.split('\t').next())
        .map(str::trim)
        .collect();
    if pids.is_empty() {
        return false;
    }
    for pid in pids {
        let closed = tokio::process::Command::new("rabbitmqctl")
            .args([
                "close_connection",
                pid,
                "outbox-relay test: broker side close",
            ])
            .status()
            .await;
        if !closed.is_ok_and(|status| status.success()) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_rabbitmq_once_each_in_order_per_partition() {
    const TEST: &str = "messages_arrive_in_rabbitmq_once_each_in_order_per_partition";
    let Some(broker) = Broker::connect(TEST, "orders.*").await else {
        return;
    };
    let relay = RabbitMqRelay::builder(broker.url.clone())
        .exchange(broker.exchange.clone())
        .routing_key("{queue}.{partition}")
        .build()
        .expect("relay");
    let db = TestDb::new().await;
    let handle = db.start(Queue::leased("orders", 4, relay.clone())).await;

    const N: usize = 400;
    let mut ids = Vec::new();
    for chunk in 0..4 {
        let messages = (chunk * 100..(chunk + 1) * 100)
            .map(|i: usize| {
                let mut message = Message::new("OrderPlaced", format!("{i}").into_bytes())
                    .header("content-type", "text/plain");
                if i.is_multiple_of(2) {
                    message = message.header("traceparent", format!("00-{i:032x}-{i:016x}-01"));
                }
                (format!("customer-{}", i % 13), message)
            })
            .collect();
        ids.extend(enqueue(handle.outbox(), "orders", messages).await);
    }
    wait_for("every message relayed", Duration::from_secs(90), || async {
        common::backlog(&handle, "orders").await == (0, 0)
    })
    .await;
    wait_for(
        "every message consumed",
        Duration::from_secs(30),
        || async { broker.count() >= N },
    )
    .await;
    handle.stop().await;
    relay.close().await;

    let received = broker.received();
    assert_eq!(
        received.len(),
        N,
        "received {} messages, sent {N}",
        received.len()
    );
    let sent: HashSet<Uuid> = ids.iter().copied().collect();
    let got: HashSet<Uuid> = received.iter().map(|m| m.message_id).collect();
    assert_eq!(got, sent, "each message exactly once");
    assert_eq!(assert_in_order_without_duplicates(&received), 0);
    let partitions: HashSet<&str> = received.iter().map(|m| m.partition.as_str()).collect();
    assert_eq!(partitions.len(), 4, "{partitions:?}");
    for message in &received {
        assert_eq!(message.routing_key, format!("orders.{}", message.partition));
        assert_eq!(message.payload_type.as_deref(), Some("OrderPlaced"));
        assert_eq!(message.content_type.as_deref(), Some("text/plain"));
        assert_eq!(message.delivery_mode, Some(2));
    }
    let traced = received.iter().filter(|m| m.traceparent.is_some()).count();
    assert_eq!(traced, N / 2, "traceparent carried on every even message");
}

#[tokio::test]
async fn unroutable_message_is_retried_not_acknowledged() {
    const TEST: &str = "unroutable_message_is_retried_not_acknowledged";
    let Some(broker) = Broker::connect(TEST, "orders.*").await else {
        return;
    };
    let relay = RabbitMqRelay::builder(broker.url.clone())
        .exchange(broker.exchange.clone())
        .routing_key("{queue}.{partition}")
        .build()
        .expect("relay");

    // Bound: "orders.*". "invoices.0" reaches no queue and comes back.
    let unroutable = batch("invoices", 0, vec![delivery(1, &[]), delivery(2, &[])]);
    let got = outcomes(LeasedHandler::handle(&relay, &unroutable).await);
    assert!(
        matches!(got.as_slice(), [Outcome::Retry { reason, .. }] if reason.contains("unroutable")),
        "{got:?}"
    );

    // The same relay still publishes routable messages.
    let routable = batch("orders", 1, vec![delivery(1, &[]), delivery(2, &[])]);
    assert_eq!(
        outcomes(LeasedHandler::handle(&relay, &routable).await),
        [Outcome::Success, Outcome::Success]
    );

    // A missing exchange: the broker closes the channel; Retry, and the next
    // batch gets a new channel.
    let missing = RabbitMqRelay::builder(broker.url.clone())
        .exchange(format!("outbox-relay-missing-{}", suffix()))
        .build()
        .expect("relay");
    let got = outcomes(LeasedHandler::handle(&missing, &routable).await);
    assert!(matches!(got.as_slice(), [Outcome::Retry { .. }]), "{got:?}");
    let got = outcomes(LeasedHandler::handle(&missing, &routable).await);
    assert!(matches!(got.as_slice(), [Outcome::Retry { .. }]), "{got:?}");

    wait_for(
        "two routable messages consumed",
        Duration::from_secs(10),
        || async { broker.count() >= 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = broker.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(assert_in_order_without_duplicates(&received), 0);
    relay.close().await;
    missing.close().await;
}

#[tokio::test]
async fn unreachable_broker_is_unavailable() {
    let relay = RabbitMqRelay::builder("amqp://guest:guest@127.0.0.1:1/%2f")
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(30),
        ))
        .build()
        .expect("relay");
    let two = batch("orders", 0, vec![delivery(1, &[]), delivery(2, &[])]);
    let mut afters = Vec::new();
    for _ in 0..3 {
        let got = outcomes(LeasedHandler::handle(&relay, &two).await);
        match got.as_slice() {
            [
                Outcome::Unavailable {
                    reason,
                    after: Some(after),
                },
            ] => {
                assert!(reason.contains("127.0.0.1:1"), "{reason}");
                assert!(
                    !reason.contains("guest:guest"),
                    "credentials leaked: {reason}"
                );
                afters.push(*after);
            }
            other => panic!("expected one Unavailable, got {other:?}"),
        }
    }
    // 100 ms, 200 ms, 400 ms, less up to half each.
    assert!(afters[0] <= Duration::from_millis(100), "{afters:?}");
    assert!(afters[2] >= Duration::from_millis(200), "{afters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reconnects_after_the_connection_drops_mid_stream() {
    const TEST: &str = "relay_reconnects_after_the_connection_drops_mid_stream";
    let Some(broker) = Broker::connect(TEST, "orders.*").await else {
        return;
    };
    let name = format!("outbox-relay-test-{}", suffix());
    let relay = RabbitMqRelay::builder(broker.url.clone())
        .exchange(broker.exchange.clone())
        .routing_key("{queue}.{partition}")
        .connection_properties(
            ConnectionProperties::default().with_connection_name(name.clone().into()),
        )
        .backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .build()
        .expect("relay");
    let db = TestDb::new().await;
    let (recording, outcomes_seen) = common::Recording::new(relay.clone());
    let handle = db
        .start(Queue::leased("orders", 4, recording).batch_size(20))
        .await;

    // A backlog, so that the relay is publishing when its connection drops.
    let batch_of = |from: usize, to: usize| -> Vec<(String, Message)> {
        (from..to)
            .map(|i: usize| {
                (
                    format!("customer-{}", i % 11),
                    Message::new("OrderPlaced", vec![]),
                )
            })
            .collect()
    };
    let mut ids = enqueue(handle.outbox(), "orders", batch_of(0, 1500)).await;
    wait_for("a first part consumed", Duration::from_secs(30), || async {
        broker.count() >= 200
    })
    .await;
    // The client closes the connection under the relay's feet.
    relay.close().await;
    let count_at_client_close = broker.count();

    ids.extend(enqueue(handle.outbox(), "orders", batch_of(1500, 3000)).await);
    wait_for(
        "a second part consumed",
        Duration::from_secs(30),
        || async { broker.count() >= count_at_client_close + 200 },
    )
    .await;
    // The broker closes the relay's connection, as a broker restart would.
    let closed_by_broker = close_connection_on_broker(&name).await;
    if !closed_by_broker {
        common::note(&format!(
            "!!! {TEST}: rabbitmqctl could not close the connection; closing it from the client"
        ));
        relay.close().await;
    }
    let count_at_broker_close = broker.count();
    ids.extend(enqueue(handle.outbox(), "orders", batch_of(3000, 3300)).await);

    wait_for("every message relayed", Duration::from_secs(90), || async {
        common::backlog(&handle, "orders").await == (0, 0)
    })
    .await;
    let sent: HashSet<Uuid> = ids.iter().copied().collect();
    wait_for("every message consumed", Duration::from_secs(30), || {
        let got: HashSet<Uuid> = broker.received().iter().map(|m| m.message_id).collect();
        let done = got == sent;
        async move { done }
    })
    .await;
    handle.stop().await;
    relay.close().await;

    let received = broker.received();
    let duplicates = assert_in_order_without_duplicates(&received);
    let got: HashSet<Uuid> = received.iter().map(|m| m.message_id).collect();
    assert_eq!(got, sent, "every message at least once");
    let unavailable = outcomes_seen
        .lock()
        .unwrap()
        .iter()
        .filter(|o| matches!(o, Outcome::Unavailable { .. }))
        .count();
    eprintln!(
        "{TEST}: {} sent, {} received, {duplicates} duplicates, {unavailable} Unavailable \
         outcomes; client close at {count_at_client_close} received, broker close \
         ({closed_by_broker}) at {count_at_broker_close}",
        sent.len(),
        received.len()
    );
}
