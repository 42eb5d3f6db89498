//! A web console for the outbox: queues, partitions, dead letters and
//! instances, as an axum `Router` a service mounts under a path of its
//! choice (the `outbox console` command serves it too).
//!
//! ```no_run
//! # async fn example(handle: outbox_core::OutboxHandle) -> std::io::Result<()> {
//! let console = outbox_web::Console::new(handle.outbox().admin());
//! let app = axum::Router::new().nest("/outbox", console.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Pages are rendered on the server, with a little JavaScript (action
//! confirmation, auto-refresh) and a stylesheet embedded in the binary: no
//! build step, and the console works offline. Everything shown from the
//! database is HTML-escaped. The console is read-only unless the host calls
//! [`Console::allow_actions`]; actions are POSTs with a CSRF token, and the
//! host can check each with [`Console::authorize`].
//!
//! Each page load costs one admin read: the queues and partitions pages one
//! [`OutboxAdmin::stats`](outbox_core::OutboxAdmin::stats) (four grouped
//! queries, whatever the partition count), a dead-letter page one indexed
//! query, the instances page one query.

mod console;
mod escape;
mod page;
mod payload;
mod route;
mod sample;

pub use console::{Authorize, Console};
pub use escape::escape;
pub use payload::PAYLOAD_CAP;
