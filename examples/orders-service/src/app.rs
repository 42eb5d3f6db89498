//! The service assembled: database, migrations, relay, outbox, router.

use std::time::Duration;

use axum::Router;
use outbox_core::sea_orm::{ConnectOptions, DatabaseConnection};
use outbox_core::{OutboxBuilder, OutboxHandle, Queue, RetryPolicy};

use crate::config::Config;
use crate::order::ORDERS_QUEUE;
use crate::relay::Relay;
use crate::routes;
use crate::start_error::StartError;
use crate::state::AppState;

/// A started service: the outbox workers run; serve [`App::router`], then
/// call [`App::stop`].
#[derive(Debug)]
pub struct App {
    handle: OutboxHandle,
    db: DatabaseConnection,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl App {
    /// Connects, runs the migrations, sets up the relay and starts the outbox.
    ///
    /// # Errors
    /// [`StartError`] naming the step that failed.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let mut options = ConnectOptions::new(config.database_url.clone());
        options
            .max_connections(10)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        let db = outbox_core::connect_with(options)
            .await
            .map_err(StartError::Connect)?;
        crate::migration::run(&db, config.backend)
            .await
            .map_err(StartError::Migrate)?;

        let timeouts = Timeouts::for_lease(config.lease);
        let relay = Relay::from_config(config.nats.as_ref(), timeouts.publish).await?;
        tracing::info!(
            backend = ?config.backend,
            partitions = config.partitions,
            relay = %relay.describe(),
            "starting the outbox"
        );
        // Before the outbox starts: it registers its metric handles at start.
        let metrics = crate::prometheus::install();
        let handle = OutboxBuilder::new(db.clone(), config.backend.dialect())
            .queue(orders_queue(config, &timeouts, relay))
            .start()
            .await?;
        Ok(Self {
            handle,
            db,
            metrics,
        })
    }

    /// The HTTP routes, on this service's outbox.
    pub fn router(&self) -> Router {
        let console = outbox_web::Console::new(self.handle.outbox().admin());
        routes::router(AppState {
            outbox: self.handle.outbox().clone(),
            metrics: self.metrics.clone(),
        })
        .nest("/outbox", console.router())
        // The console's home with a trailing slash too.
        .route(
            "/outbox/",
            axum::routing::get(|| async { axum::response::Redirect::permanent("/outbox") }),
        )
    }

    /// Stops the outbox workers (each finishes and acknowledges the batch it
    /// is relaying) and closes the pool.
    pub async fn stop(self) {
        self.handle.stop().await;
        if let Err(err) = self.db.close().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
    }
}

/// The `orders` queue: leased mode (the relay runs outside any transaction).
/// A broker outage is `Outcome::Unavailable` for the JetStream relay, which
/// holds the partition back without using up attempts, so it never
/// dead-letters anything; a message the broker refuses (`Retry`) is tried 10
/// times with a backoff from 100 ms to 10 s, then becomes a dead letter for
/// `/admin/outbox/dead-letters`.
fn orders_queue(config: &Config, timeouts: &Timeouts, relay: Relay) -> Queue {
    Queue::leased(ORDERS_QUEUE, config.partitions, relay)
        .lease(config.lease)
        .handler_timeout(timeouts.handler)
        .lease_headroom(timeouts.headroom)
        .retry(
            RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(10))
                .max_attempts(Some(10)),
        )
}

/// The timeouts that follow from the lease (`OUTBOX_LEASE_MS`), nested so
/// that each fits in the next: publish < handler < handler + headroom <= lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timeouts {
    /// One JetStream ack: half the handler timeout, at most 5 s.
    publish: Duration,
    /// One handler call: half the lease, at most 30 s.
    handler: Duration,
    /// Cancel a handler this long before an unrenewed lease runs out: a
    /// quarter of the lease, at most 2 s.
    headroom: Duration,
}

impl Timeouts {
    fn for_lease(lease: Duration) -> Self {
        let handler = (lease / 2).min(Duration::from_secs(30));
        Self {
            publish: (handler / 2).min(Duration::from_secs(5)),
            handler,
            headroom: (lease / 4).min(Duration::from_secs(2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_nest_inside_the_lease() {
        for ms in [100, 3_000, 4_000, 60_000, 3_600_000] {
            let lease = Duration::from_millis(ms);
            let t = Timeouts::for_lease(lease);
            assert!(t.publish < t.handler, "{t:?}");
            assert!(t.handler + t.headroom <= lease, "{t:?}");
        }
        let default = Timeouts::for_lease(Duration::from_secs(60));
        assert_eq!(default.publish, Duration::from_secs(5));
        assert_eq!(default.handler, Duration::from_secs(30));
        assert_eq!(default.headroom, Duration::from_secs(2));
    }
}
