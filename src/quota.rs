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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use tokio::time::Instant;

use crate::config::Rate;
use crate::limits::{DeadlineReached, Limiter};
use crate::metadata::dynamodb::{KEY_ATTRIBUTE, TTL_ATTRIBUTE};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("DynamoDB {operation} on the quota ledger in table {table} failed")]
    Request {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<aws_sdk_dynamodb::Error>,
    },
    #[error("the quota ledger did not answer within {0:?}")]
    Timeout(Duration),
}

/// Where environments record that they are sending updates.
#[async_trait]
pub trait QuotaLedger: Send + Sync {
    /// Claims a share for `holder` for `ttl` (renewing any earlier claim) and returns how many
    /// unexpired claims the ledger holds, this one included.
    async fn claim(&self, holder: &str, ttl: Duration) -> Result<u32, LedgerError>;
    /// Gives the share back before the claim would lapse.
    async fn release(&self, holder: &str) -> Result<(), LedgerError>;
}

/// How this environment paces BatchUpdateFindings: a fixed rate, or its share of a pool.
pub struct QuotaShare {
    pool: Rate,
    /// The rate used until the ledger first answers and whenever it fails (the static split).
    fallback: Rate,
    sharing: Option<Sharing>,
    current: Mutex<Paced>,
    /// Runs of `while_active` in progress: the claim is released when the last one ends.
    active: std::sync::atomic::AtomicUsize,
}

struct Sharing {
    ledger: Arc<dyn QuotaLedger>,
    holder: String,
    renew_every: Duration,
}

struct Paced {
    /// Live claims in the ledger's last answer; `None` while on the fallback rate.
    holders: Option<u32>,
    limiter: Limiter,
}

/// A claim lapses after this many missed renewals.
const RENEWALS_PER_CLAIM: u32 = 3;

impl QuotaShare {
    /// A fixed rate: no ledger.
    pub fn fixed(rate: Rate) -> Self {
        QuotaShare {
            pool: rate,
            fallback: rate,
            sharing: None,
            current: Mutex::new(Paced { holders: None, limiter: Limiter::new(rate) }),
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
            // Drained, like every change of share: a newcomer that spent a full burst before its
            // first claim is counted would push the others over the quota.
            current: Mutex::new(Paced { holders: None, limiter: Limiter::new_drained(fallback) }),
            active: Default::default(),
        }
    }

    /// How many environments share the pool, this one included, as of the ledger's last
    /// answer; `None` when pacing at the fixed or fallback rate.
    pub fn holders(&self) -> Option<u32> {
        self.current.lock().expect("quota lock").holders
    }

    /// Waits for this environment's next permit, or gives up at `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), DeadlineReached> {
        let limiter = self.current.lock().expect("quota lock").limiter.clone();
        limiter.acquire(deadline).await
    }

    /// Runs `work` (the batch's updates) while holding a claim: claims at once, renews while
    /// the work runs, and releases when it is done so that others get the share at once.
    /// Overlapping runs share the claim (each renews it; the last to end releases it).
    pub async fn while_active<T>(&self, work: impl Future<Output = T>) -> T {
        let Some(sharing) = &self.sharing else {
            return work.await;
        };
        use std::sync::atomic::Ordering;
        self.active.fetch_add(1, Ordering::SeqCst);
        let ttl = sharing.renew_every * RENEWALS_PER_CLAIM;
        let renew = async {
            loop {
                let answer = tokio::time::timeout(sharing.renew_every, sharing.ledger.claim(&sharing.holder, ttl))
                    .await
                    .unwrap_or(Err(LedgerError::Timeout(sharing.renew_every)));
                match answer {
                    Ok(holders) => self.pace(Some(holders.max(1))),
                    Err(error) => {
                        tracing::warn!(error = %crate::metadata::directory_error_chain(&error), fallback_rps = self.fallback.per_second, "quota ledger unavailable; pacing at the static share");
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
                tracing::debug!(error = %crate::metadata::directory_error_chain(&error), "quota claim not released")
            }
            Err(_) => tracing::debug!("quota claim release timed out"),
        }
        out
    }

    fn pace(&self, holders: Option<u32>) {
        let mut current = self.current.lock().expect("quota lock");
        if current.holders != holders {
            let rate = holders.map_or(self.fallback, |n| share_of(self.pool, n));
            // Starts with an empty bucket: a full one would hand out a whole burst at every
            // change of share and overshoot the pool.
            *current = Paced { holders, limiter: Limiter::new_drained(rate) };
        }
    }
}

/// One holder's slice of the pool; at least one request of burst.
pub fn share_of(pool: Rate, holders: u32) -> Rate {
    let holders = holders.max(1);
    Rate { per_second: pool.per_second / f64::from(holders), burst: (pool.burst / holders).max(1) }
}

/// The ledger's item in the cache table. Account ids are twelve digits, so it never collides.
pub const LEDGER_KEY: &str = "quota#securityhub:BatchUpdateFindings";
/// Claims are attributes `h_<holder>` holding their expiry (epoch milliseconds). Attributes
/// rather than one map: SET on a map entry fails until the map exists, and would need a
/// second call to create it.
const HOLDER_PREFIX: &str = "h_";
/// Claims expired this long ago are pruned; a younger one may belong to a holder whose
/// renewal races the prune.
pub const PRUNE_AFTER: Duration = Duration::from_secs(60);
/// Expression attribute names are limited; prune a few per claim.
const PRUNE_PER_CLAIM: usize = 16;
/// The item lingers this long after the last claim, then DynamoDB's TTL removes it.
const ITEM_LIFETIME: Duration = Duration::from_secs(86_400);

/// The ledger as one item of the cache table, updated with one UpdateItem per claim that also
/// returns every claim (ReturnValues ALL_NEW).
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Long-expired claims seen in the last answer, pruned with the next claim.
    prunable: Mutex<Vec<String>>,
    prune_after: Duration,
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoLedger { client, table: table.into(), prunable: Mutex::default(), prune_after: PRUNE_AFTER }
    }

    /// Prunes claims this long after they lapse instead of `PRUNE_AFTER`.
    pub fn with_prune_after(mut self, prune_after: Duration) -> Self {
        self.prune_after = prune_after;
        self
    }

    fn error(&self, operation: &'static str, source: impl Into<aws_sdk_dynamodb::Error>) -> LedgerError {
        LedgerError::Request { operation, table: self.table.clone(), source: Box::new(source.into()) }
    }
}

