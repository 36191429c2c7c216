//! In-memory cache store and account source (the `MetadataStore`, `AccountSource` and
//! `OrganizationWalk` ports), for handler tests and the load-test simulator. They count their
//! calls so tests can assert on them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::cache_entry::{CacheEntry, Freshness};
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::ports::metadata::{
    AccountSource, LookupError, MetadataStore, OrganizationWalk, StoreError, WalkedAccount,
};

#[derive(Default)]
pub struct InMemoryStore {
    entries: Mutex<HashMap<String, CacheEntry>>,
    pub get_calls: AtomicUsize,
    pub put_calls: AtomicUsize,
    /// Makes every call fail, as an unreachable table would.
    pub unavailable: AtomicBool,
}

impl InMemoryStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable { reason: "in-memory store set unavailable".into() });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&self, account_id: &str, entry: CacheEntry) {
        self.entries.lock().unwrap().insert(account_id.to_owned(), entry);
    }
}

#[async_trait]
impl MetadataStore for InMemoryStore {
    async fn get_many(&self, account_ids: &[String]) -> Result<HashMap<String, CacheEntry>, StoreError> {
        self.get_calls.fetch_add(account_ids.len().div_ceil(100), Ordering::Relaxed);
        self.check()?;
        let now = now_epoch_seconds();
        let entries = self.entries.lock().unwrap();
        Ok(account_ids
            .iter()
            .filter_map(|id| {
                entries.get(id).filter(|e| e.freshness(now) != Freshness::Expired).map(|e| (id.clone(), e.clone()))
            })
            .collect())
    }

    async fn put_many(&self, entries: &[(String, CacheEntry)]) -> Result<(), StoreError> {
        self.put_calls.fetch_add(entries.len().div_ceil(25), Ordering::Relaxed);
        self.check()?;
        self.entries.lock().unwrap().extend(entries.iter().cloned());
        Ok(())
    }

    async fn invalidate(&self, account_ids: &[String]) -> Result<usize, StoreError> {
        self.check()?;
        let mut entries = self.entries.lock().unwrap();
        account_ids.iter().for_each(|id| {
            entries.remove(id);
        });
        Ok(account_ids.len())
    }

    async fn invalidate_all(&self) -> Result<usize, StoreError> {
        self.check()?;
        let mut entries = self.entries.lock().unwrap();
        let n = entries.len();
        entries.clear();
        Ok(n)
    }
}

/// A fixed organization. Accounts it does not hold are `NotFound`.
#[derive(Default)]
pub struct StaticSource {
    accounts: Mutex<HashMap<String, AccountRecord>>,
    lookups: Mutex<HashMap<String, usize>>,
    /// Accounts whose lookups fail, as under an Organizations outage.
    failing: Mutex<Vec<String>>,
    /// Time each lookup takes.
    pub latency: Duration,
    /// Walks of the OU tree, and accounts completed after one (`OrganizationWalk`).
    pub walks: AtomicUsize,
    pub completions: AtomicUsize,
    /// Makes the walk fail, as a walk cut short by its deadline does.
    pub walk_fails: AtomicBool,
}

impl StaticSource {
    pub fn new(accounts: impl IntoIterator<Item = AccountRecord>) -> Self {
        let accounts = accounts
            .into_iter()
            .filter_map(|r| match &r {
                AccountRecord::Found(meta) => Some((meta.account_id.clone(), r)),
                AccountRecord::NotFound => None,
            })
            .collect();
        StaticSource { accounts: Mutex::new(accounts), ..Default::default() }
    }

    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The organization changes an account (re-tag, move, new contact).
    pub fn update(&self, record: AccountRecord) {
        if let AccountRecord::Found(meta) = &record {
            self.accounts.lock().unwrap().insert(meta.account_id.clone(), record);
        }
    }

    pub fn fail(&self, account_ids: &[&str]) {
        *self.failing.lock().unwrap() = account_ids.iter().map(|s| s.to_string()).collect();
    }

    pub fn lookups(&self, account_id: &str) -> usize {
        self.lookups.lock().unwrap().get(account_id).copied().unwrap_or(0)
    }

    pub fn total_lookups(&self) -> usize {
        self.lookups.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl AccountSource for StaticSource {
    async fn lookup(&self, account_id: &str, deadline: Instant) -> Result<AccountRecord, LookupError> {
        *self.lookups.lock().unwrap().entry(account_id.to_owned()).or_default() += 1;
        if !self.latency.is_zero() {
            tokio::time::timeout_at(deadline, tokio::time::sleep(self.latency))
                .await
                .map_err(|_| LookupError::Budget { operation: "DescribeAccount" })?;
        }
        if self.failing.lock().unwrap().iter().any(|a| a == account_id) {
            return Err(LookupError::Request {
                service: "organizations",
                operation: "DescribeAccount",
                source: "TooManyRequestsException: Rate exceeded (simulated)".into(),
            });
        }
        Ok(self.accounts.lock().unwrap().get(account_id).cloned().unwrap_or(AccountRecord::NotFound))
    }
}

#[async_trait]
impl OrganizationWalk for StaticSource {
    async fn walk(&self, _deadline: Instant) -> Result<Vec<WalkedAccount>, LookupError> {
        self.walks.fetch_add(1, Ordering::Relaxed);
        if self.walk_fails.load(Ordering::Relaxed) {
            return Err(LookupError::Budget { operation: "ListAccountsForParent" });
        }
        let accounts = self.accounts.lock().unwrap();
        let mut walked: Vec<WalkedAccount> = accounts
            .values()
            .filter_map(|record| match record {
                AccountRecord::Found(meta) => Some(WalkedAccount {
                    account_id: meta.account_id.clone(),
                    name: meta.name.clone(),
                    ou_path: meta.ou_path.clone(),
                    state: meta.state,
                }),
                AccountRecord::NotFound => None,
            })
            .collect();
        walked.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(walked)
    }

    async fn complete(&self, account: WalkedAccount, deadline: Instant) -> Result<AccountRecord, LookupError> {
        self.completions.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::timeout_at(deadline, tokio::time::sleep(self.latency))
                .await
                .map_err(|_| LookupError::Budget { operation: "ListTagsForResource" })?;
        }
        let accounts = self.accounts.lock().unwrap();
        accounts
            .get(&account.account_id)
            .cloned()
            .ok_or_else(|| LookupError::Inconsistent { what: format!("{} left during the walk", account.account_id) })
    }
}
