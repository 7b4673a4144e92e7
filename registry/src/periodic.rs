//! The one loop of the server's periodic background work (online gc,
//! upload purging, scheduled retention, quota heartbeats): wait, run,
//! again, until the server stops. A run in progress finishes before the
//! loop looks at the stop again, so every job stops at a safe point.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `tick` after `first`, then every `period`, until `stop` is
/// cancelled or a tick returns `false` (it saw the stop itself).
pub async fn every<F, Fut>(first: Duration, period: Duration, stop: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut wait = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        wait = period;
        if !tick().await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn ticks_after_first_then_every_period_until_stopped() {
        let stop = CancellationToken::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        let start = tokio::time::Instant::now();
        let seen = ticks.clone();
        let task = tokio::spawn(every(
            Duration::from_secs(1),
            Duration::from_secs(10),
            stop.clone(),
            move || {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    true
                }
            },
        ));
        tokio::time::sleep_until(start + Duration::from_millis(25_500)).await;
        // At 1 s, 11 s and 21 s.
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_that_returns_false_ends_the_loop() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let seen = ticks.clone();
        every(
            Duration::ZERO,
            Duration::from_secs(1),
            CancellationToken::new(),
            move || {
                let seen = seen.clone();
                async move { seen.fetch_add(1, Ordering::SeqCst) < 2 }
            },
        )
        .await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
    }
}
