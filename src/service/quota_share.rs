//! Sharing Security Hub's regional BatchUpdateFindings quota among the enricher environments
//! that have updates to send.
//!
//! A static split (quota ÷ environments) caps every environment at its slice even while the
//! others sit idle, waiting for account lookups or for records, so a hot shard runs at a
//! fraction of the region's rate. Here each environment that is sending updates holds a claim
//! in a shared ledger (one DynamoDB item) and paces itself at pool ÷ live claims: the whole
//! quota goes to whoever has work, like processor sharing. A claim is renewed while updates
//! are in flight, released when they finish, and lapses after a few seconds if its holder
//! dies. When the ledger cannot be reached, the static split is the fallback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::rate::{BACKGROUND_PREFIX, Holders, Rate, share_for};
use crate::limits::{DeadlineReached, Limiter};
use crate::ports::ledger::{LedgerError, QuotaLedger};

/// How this environment paces BatchUpdateFindings: a fixed rate, or its share of a pool.
pub struct QuotaShare {
    pool: Rate,
    /// The rate used until the ledger first answers and whenever it fails (the static split).
    fallback: Rate,
    sharing: Option<Sharing>,
    /// What the stream's environments leave to background sweeps while both write.
    reserve: Rate,
    current: Mutex<Paced>,
    /// Runs of `while_active` in progress: the claim is released when the last one ends.
    active: AtomicUsize,
}

struct Sharing {
    ledger: Arc<dyn QuotaLedger>,
    holder: String,
    renew_every: Duration,
}

struct Paced {
    /// Live claims in the ledger's last answer; `None` while on the fallback rate.
    holders: Option<Holders>,
    limiter: Limiter,
    /// A drained bucket fills up by then (burst ÷ rate after it was set): waits before that
    /// come from the empty start, not from demand.
    filled_at: Instant,
}

impl Paced {
    fn drained(holders: Option<Holders>, rate: Rate) -> Self {
        let filled_at = Instant::now() + Duration::from_secs_f64(f64::from(rate.burst) / rate.per_second);
        Paced { holders, limiter: Limiter::new_drained(rate), filled_at }
    }
}

/// What stream environments leave to a background sweep while both write: the investigator's
/// share again (1 request/s, burst 3), small beside the stream's.
pub const BACKGROUND_RESERVE: Rate = Rate { per_second: 1.0, burst: 3 };

/// A claim lapses after this many missed renewals.
const RENEWALS_PER_CLAIM: u32 = 3;

impl QuotaShare {
    /// A fixed rate: no ledger.
    pub fn fixed(rate: Rate) -> Self {
        QuotaShare {
            pool: rate,
            fallback: rate,
            sharing: None,
            reserve: BACKGROUND_RESERVE,
            current: Mutex::new(Paced { holders: None, limiter: Limiter::new(rate), filled_at: Instant::now() }),
            active: Default::default(),
        }
    }

    /// `pool` divided among the live claims in `ledger`, or `fallback` when it cannot be read.
    pub fn shared(
        pool: Rate,
        fallback: Rate,
        ledger: Arc<dyn QuotaLedger>,
        holder: impl Into<String>,
        renew_every: Duration,
    ) -> Self {
        QuotaShare {
            pool,
            fallback,
            sharing: Some(Sharing { ledger, holder: holder.into(), renew_every }),
            reserve: BACKGROUND_RESERVE,
            // Drained, like every change of share: a newcomer that spent a full burst before its
            // first claim is counted would push the others over the quota.
            current: Mutex::new(Paced::drained(None, fallback)),
            active: Default::default(),
        }
    }

    /// How many environments share the pool, this one included, as of the ledger's last
    /// answer; `None` when pacing at the fixed or fallback rate.
    pub fn holders(&self) -> Option<u32> {
        self.current.lock().expect("quota lock").holders.map(Holders::total)
    }

    fn is_background(&self) -> bool {
        self.sharing.as_ref().is_some_and(|s| s.holder.starts_with(BACKGROUND_PREFIX))
    }

    /// Waits for this environment's next permit, or gives up at `deadline`. Answers how long
    /// the permit was waited for on demand: a wait while the bucket fills after an empty start
    /// counts as none (what the pending-writes store reads as saturation).
    pub async fn acquire(&self, deadline: Instant) -> Result<Duration, DeadlineReached> {
        // Still filling after starting empty (at start or a change of share): a wait now says
        // nothing about demand on the quota.
        let (limiter, filling) = {
            let current = self.current.lock().expect("quota lock");
            (current.limiter.clone(), Instant::now() < current.filled_at)
        };
        let asked = Instant::now();
        limiter.acquire(deadline).await?;
        Ok(if filling { Duration::ZERO } else { asked.elapsed() })
    }