#[async_trait]
impl QuotaLedger for DynamoLedger {
    async fn claim(&self, holder: &str, ttl: Duration) -> Result<u32, LedgerError> {
        let now = crate::since_epoch().as_millis() as u64;
        let mine = format!("{HOLDER_PREFIX}{holder}");
        let prune: Vec<String> = {
            let mut prunable = self.prunable.lock().expect("ledger lock");
            prunable.retain(|name| *name != mine);
            let keep = prunable.len().saturating_sub(PRUNE_PER_CLAIM);
            prunable.split_off(keep)
        };
        let mut expression = "SET #me = :until, #ttl = :item_expires".to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(LEDGER_KEY.to_owned()))
            .expression_attribute_names("#me", &mine)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":until", AttributeValue::N((now + ttl.as_millis() as u64).to_string()))
            .expression_attribute_values(
                ":item_expires",
                AttributeValue::N((now / 1000 + ITEM_LIFETIME.as_secs()).to_string()),
            )
            .return_values(ReturnValue::AllNew);
        for (i, name) in prune.iter().enumerate() {
            expression.push_str(if i == 0 { " REMOVE " } else { ", " });
            expression.push_str(&format!("#p{i}"));
            request = request.expression_attribute_names(format!("#p{i}"), name);
        }
        let output = request.update_expression(expression).send().await.map_err(|e| self.error("UpdateItem", e))?;
        let claims = live_claims(output.attributes.unwrap_or_default(), now, self.prune_after);
        *self.prunable.lock().expect("ledger lock") = claims.prunable;
        // Our own claim was just written; count it even if the item came back without it.
        Ok(claims.live.max(1))
    }

    async fn release(&self, holder: &str) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(LEDGER_KEY.to_owned()))
            .update_expression("REMOVE #me")
            .expression_attribute_names("#me", format!("{HOLDER_PREFIX}{holder}"))
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", e))?;
        Ok(())
    }
}

struct Claims {
    live: u32,
    prunable: Vec<String>,
}

fn live_claims(item: HashMap<String, AttributeValue>, now_millis: u64, prune_after: Duration) -> Claims {
    let mut claims = Claims { live: 0, prunable: Vec::new() };
    for (name, value) in item {
        if !name.starts_with(HOLDER_PREFIX) {
            continue;
        }
        let until = match &value {
            AttributeValue::N(n) => n.parse::<u64>().unwrap_or_default(),
            _ => 0,
        };
        if until > now_millis {
            claims.live += 1;
        } else if until + prune_after.as_millis() as u64 <= now_millis {
            claims.prunable.push(name);
        }
    }
    claims
}

/// The ledger in memory, for the simulator and handler tests; `latency` per call.
#[derive(Default)]
pub struct InMemoryLedger {
    claims: Mutex<HashMap<String, Instant>>,
    latency: Duration,
    /// Claims, renewals and releases: the UpdateItem calls the DynamoDB ledger would make.
    pub calls: std::sync::atomic::AtomicUsize,
}

