//! What the end-to-end tests share: the service as a child process, a small
//! HTTP client, NATS and database set-up, a load of customers placing
//! orders, and the check of what reached the stream.

#![allow(dead_code)] // Each test binary uses a different part of the support code.

pub mod admin;
pub mod check;
pub mod database;
pub mod http;
pub mod load;
pub mod nats;
pub mod service;

pub use outbox_test_support::{skip, wait_for};

/// A short random suffix for names no other test uses.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
