//! Client-side quotas per downstream API (`governor`), awaited within a deadline.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::Rate;

/// A shared limiter for one downstream API.
#[derive(Clone)]
pub struct Limiter(Arc<DefaultDirectRateLimiter>);

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

/// The deadline came before the quota allowed another call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline reached while waiting for the rate limit")]
pub struct DeadlineReached;

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        // Quota::per_second takes whole numbers only; a period supports fractional rates such
        // as one call every two seconds.
        let period = Duration::from_secs_f64(1.0 / rate.per_second);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).expect("rate is validated positive").allow_burst(burst);
        Limiter(Arc::new(RateLimiter::direct(quota)))
    }

    /// A limiter whose burst is already spent: the first permit comes one period from now.
    pub fn new_drained(rate: Rate) -> Self {
        let limiter = Self::new(rate);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        // Cannot fail: the bucket is full and holds exactly `burst`.
        let _ = limiter.0.check_n(burst);
        limiter
    }

    /// Waits for a permit, or gives up at `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), DeadlineReached> {
        // `timeout_at` polls once even past its deadline, and a ready permit would win.
        if Instant::now() >= deadline {
            return Err(DeadlineReached);
        }
        tokio::time::timeout_at(deadline, self.0.until_ready()).await.map_err(|_| DeadlineReached)
    }
}

/// How long to wait before retry `attempt` (1, 2, ...): `base` × 2^attempt, capped at 5 s,
/// with jitter over its upper half so that retries from many callers spread out.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = (base * 2u32.saturating_pow(attempt.min(10))).min(Duration::from_secs(5));
    cap.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_deadline() {
        let limiter = Limiter::new(Rate { per_second: 0.1, burst: 3 });
        let deadline = Instant::now() + Duration::from_millis(50);
        for _ in 0..3 {
            assert_eq!(limiter.acquire(deadline).await, Ok(()));
        }
        assert_eq!(limiter.acquire(deadline).await, Err(DeadlineReached));
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_stops_at_five_seconds() {
        let base = Duration::from_millis(100);
        for attempt in 1..=12 {
            let cap = (base * 2u32.pow(attempt.min(10))).min(Duration::from_secs(5));
            let wait = backoff(base, attempt);
            assert!(wait >= cap / 2 && wait <= cap, "attempt {attempt}: {wait:?} outside {:?}..={cap:?}", cap / 2);
        }
    }

    #[tokio::test]
    async fn a_drained_limiter_waits_a_period_first() {
        let limiter = Limiter::new_drained(Rate { per_second: 0.1, burst: 3 });
        assert_eq!(limiter.acquire(Instant::now() + Duration::from_millis(50)).await, Err(DeadlineReached));
    }

    #[tokio::test]
    async fn a_past_deadline_wins_over_a_ready_permit() {
        let limiter = Limiter::new(Rate { per_second: 100.0, burst: 100 });
        assert_eq!(limiter.acquire(Instant::now()).await, Err(DeadlineReached));
    }
}
