//! Client-side quotas per downstream API (`governor`), awaited within a deadline.

use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::core::rate::Rate;

/// governor's clock on tokio's time. Written here because governor's own clocks read the
/// system's monotonic clock, which a paused tokio runtime cannot move: on this one, tests of
/// rate limits and deadlines run on `tokio::time::pause()` / `advance()` instead of sleeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

/// A `tokio::time::Instant` as governor measures time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, other: Nanos) -> TokioInstant {
        TokioInstant(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

type TokioLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// A shared limiter for one downstream API.
#[derive(Clone)]
pub struct Limiter(Arc<TokioLimiter>);

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
        Limiter(Arc::new(RateLimiter::direct_with_clock(quota, TokioClock)))
    }

    /// A limiter whose burst is already spent: the first permit comes one period from now.
    pub fn new_drained(rate: Rate) -> Self {
        let limiter = Self::new(rate);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        // Cannot fail: the bucket is full and holds exactly `burst`.
        let _ = limiter.0.check_n(burst);
        limiter
    }

    /// A permit now, if the quota has one.
    pub fn try_acquire(&self) -> bool {
        self.0.check().is_ok()
    }

    /// Waits for a permit, or gives up at `deadline` (having waited until then, as a caller
    /// blocked on the quota would).
    pub async fn acquire(&self, deadline: Instant) -> Result<(), DeadlineReached> {
        loop {
            if Instant::now() >= deadline {
                return Err(DeadlineReached);
            }
            match self.0.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let at = not_until.earliest_possible().0;
                    if at >= deadline {
                        tokio::time::sleep_until(deadline).await;
                        return Err(DeadlineReached);
                    }
                    tokio::time::sleep_until(at).await;
                }
            }
        }
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

    #[tokio::test(start_paused = true)]
    async fn burst_then_deadline() {
        let limiter = Limiter::new(Rate { per_second: 0.1, burst: 3 });
        let deadline = Instant::now() + Duration::from_millis(50);
        for _ in 0..3 {
            assert_eq!(limiter.acquire(deadline).await, Ok(()));
        }
        assert_eq!(limiter.acquire(deadline).await, Err(DeadlineReached));
        assert_eq!(Instant::now(), deadline, "gave up at the deadline, not before or after");
    }

    #[tokio::test(start_paused = true)]
    async fn permits_come_at_the_rate_on_the_paused_clock() {
        let limiter = Limiter::new(Rate { per_second: 2.0, burst: 1 });
        let start = Instant::now();
        let far = start + Duration::from_secs(60);
        for _ in 0..5 {
            limiter.acquire(far).await.unwrap();
        }
        // The burst at once, then one every 500 ms.
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
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

    #[tokio::test(start_paused = true)]
    async fn a_drained_limiter_waits_a_period_first() {
        let limiter = Limiter::new_drained(Rate { per_second: 0.1, burst: 3 });
        assert!(!limiter.try_acquire());
        assert_eq!(limiter.acquire(Instant::now() + Duration::from_millis(50)).await, Err(DeadlineReached));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(limiter.try_acquire(), "one period later");
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_wins_over_a_ready_permit() {
        let limiter = Limiter::new(Rate { per_second: 100.0, burst: 100 });
        assert_eq!(limiter.acquire(Instant::now()).await, Err(DeadlineReached));
    }
}
