//! The orders service binary: configuration from the environment, then
//! serve until SIGTERM or Ctrl-C, then drain the outbox.
//!
//! ```text
//! cargo run -p orders-service
//! curl -s -X POST localhost:3000/orders -H 'content-type: application/json' \
//!   -d '{"customer":"c1","items":[{"sku":"s1","qty":2}],"total_cents":1200}'
//! ```

use std::process::ExitCode;

use orders_service::{App, Config, StartError, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let tracer_provider = telemetry::init();
    let code = match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                error = %orders_service::error::chain(&err),
                "orders-service failed"
            );
            ExitCode::FAILURE
        }
    };
    if let Err(err) = tracer_provider.shutdown() {
        tracing::warn!(error = %err, "could not shut the tracer provider down");
    }
    code
}

async fn run() -> Result<(), StartError> {
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen_addr,
            source,
        })?;
    let app = App::start(&config).await?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!("listening on http://{addr}");

    let served = axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown::signal())
        .await;
    tracing::info!("HTTP server stopped; draining the outbox");
    app.stop().await;
    tracing::info!("stopped");
    served.map_err(StartError::Serve)
}
