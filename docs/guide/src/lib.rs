//! The outbox user guide: how to put a transactional outbox into a service,
//! choose its settings, run it in production and find out what is wrong.
//!
//! The API reference is the documentation of [`outbox_core`] and of the
//! backend crates ([`outbox_postgres`], [`outbox_mysql`], [`outbox_sqlite`]);
//! this guide is the prose around it. Every Rust example in it, in the
//! workspace README and in `docs/errors.md` and `docs/architecture.md`
//! compiles as a doctest of this crate (`cargo test -p outbox-guide --doc`);
//! those marked `no_run` need a database server or running workers.
//!
//! # Chapters
//!
//! 1. [Concepts](concepts): the dual-write problem, queues, partitions and
//!    keys, sequencing, processors and vacuum; the guarantees, the
//!    conformance test that proves each, and what they do not cover.
//! 2. [Choosing a mode and a profile](modes_and_profiles): transactional or
//!    leased delivery, handler types and outcomes, retry policy, timeouts and
//!    leases, the worker presets.
//! 3. [Migrations](migrations): creating the tables, adding them to your own
//!    `Migrator`, table prefixes, upgrades and dropping.
//! 4. [Operating](operating): stats, metrics, events, dead letters, the `outbox` CLI,
//!    vacuum, several instances, graceful stop, LISTEN/NOTIFY and PgBouncer,
//!    producer-only instances, Galera and multi-primary MySQL.
//! 5. [Tuning](tuning): the benchmark's figures, what bounds each, and the
//!    knobs.
//! 6. [Relays and trace propagation](relays_and_tracing): ready-made broker
//!    handlers and W3C trace context across the outbox.
//! 7. [Troubleshooting](troubleshooting): symptom, cause, fix.
//!
//! Included as they are, so that their examples compile too:
//! [the README](readme), [errors] (every error, its message and
//! what to do) and [architecture].
//!
//! # Coming from another outbox
//!
//! | you know | here it is |
//! |---|---|
//! | River / Oban: insert a job in your transaction | [`Outbox::enqueue`](outbox_core::Outbox::enqueue) on your transaction |
//! | River / Oban: queue, worker | a [`Queue`](outbox_core::Queue) and its handler |
//! | Oban: unique jobs, River: unique opts | a message id you choose ([`Message::message_id`](outbox_core::Message::message_id)); a reuse while the earlier message is still stored is [`DuplicateMessageId`](outbox_core::OutboxError::DuplicateMessageId) |
//! | MassTransit: bus outbox + delivery service | enqueue + the leased processor ([`Queue::leased`](outbox_core::Queue::leased)) |
//! | MassTransit: consumer outbox / inbox | the transactional processor ([`Queue::transactional`](outbox_core::Queue::transactional)): handler writes and acknowledgement commit together |
//! | Oban / River: discarded jobs, retry from the dashboard | dead letters, [`DeadLetters::requeue`](outbox_core::DeadLetters::requeue), `outbox dead-letters requeue` |
//! | Kafka: key → partition, order per partition | [`PartitionKey`](outbox_core::PartitionKey): FNV-1a of the key (a string, `u64`, `i64` or UUID, through its text) modulo the partition count; `PartitionKey::index(n)` for an explicit partition |
//!
//! What is different: there is no job scheduling (no "run at", no cron), no
//! priorities, and order is strict within a partition: a failing head
//! message holds back the messages behind it until it succeeds or is
//! dead-lettered.

#[doc = include_str!("../concepts.md")]
pub mod concepts {}

#[doc = include_str!("../modes-and-profiles.md")]
pub mod modes_and_profiles {}

#[doc = include_str!("../migrations.md")]
pub mod migrations {}

#[doc = include_str!("../operating.md")]
pub mod operating {}

#[doc = include_str!("../tuning.md")]
pub mod tuning {}

#[doc = include_str!("../relays-and-tracing.md")]
pub mod relays_and_tracing {}

#[doc = include_str!("../troubleshooting.md")]
pub mod troubleshooting {}

#[doc = include_str!("../../../README.md")]
pub mod readme {}

#[doc = include_str!("../../errors.md")]
pub mod errors {}

#[doc = include_str!("../../architecture.md")]
pub mod architecture {}