    /// Runs `work` (the batch's updates) while holding a claim: claims at once, renews while
    /// the work runs, and releases when it is done so that others get the share at once.
    /// Overlapping runs share the claim (each renews it; the last to end releases it).
    pub async fn while_active<T>(&self, work: impl Future<Output = T>) -> T {
        let Some(sharing) = &self.sharing else {
            return work.await;
        };
        self.active.fetch_add(1, Ordering::SeqCst);
        let ttl = sharing.renew_every * RENEWALS_PER_CLAIM;
        let renew = async {
            loop {
                let answer = tokio::time::timeout(sharing.renew_every, sharing.ledger.claim(&sharing.holder, ttl))
                    .await
                    .unwrap_or(Err(LedgerError::Timeout(sharing.renew_every)));
                match answer {
                    Ok(holders) => self.pace(Some(holders)),
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), fallback_rps = self.fallback.per_second, "quota ledger unavailable; pacing at the static share");
                        self.pace(None);
                    }
                }
                tokio::time::sleep(sharing.renew_every).await;
            }
        };
        let out = tokio::select! {
            biased;
            out = work => out,
            never = renew => match never {},
        };
        if self.active.fetch_sub(1, Ordering::SeqCst) > 1 {
            return out;
        }
        // Best effort: an unreleased claim lapses after `ttl` anyway.
        match tokio::time::timeout(sharing.renew_every, sharing.ledger.release(&sharing.holder)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(error = %error_chain(&error), "quota claim not released")
            }
            Err(_) => tracing::debug!("quota claim release timed out"),
        }
        out
    }

    fn pace(&self, holders: Option<Holders>) {
        let mut current = self.current.lock().expect("quota lock");
        if current.holders != holders {
            let rate = holders.map_or(self.fallback, |h| share_for(self.pool, self.reserve, h, self.is_background()));
            // Starts with an empty bucket: a full one would hand out a whole burst at every
            // change of share and overshoot the pool.
            *current = Paced::drained(holders, rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    const POOL: Rate = Rate { per_second: 9.0, burst: 27 };
    const STATIC_SHARE: Rate = Rate { per_second: 2.25, burst: 6 };

    struct Unreachable;

    #[async_trait]
    impl QuotaLedger for Unreachable {
        async fn claim(&self, _: &str, _: Duration) -> Result<Holders, LedgerError> {
            Err(LedgerError::Timeout(Duration::ZERO))
        }
        async fn release(&self, _: &str) -> Result<(), LedgerError> {
            Err(LedgerError::Timeout(Duration::ZERO))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_ledger_falls_back_to_the_static_share() {
        let share = QuotaShare::shared(POOL, STATIC_SHARE, Arc::new(Unreachable), "a", Duration::from_millis(10));
        share.pace(Some(Holders { foreground: 1, background: 0 }));
        share.while_active(tokio::time::sleep(Duration::from_millis(30))).await;
        assert_eq!(share.holders(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_while_a_drained_bucket_fills_are_not_demand() {
        let deadline = || Instant::now() + Duration::from_secs(60);
        let share = QuotaShare::shared(POOL, STATIC_SHARE, Arc::new(Unreachable), "a", Duration::from_millis(10));
        // The static share starts empty: 6 permits at 2.25/s, full after about 2.7 s. The first
        // permit is waited for (about 0.44 s), and counts as no wait.
        let started = Instant::now();
        assert_eq!(share.acquire(deadline()).await, Ok(Duration::ZERO));
        assert!(Instant::now() - started >= Duration::from_millis(400), "it did wait");
        // Full again: a burst goes at once; the permit after it is waited for on demand.
        tokio::time::advance(Duration::from_secs(3)).await;
        for _ in 0..6 {
            assert_eq!(share.acquire(deadline()).await, Ok(Duration::ZERO));
        }
        let waited = share.acquire(deadline()).await.unwrap();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        // A change of share starts empty again (27 permits at 9/s, 3 s to fill): not demand.
        share.pace(Some(Holders { foreground: 1, background: 0 }));
        assert_eq!(share.acquire(deadline()).await, Ok(Duration::ZERO));
        // A fixed share starts full: the permit after its burst is waited for on demand.
        let fixed = QuotaShare::fixed(POOL);
        for _ in 0..POOL.burst {
            assert_eq!(fixed.acquire(deadline()).await, Ok(Duration::ZERO));
        }
        assert!(fixed.acquire(deadline()).await.unwrap() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_fixed_share_never_touches_a_ledger() {
        let share = QuotaShare::fixed(POOL);
        assert_eq!(share.while_active(async { 7 }).await, 7);
        assert_eq!(share.holders(), None);
    }
}