impl InMemoryLedger {
    pub fn with_latency(latency: Duration) -> Self {
        InMemoryLedger { latency, ..Default::default() }
    }

    pub fn live(&self) -> usize {
        let now = Instant::now();
        self.claims.lock().expect("ledger lock").values().filter(|until| **until > now).count()
    }
}

#[async_trait]
impl QuotaLedger for InMemoryLedger {
    async fn claim(&self, holder: &str, ttl: Duration) -> Result<u32, LedgerError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        let now = Instant::now();
        let mut claims = self.claims.lock().expect("ledger lock");
        claims.insert(holder.to_owned(), now + ttl);
        claims.retain(|_, until| *until > now);
        Ok(claims.len() as u32)
    }

    async fn release(&self, holder: &str) -> Result<(), LedgerError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        self.claims.lock().expect("ledger lock").remove(holder);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Rate = Rate { per_second: 9.0, burst: 27 };

    #[test]
    fn each_holder_gets_an_equal_slice_with_at_least_one_burst() {
        assert_eq!(share_of(POOL, 3), Rate { per_second: 3.0, burst: 9 });
        assert_eq!(share_of(POOL, 0), POOL);
        assert_eq!(share_of(POOL, 100).burst, 1);
    }

    #[test]
    fn expired_claims_are_not_counted_and_long_expired_ones_are_pruned() {
        let now = 1_000_000;
        let item = HashMap::from([
            (KEY_ATTRIBUTE.to_owned(), AttributeValue::S(LEDGER_KEY.to_owned())),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N("99999999999".into())),
            ("h_live".to_owned(), AttributeValue::N((now + 500).to_string())),
            ("h_just_lapsed".to_owned(), AttributeValue::N((now - 500).to_string())),
            ("h_dead".to_owned(), AttributeValue::N((now - 61_000).to_string())),
            ("h_garbled".to_owned(), AttributeValue::S("x".into())),
        ]);
        let claims = live_claims(item, now, PRUNE_AFTER);
        assert_eq!(claims.live, 1);
        let mut prunable = claims.prunable;
        prunable.sort();
        assert_eq!(prunable, ["h_dead", "h_garbled"]);
    }

    struct Unreachable;

    #[async_trait]
    impl QuotaLedger for Unreachable {
        async fn claim(&self, _: &str, _: Duration) -> Result<u32, LedgerError> {
            Err(LedgerError::Timeout(Duration::ZERO))
        }
        async fn release(&self, _: &str) -> Result<(), LedgerError> {
            Err(LedgerError::Timeout(Duration::ZERO))
        }
    }

    const STATIC_SHARE: Rate = Rate { per_second: 2.25, burst: 6 };

    #[tokio::test]
    async fn claims_while_working_and_releases_after() {
        let ledger = Arc::new(InMemoryLedger::default());
        let renew = Duration::from_millis(20);
        let a = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "a", renew);
        let b = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "b", renew);
        assert_eq!(a.holders(), None, "the static share until the ledger answers");
        a.while_active(async {
            tokio::time::sleep(renew * 2).await;
            assert_eq!(a.holders(), Some(1), "alone in the ledger: the whole pool");
            b.while_active(async {
                tokio::time::sleep(renew * 2).await;
                assert_eq!(b.holders(), Some(2));
            })
            .await;
            tokio::time::sleep(renew * 2).await;
            assert_eq!(a.holders(), Some(1), "b released its claim");
        })
        .await;
        assert_eq!(ledger.live(), 0);
    }

    #[tokio::test]
    async fn overlapping_runs_keep_the_claim_until_the_last_ends() {
        let ledger = Arc::new(InMemoryLedger::default());
        // Renewals far apart: a release by the short run would show before the next one.
        let renew = Duration::from_millis(400);
        let a = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "a", renew);
        let short = a.while_active(tokio::time::sleep(Duration::from_millis(50)));
        let long = a.while_active(async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            ledger.live()
        });
        let ((), live_after_the_short_run) = tokio::join!(short, long);
        assert_eq!(live_after_the_short_run, 1, "the short run released the claim the long run still used");
        assert_eq!(ledger.live(), 0, "the last run released it");
    }

    #[tokio::test]
    async fn an_unreachable_ledger_falls_back_to_the_static_share() {
        let share = QuotaShare::shared(POOL, STATIC_SHARE, Arc::new(Unreachable), "a", Duration::from_millis(10));
        share.pace(Some(1));
        share.while_active(tokio::time::sleep(Duration::from_millis(30))).await;
        assert_eq!(share.holders(), None);
    }

    #[tokio::test]
    async fn a_fixed_share_never_touches_a_ledger() {
        let share = QuotaShare::fixed(POOL);
        assert_eq!(share.while_active(async { 7 }).await, 7);
        assert_eq!(share.holders(), None);
    }
}
