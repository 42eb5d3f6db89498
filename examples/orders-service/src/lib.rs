//! An orders service on axum and sea-orm that announces every order through
//! the transactional outbox.
//!
//! `POST /orders` inserts the order row and enqueues an `OrderPlaced`
//! message in one transaction; the outbox relays the messages, in order per
//! customer, to NATS JetStream (when `NATS_URL` is set) or to the log. See
//! the README for running it and `src/main.rs` for the wiring.

pub mod app;
pub mod backend;
pub mod config;
pub mod error;
pub mod json;
pub mod migration;
pub mod nats;
pub mod order;
pub mod prometheus;
pub mod relay;
pub mod routes;
pub mod shutdown;
pub mod sink;
pub mod start_error;
pub mod state;
pub mod telemetry;

pub use app::App;
pub use config::Config;
pub use start_error::StartError;
