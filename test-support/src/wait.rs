//! Waiting in tests for something the workers do in the background: one
//! polling loop, in the shapes the suites need.

use std::future::Future;
use std::time::Duration;

/// How long a test waits for a condition unless it says otherwise.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is looked at.
const INTERVAL: Duration = Duration::from_millis(20);

/// Polls the async `condition` until it holds (`true`) or `patience` passes
/// (`false`).
pub async fn poll_until<F, Fut>(patience: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`poll_until`] for a condition that needs no `await`.
pub async fn wait_until<F: FnMut() -> bool>(patience: Duration, mut condition: F) -> bool {
    poll_until(patience, || std::future::ready(condition())).await
}

/// Polls the async `condition` until it holds; panics naming `what` if it
/// does not within `patience`.
pub async fn wait_for<F, Fut>(what: &str, patience: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        poll_until(patience, condition).await,
        "timed out after {patience:?} waiting until {what}"
    );
}

/// [`wait_for`] with [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, PATIENCE, condition).await;
}
