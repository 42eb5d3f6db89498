//! Orders posted over HTTP reach NATS JetStream exactly once, in order per
//! customer, also when the service is SIGKILLed or the broker dies mid-stream.
//!
//! Real servers: the service binary as a child process, NATS at
//! `OUTBOX_TEST_NATS_URL` (default `nats://127.0.0.1:4222`) or a private
//! `nats-server`, PostgreSQL at `OUTBOX_TEST_POSTGRES_URL`. A missing server
//! is a loud skip, a failure under `OUTBOX_REQUIRE_ALL_BACKENDS=1`.
//!
//! ```text
//! cargo test -p orders-service --test delivery
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use outbox_relay::async_nats::jetstream::Context;
use support::check::{Summary, check};
use support::database::{Backend, TestDatabase};
use support::load::{Load, Posted};
use support::nats::{self, PrivateServer, StreamNames};
use support::service::Service;
use support::{admin, wait_for};

const CUSTOMERS: usize = 5;
const PER_CUSTOMER: usize = 40;
const ORDERS: usize = CUSTOMERS * PER_CUSTOMER;
/// A short lease, so that a restarted service takes over a killed one's
/// partitions within seconds.
const LEASE_MS: &str = "4000";

fn service_env(
    db: &TestDatabase,
    nats_url: &str,
    names: &StreamNames,
) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url()),
        ("NATS_URL", nats_url.to_owned()),
        ("NATS_STREAM", names.stream.clone()),
        ("NATS_SUBJECT_PREFIX", names.prefix.clone()),
        ("OUTBOX_PARTITIONS", "4".to_owned()),
        ("OUTBOX_LEASE_MS", LEASE_MS.to_owned()),
    ]
}

/// Waits until the outbox has nothing left to relay and the stream holds at
/// least every confirmed order, then reads the stream and checks it.
async fn settle_and_check(
    service: &Service,
    nats: &Context,
    names: &StreamNames,
    posted: &[Posted],
) -> Summary {
    let confirmed = posted
        .iter()
        .filter(|p| matches!(p.outcome, support::load::Outcome::Confirmed { .. }))
        .count() as u64;
    wait_for(
        "the outbox to relay every order",
        Duration::from_secs(120),
        || async {
            admin::backlog(service.addr).await == 0
                && nats::count(nats, &names.stream).await >= confirmed
        },
    )
    .await;
    let messages = nats::read_all(nats, &names.stream).await;
    let (problems, summary) = check(posted, &messages, &names.prefix);
    assert!(
        problems.is_empty(),
        "{} problems ({summary:?}):\n{}\n--- service log ---\n{}",
        problems.len(),
        problems.join("\n"),
        service.logs()
    );
    let queue = admin::orders_queue(service.addr).await;
    assert_eq!(
        queue["dead_letters"]["total"], 0,
        "dead letters after the run: {queue}"
    );
    summary
}

async fn stop_and_clean(
    mut service: Service,
    nats: &Context,
    names: &StreamNames,
    db: TestDatabase,
) {
    let status = service.terminate().await;
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        service.logs()
    );
    nats::delete_stream(nats, &names.stream).await;
    db.drop_database().await;
}

