//! Runs a handler future so that a panic or a timeout becomes a retry.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::handler::BatchResult;

/// Polls the inner future, turning a panic into `Err(message)`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                Poll::Ready(Err(message))
            }
        }
    }
}

/// Runs `handler` for at most `timeout`; a panic or a timeout is a retry of
/// the whole batch, never a crashed worker.
pub(crate) async fn guarded<F>(handler: F, timeout: Duration) -> BatchResult
where
    F: Future<Output = BatchResult>,
{
    let handler = std::pin::pin!(handler);
    match tokio::time::timeout(timeout, CatchUnwind(handler)).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            tracing::warn!(panic = %panic, "outbox handler panicked; retrying the batch");
            BatchResult::retry(format!("handler panicked: {panic}"))
        }
        Err(_) => {
            tracing::warn!(?timeout, "outbox handler timed out; retrying the batch");
            BatchResult::retry(format!("handler timed out after {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panic_becomes_retry() {
        let result = guarded(async { panic!("boom") }, Duration::from_secs(1)).await;
        assert!(
            matches!(result, BatchResult::All(crate::Outcome::Retry { reason, .. }) if reason.contains("boom"))
        );
    }

    #[tokio::test]
    async fn timeout_becomes_retry() {
        let result = guarded(
            async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                BatchResult::success()
            },
            Duration::from_millis(10),
        )
        .await;
        assert!(
            matches!(result, BatchResult::All(crate::Outcome::Retry { reason, .. }) if reason.contains("timed out"))
        );
    }
}
