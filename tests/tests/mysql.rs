//! The conformance suite on MySql: how to connect, nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

outbox_tests::all_cases!(outbox_tests::Backend::MySql);