async fn exactly_once_in_order(backend: Backend) {
    let test = format!("orders_reach_jetstream_exactly_once_in_order on {backend:?}");
    let Some(nats) = nats::shared_or_skip(&test).await else {
        return;
    };
    let Some(db) = TestDatabase::create(backend, &test).await else {
        return;
    };
    let names = StreamNames::random();
    let service = Service::start(&service_env(&db, &nats::shared_url(), &names)).await;

    let posted = Load::start(service.addr, CUSTOMERS, PER_CUSTOMER)
        .finish()
        .await;
    let summary = settle_and_check(&service, &nats, &names, &posted).await;
    assert_eq!(summary.confirmed, ORDERS, "{summary:?}");
    assert_eq!(summary.messages, ORDERS, "{summary:?}");
    assert_eq!(db.count_orders().await, ORDERS as i64);
    eprintln!("{test}: {summary:?}");
    stop_and_clean(service, &nats, &names, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_jetstream_exactly_once_in_order_on_sqlite() {
    exactly_once_in_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_jetstream_exactly_once_in_order_on_postgres() {
    exactly_once_in_order(Backend::Postgres).await;
}

async fn relay_killed_mid_stream(backend: Backend) {
    let test = format!("a_killed_relay_resumes_without_loss_or_duplicates on {backend:?}");
    let Some(nats) = nats::shared_or_skip(&test).await else {
        return;
    };
    let Some(db) = TestDatabase::create(backend, &test).await else {
        return;
    };
    let names = StreamNames::random();
    let env = service_env(&db, &nats::shared_url(), &names);
    let mut first = Service::start(&env).await;

    let load = Load::start(first.addr, CUSTOMERS, PER_CUSTOMER);
    wait_for(
        "a third of the orders on the stream",
        Duration::from_secs(60),
        || async { nats::count(&nats, &names.stream).await >= (ORDERS / 3) as u64 },
    )
    .await;
    first.kill();
    let confirmed_at_kill = load.confirmed();
    let relayed_at_kill = nats::count(&nats, &names.stream).await;
    drop(first);

    let second = Service::start(&env).await;
    load.redirect(second.addr);
    let mut posted = load.finish().await;
    // Ten more per customer on the new instance, after the ones in flight.
    let after = PER_CUSTOMER..PER_CUSTOMER + 10;
    posted.extend(
        Load::start_range(second.addr, CUSTOMERS, after)
            .finish()
            .await,
    );
    let summary = settle_and_check(&second, &nats, &names, &posted).await;
    assert_eq!(
        summary.confirmed + summary.uncertain,
        ORDERS + CUSTOMERS * 10,
        "{summary:?}"
    );
    eprintln!(
        "{test}: SIGKILL after {confirmed_at_kill} confirmed orders, {relayed_at_kill} on the stream; {summary:?}"
    );
    stop_and_clean(second, &nats, &names, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_relay_resumes_without_loss_or_duplicates_on_sqlite() {
    relay_killed_mid_stream(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_relay_resumes_without_loss_or_duplicates_on_postgres() {
    relay_killed_mid_stream(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let test = "a_broker_restart_mid_stream_loses_and_duplicates_nothing on Sqlite";
    let Some(mut server) = PrivateServer::start_or_skip(test).await else {
        return;
    };
    let Some(db) = TestDatabase::create(Backend::Sqlite, test).await else {
        return;
    };
    let names = StreamNames::random();
    let nats = nats::try_connect(&server.url())
        .await
        .expect("private server");
    let service = Service::start(&service_env(&db, &server.url(), &names)).await;

    // Half the orders while the broker is up; it dies once a third of them
    // are on the stream.
    let half = PER_CUSTOMER / 2;
    let before = Load::start_range(service.addr, CUSTOMERS, 0..half);
    wait_for(
        "a third of the first half on the stream",
        Duration::from_secs(60),
        || async { nats::count(&nats, &names.stream).await >= (CUSTOMERS * half / 3) as u64 },
    )
    .await;
    let relayed_before_kill = nats::count(&nats, &names.stream).await;
    server.kill();
    let mut posted = before.finish().await;

    // The other half while it is down: they commit, and the relay reports
    // the broker unavailable (an outcome that uses up no attempt).
    let during = Load::start_range(service.addr, CUSTOMERS, half..PER_CUSTOMER);
    let started = std::time::Instant::now();
    while !service.logged(&["not published", "Unavailable"]) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay did not report the broker unavailable within 30 s:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    posted.extend(during.finish().await);
    let queue = admin::orders_queue(service.addr).await;
    let waiting = queue["incoming"].as_u64().unwrap() + queue["unprocessed"].as_u64().unwrap();
    assert!(waiting > 0, "nothing waits for the broker: {queue}");

    server.restart().await;
    let nats = nats::try_connect(&server.url())
        .await
        .expect("restarted server");
    let summary = settle_and_check(&service, &nats, &names, &posted).await;
    assert_eq!(summary.confirmed, ORDERS, "{summary:?}");
    assert_eq!(summary.messages, ORDERS, "{summary:?}");
    let queue = admin::orders_queue(service.addr).await;
    assert_eq!(queue["blocked_partitions"], 0, "{queue}");
    eprintln!(
        "{test}: broker killed with {relayed_before_kill} orders on the stream, {waiting} waiting for it when it came back; {summary:?}"
    );
    stop_and_clean(service, &nats, &names, db).await;
}
