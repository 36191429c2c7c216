//! Resolves a batch's accounts in one pass: memory, then DynamoDB, then lookups for the rest,
//! within a time budget, falling back to stale entries rather than stalling the stream.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::account::AccountRecord;
use crate::core::cache_entry::{CacheEntry, CacheTimes, Freshness};
use crate::core::error::error_chain;
use crate::core::time::now_epoch_seconds;
use crate::ports::metadata::{AccountSource, LookupError, MetadataStore, OrganizationWalk, StoreError, WalkedAccount};

type LookupResult = Result<Arc<CacheEntry>, Arc<LookupError>>;

/// What the directory could say about one account.
#[derive(Debug, Clone)]
pub enum Resolution {
    Fresh(Arc<CacheEntry>),
    /// Past its refresh time, and the refresh failed or ran out of budget.
    Stale(Arc<CacheEntry>),
    /// Nothing cached and no lookup succeeded in time.
    Unavailable,
}

impl Resolution {
    pub fn record(&self) -> Option<&AccountRecord> {
        match self {
            Resolution::Fresh(e) | Resolution::Stale(e) => Some(&e.record),
            Resolution::Unavailable => None,
        }
    }
}

/// Where each account's answer came from, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrefetchStats {
    pub accounts: usize,
    pub memory_hits: usize,
    pub store_hits: usize,
    pub lookups: usize,
    pub lookup_failures: usize,
    pub lookups_out_of_budget: usize,
    pub stale_served: usize,
    pub unavailable: usize,
    pub store_errors: usize,
}

/// What warming the whole organization did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    /// Accounts the walk of the OU tree found.
    pub accounts: usize,
    /// Accounts the cache already held fresh, left as they were (`WarmScope::Uncached`).
    pub already_cached: usize,
    pub cached: usize,
    pub failed: usize,
    /// Accounts the deadline came before (out of time or Organizations budget).
    pub not_reached: usize,
}

/// Which of the walked accounts a warm-up completes (tags and contact, two calls each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmScope {
    /// Every account, fresh or not: `enricher-admin warm --all`, an operator's explicit ask.
    Everything,
    /// Only accounts the cache tiers cannot answer fresh: the refresher's warm-up beside its
    /// passes, which must not spend the Organizations budget on what is already known.
    Uncached,
}

/// Accounts the cache tiers could not answer fresh, with any stale entries to fall back on.
#[derive(Debug, Default)]
pub struct PendingLookups {
    pub accounts: Vec<String>,
    stale: HashMap<String, Arc<CacheEntry>>,
}

/// What the cache tiers answered.
#[derive(Debug, Default)]
pub struct CachePass {
    pub resolved: HashMap<String, Resolution>,
    pub pending: PendingLookups,
    pub stats: PrefetchStats,
}

impl std::ops::AddAssign for PrefetchStats {
    /// Adds the figures of a later pass over other accounts.
    fn add_assign(&mut self, other: PrefetchStats) {
        self.memory_hits += other.memory_hits;
        self.store_hits += other.store_hits;
        self.lookups += other.lookups;
        self.lookup_failures += other.lookup_failures;
        self.lookups_out_of_budget += other.lookups_out_of_budget;
        self.stale_served += other.stale_served;
        self.unavailable += other.unavailable;
        self.store_errors += other.store_errors;
    }
}

/// The cache tiers and the source, shared with lookups that outlive the batch that started them.
pub struct Directory {
    tiers: Arc<Tiers>,
}

struct Tiers {
    memory: moka::future::Cache<String, Arc<CacheEntry>>,
    store: Arc<dyn MetadataStore>,
    source: Arc<dyn AccountSource>,
    times: CacheTimes,
    lookup_concurrency: usize,
    /// How long a batch waits for lookups before enriching partially; `None`: until the
    /// caller's deadline (sweeps).
    lookup_budget: Option<std::time::Duration>,
    /// How long lookups go on after their batch stopped waiting.
    background_budget: std::time::Duration,
}

/// How long a lookup may go on after its batch stopped waiting, warming the cache for the
/// batches after it.
pub const BACKGROUND_LOOKUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(600);
/// Lookups are written to the table in chunks of one BatchWriteItem as they complete.
const STORE_CHUNK: usize = 25;

enum LookupMessage {
    Answered(String, LookupResult),
    /// Every lookup has answered and the answers are stored.
    Done,
}

