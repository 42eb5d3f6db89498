//! The conformance suite on Postgres: how to connect, nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

outbox_tests::all_cases!(outbox_tests::Backend::Postgres);
