//! Resolves a batch's accounts in one pass: memory, then DynamoDB, then lookups for the rest,
//! within a time budget, falling back to stale entries rather than stalling the stream.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{AccountRecord, AccountSource, CacheEntry, Freshness, LookupError, MetadataStore, now_epoch_seconds};
use crate::config::CacheTimes;

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

pub struct Directory {
    memory: moka::future::Cache<String, Arc<CacheEntry>>,
    store: Arc<dyn MetadataStore>,
    source: Arc<dyn AccountSource>,
    times: CacheTimes,
    lookup_concurrency: usize,
    lookup_budget: std::time::Duration,
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
        Directory { memory, store, source, times, lookup_concurrency, lookup_budget }
    }

    /// Resolves every account once. Never fails: what cannot be known is `Unavailable`.
    pub async fn prefetch(
        &self,
        account_ids: &[String],
        deadline: Instant,
    ) -> (HashMap<String, Resolution>, PrefetchStats) {
        let now = now_epoch_seconds();
        let mut stats = PrefetchStats { accounts: account_ids.len(), ..Default::default() };
        let mut resolved = HashMap::with_capacity(account_ids.len());
        let mut stale: HashMap<String, Arc<CacheEntry>> = HashMap::new();

        let mut misses = Vec::new();
        for id in account_ids {
            match self.memory.get(id).await {
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
            match self.store.get_many(&misses).await {
                Ok(mut found) => {
                    for id in misses {
                        match found.remove(&id) {
                            Some(entry) if entry.freshness(now) == Freshness::Fresh => {
                                stats.store_hits += 1;
                                let entry = Arc::new(entry);
                                self.memory.insert(id.clone(), Arc::clone(&entry)).await;
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

        let lookup_deadline = deadline.min(Instant::now() + self.lookup_budget);
        let lookups: Vec<(String, LookupResult)> = futures::stream::iter(to_look_up)
            .map(|id| async move {
                let result = self.lookup_one(&id, lookup_deadline).await;
                (id, result)
            })
            .buffer_unordered(self.lookup_concurrency)
            .collect()
            .await;

        let mut to_store = Vec::new();
        for (id, result) in lookups {
            stats.lookups += 1;
            match result {
                Ok(entry) => {
                    to_store.push((id.clone(), CacheEntry::clone(&entry)));
                    resolved.insert(id, Resolution::Fresh(entry));
                }
                Err(error) => {
                    if error.is_budget() {
                        stats.lookups_out_of_budget += 1;
                    } else {
                        stats.lookup_failures += 1;
                        tracing::warn!(account_id = %id, error = %error_chain(&*error), "account lookup failed");
                    }
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
            }
        }
        if !to_store.is_empty()
            && let Err(error) = self.store.put_many(&to_store).await
        {
            stats.store_errors += 1;
            tracing::warn!(error = %error_chain(&error), "cache table write failed; entries stay in memory only");
        }
        (resolved, stats)
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

    /// Forgets these accounts in this process and in the table, so the next batch looks them up.
    pub async fn invalidate(&self, account_ids: &[String]) -> Result<usize, super::StoreError> {
        for id in account_ids {
            self.memory.invalidate(id).await;
        }
        self.store.invalidate(account_ids).await
    }

    pub async fn invalidate_all(&self) -> Result<usize, super::StoreError> {
        self.memory.invalidate_all();
        self.store.invalidate_all().await
    }
}

/// "outer: inner: innermost": SDK errors hide their detail in the source chain.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