impl Directory {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        source: Arc<dyn AccountSource>,
        times: CacheTimes,
        lookup_concurrency: usize,
        lookup_budget: std::time::Duration,
    ) -> Self {
        let memory =
            moka::future::Cache::builder().max_capacity(times.memory_capacity).time_to_live(times.memory).build();
        let background_budget = BACKGROUND_LOOKUP_BUDGET;
        let lookup_budget = Some(lookup_budget);
        let tiers = Tiers { memory, store, source, times, lookup_concurrency, lookup_budget, background_budget };
        Directory { tiers: Arc::new(tiers) }
    }

    /// Lookups are waited for until the caller's deadline, not the stream's per-batch budget
    /// (`LOOKUP_BUDGET_SECONDS`): a sweep has no shard waiting behind it, and a `Partial` write
    /// it made would only be written again. Only before the directory is first used.
    pub fn waiting_until_deadline(mut self) -> Self {
        Arc::get_mut(&mut self.tiers).expect("a directory not yet shared").lookup_budget = None;
        self
    }

    /// Lets background lookups go on for `budget` instead of `BACKGROUND_LOOKUP_BUDGET` (the
    /// simulator scales it with its clock). Only before the directory is first used.
    pub fn with_background_budget(mut self, budget: std::time::Duration) -> Self {
        Arc::get_mut(&mut self.tiers).expect("a directory not yet shared").background_budget = budget;
        self
    }

    /// Resolves every account once. Never fails: what cannot be known is `Unavailable`.
    pub async fn prefetch(
        &self,
        account_ids: &[String],
        deadline: Instant,
    ) -> (HashMap<String, Resolution>, PrefetchStats) {
        let cached = self.from_cache(account_ids).await;
        let (looked_up, stats) = self.look_up(cached.pending, deadline).await;
        let mut resolved = cached.resolved;
        resolved.extend(looked_up);
        let mut total = cached.stats;
        total += stats;
        (resolved, total)
    }

    /// The cache tiers only (memory, then the table): what they answer fresh, and what is left
    /// to look up. Cheap, so a batch can start writing for these accounts at once.
    pub async fn from_cache(&self, account_ids: &[String]) -> CachePass {
        let now = now_epoch_seconds();
        let mut stats = PrefetchStats { accounts: account_ids.len(), ..Default::default() };
        let mut resolved = HashMap::with_capacity(account_ids.len());
        let mut stale: HashMap<String, Arc<CacheEntry>> = HashMap::new();

        let mut misses = Vec::new();
        for id in account_ids {
            match self.tiers.memory.get(id).await {
                Some(entry) if entry.freshness(now) == Freshness::Fresh => {
                    stats.memory_hits += 1;
                    resolved.insert(id.clone(), Resolution::Fresh(entry));
                }
                Some(entry) => {
                    stale.insert(id.clone(), entry);
                    misses.push(id.clone());
                }
                None => misses.push(id.clone()),
            }
        }

        let mut to_look_up = Vec::new();
        if !misses.is_empty() {
            match self.tiers.store.get_many(&misses).await {
                Ok(mut found) => {
                    for id in misses {
                        match found.remove(&id) {
                            Some(entry) if entry.freshness(now) == Freshness::Fresh => {
                                stats.store_hits += 1;
                                let entry = Arc::new(entry);
                                self.tiers.memory.insert(id.clone(), Arc::clone(&entry)).await;
                                resolved.insert(id, Resolution::Fresh(entry));
                            }
                            Some(entry) => {
                                let newer = stale.get(&id).is_none_or(|held| held.fetched_at < entry.fetched_at);
                                if newer {
                                    stale.insert(id.clone(), Arc::new(entry));
                                }
                                to_look_up.push(id);
                            }
                            None => to_look_up.push(id),
                        }
                    }
                }
                Err(error) => {
                    // Enrich without the cache tier rather than fail the batch.
                    stats.store_errors += 1;
                    tracing::warn!(error = %error_chain(&error), "cache table read failed; looking accounts up directly");
                    to_look_up = misses;
                }
            }
        }
        CachePass { resolved, pending: PendingLookups { accounts: to_look_up, stale }, stats }
    }

    /// The cache tiers alone: what they cannot answer fresh is served stale if it can be, else
    /// `Unavailable`. Nothing is looked up.
    pub async fn cached_only(&self, account_ids: &[String]) -> HashMap<String, Resolution> {
        let CachePass { mut resolved, pending, .. } = self.from_cache(account_ids).await;
        resolved.extend(self.without_lookups(pending).0);
        resolved
    }

    /// What the cache could not answer fresh, answered without a lookup: stale if it can be,
    /// else `Unavailable` (the stream's cold start leaves these accounts to the refresher's walk).
    pub fn without_lookups(&self, pending: PendingLookups) -> (HashMap<String, Resolution>, PrefetchStats) {
        let PendingLookups { accounts, mut stale } = pending;
        let mut stats = PrefetchStats::default();
        let mut resolved = HashMap::with_capacity(accounts.len());
        for id in accounts {
            continue_with_fallback(&mut stats, &mut stale, &mut resolved, id);
        }
        (resolved, stats)
    }

    /// Looks up what the cache could not answer, waiting at most the lookup budget and falling
    /// back to stale entries. Lookups still running then go on in the background and warm the
    /// cache (memory and table) for the batches after this one.
    pub async fn look_up(
        &self,
        pending: PendingLookups,
        deadline: Instant,
    ) -> (HashMap<String, Resolution>, PrefetchStats) {
        let PendingLookups { accounts, mut stale } = pending;
        let mut stats = PrefetchStats { lookups: accounts.len(), ..Default::default() };
        let mut resolved = HashMap::with_capacity(accounts.len());
        if accounts.is_empty() {
            return (resolved, stats);
        }
        let wait_until = self.tiers.lookup_budget.map_or(deadline, |budget| deadline.min(Instant::now() + budget));
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(Arc::clone(&self.tiers).look_up_all(accounts.clone(), sender));

        let mut answers: HashMap<String, LookupResult> = HashMap::with_capacity(accounts.len());
        while let Ok(Some(message)) = tokio::time::timeout_at(wait_until, receiver.recv()).await {
            match message {
                LookupMessage::Answered(id, result) => {
                    answers.insert(id, result);
                }
                LookupMessage::Done => break,
            }
        }
        for id in accounts {
            match answers.remove(&id) {
                Some(Ok(entry)) => {
                    resolved.insert(id, Resolution::Fresh(entry));
                }
                Some(Err(error)) if !error.is_budget() => {
                    stats.lookup_failures += 1;
                    tracing::warn!(account_id = %id, error = %error_chain(&*error), "account lookup failed");
                    continue_with_fallback(&mut stats, &mut stale, &mut resolved, id);
                }
                // Still running (it goes on in the background) or out of budget.
                _ => {
                    stats.lookups_out_of_budget += 1;
                    continue_with_fallback(&mut stats, &mut stale, &mut resolved, id);
                }
            }
        }
        (resolved, stats)
    }

    /// Forgets these accounts in this process and in the table, so the next batch looks them up.
    pub async fn invalidate(&self, account_ids: &[String]) -> Result<usize, StoreError> {
        for id in account_ids {
            self.tiers.memory.invalidate(id).await;
        }
        self.tiers.store.invalidate(account_ids).await
    }

    /// Fills the table (and this process's memory) with the accounts of the organization in
    /// `scope`, from `walk`: names and OU paths for the whole tree in a few paged calls, then
    /// tags and contact per account, `lookup_concurrency` at a time. Accounts the walk finds
    /// but cannot complete are left to the per-batch lookups.
    pub async fn warm(
        &self,
        walk: &dyn OrganizationWalk,
        scope: WarmScope,
        deadline: Instant,
    ) -> Result<WarmReport, LookupError> {
        let accounts = walk.walk(deadline).await?;
        Ok(self.warm_walked(walk, accounts, scope, deadline).await)
    }

    /// The second half of `warm`: completes (and caches) accounts an earlier walk found, so a
    /// caller that warms in several rounds walks the tree once.
    pub async fn warm_walked(
        &self,
        walk: &dyn OrganizationWalk,
        mut accounts: Vec<WalkedAccount>,
        scope: WarmScope,
        deadline: Instant,
    ) -> WarmReport {
        let mut report = WarmReport { accounts: accounts.len(), ..Default::default() };
        if scope == WarmScope::Uncached {
            let ids: Vec<String> = accounts.iter().map(|a| a.account_id.clone()).collect();
            let cached = self.from_cache(&ids).await;
            report.already_cached = cached.resolved.len();
            accounts.retain(|a| !cached.resolved.contains_key(&a.account_id));
        }
        let tiers = &self.tiers;
        let to_complete = accounts.len();
        // No account is started once the deadline has passed: the rest are not reached, not
        // failed (the per-batch lookups and the next pass will get them).
        let mut completed = futures::stream::iter(accounts)
            .take_while(|_| std::future::ready(Instant::now() < deadline))
            .map(|account| async move {
                let id = account.account_id.clone();
                (id, walk.complete(account, deadline).await)
            })
            .buffer_unordered(tiers.lookup_concurrency);
        let mut to_store = Vec::new();
        while let Some((id, result)) = completed.next().await {
            match result {
                Ok(record) => {
                    let entry = CacheEntry::new(record, now_epoch_seconds(), &tiers.times, &mut rand::rng());
                    tiers.memory.insert(id.clone(), Arc::new(entry.clone())).await;
                    to_store.push((id, entry));
                    report.cached += 1;
                }
                Err(error) if error.is_budget() => report.not_reached += 1,
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(account_id = %id, error = %error_chain(&error), "account not warmed");
                }
            }
            if to_store.len() == STORE_CHUNK {
                tiers.store(std::mem::take(&mut to_store)).await;
            }
        }
        tiers.store(to_store).await;
        report.not_reached += to_complete - report.cached - report.failed - report.not_reached;
        report
    }

    pub async fn invalidate_all(&self) -> Result<usize, StoreError> {
        self.tiers.memory.invalidate_all();
        self.tiers.store.invalidate_all().await
    }
}

/// Serves a stale entry if there is one, else marks the account unavailable.
fn continue_with_fallback(
    stats: &mut PrefetchStats,
    stale: &mut HashMap<String, Arc<CacheEntry>>,
    resolved: &mut HashMap<String, Resolution>,
    id: String,
) {
    let fallback = match stale.remove(&id) {
        Some(entry) => {
            stats.stale_served += 1;
            Resolution::Stale(entry)
        }
        None => {
            stats.unavailable += 1;
            Resolution::Unavailable
        }
    };
    resolved.insert(id, fallback);
}

impl Tiers {
    /// Runs in its own task: looks every account up (bounded concurrency), reports each answer,
    /// and stores what it learned as it goes.
    async fn look_up_all(
        self: Arc<Self>,
        accounts: Vec<String>,
        sender: tokio::sync::mpsc::UnboundedSender<LookupMessage>,
    ) {
        let deadline = Instant::now() + self.background_budget;
        let tiers = &self;
        let mut answers = futures::stream::iter(accounts)
            .map(|id| async move {
                let result = tiers.lookup_one(&id, deadline).await;
                (id, result)
            })
            .buffer_unordered(self.lookup_concurrency);
        let mut to_store = Vec::new();
        while let Some((id, result)) = answers.next().await {
            if let Ok(entry) = &result {
                to_store.push((id.clone(), CacheEntry::clone(entry)));
            }
            // The batch may have stopped listening; the cache is still worth warming.
            let _ = sender.send(LookupMessage::Answered(id, result));
            if to_store.len() == STORE_CHUNK {
                self.store(std::mem::take(&mut to_store)).await;
            }
        }
        self.store(to_store).await;
        let _ = sender.send(LookupMessage::Done);
    }

    async fn store(&self, entries: Vec<(String, CacheEntry)>) {
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self.store.put_many(&entries).await {
            tracing::warn!(error = %error_chain(&error), "cache table write failed; entries stay in memory only");
        }
    }

    /// One account's lookup; concurrent callers for the same account share a single fetch.
    async fn lookup_one(&self, id: &str, deadline: Instant) -> LookupResult {
        // A stale entry would satisfy `try_get_with` and block the refresh.
        if self.memory.get(id).await.is_some_and(|e| e.freshness(now_epoch_seconds()) != Freshness::Fresh) {
            self.memory.invalidate(id).await;
        }
        self.memory
            .try_get_with_by_ref(id, async {
                let record = self.source.lookup(id, deadline).await?;
                Ok(Arc::new(CacheEntry::new(record, now_epoch_seconds(), &self.times, &mut rand::rng())))
            })
            .await
    }
}
