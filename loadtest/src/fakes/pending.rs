//! The pending-writes store in memory (the `PendingWrites` port), with the DynamoDB adapter's
//! semantics: per account, the latest snapshot of each finding, an index entry from the first
//! hold until a drainer releases the account with nothing left, and a drainer's claim until it releases it. It
//! outlives the enrichers that use it, as the table outlives Lambda environments.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use securityhub_enricher::core::pending::{PendingAccount, PendingFinding};
use securityhub_enricher::ports::metadata::StoreError;
use securityhub_enricher::ports::pending::{PendingWrites, StoreUsage, Taken};

#[derive(Default)]
struct Account {
    findings: BTreeMap<String, PendingFinding>,
    claimed_until_ms: Option<i64>,
}

#[derive(Default)]
pub struct InMemoryPendingWrites {
    accounts: Mutex<HashMap<String, Account>>,
    /// Index entries: findings waiting, and since when the oldest waits.
    index: Mutex<BTreeMap<String, (usize, i64)>>,
    latency: Duration,
    /// When set, every hold fails (the table unreachable).
    pub unavailable: std::sync::atomic::AtomicBool,
    /// DynamoDB requests the adapter would make: an UpdateItem per account held, per index shard
    /// touched, per take (and its index removal) and per release; a BatchGetItem per read of
    /// the index.
    pub requests: AtomicUsize,
}

impl InMemoryPendingWrites {
    pub fn with_latency(latency: Duration) -> Self {
        InMemoryPendingWrites { latency, ..Default::default() }
    }

    /// Findings waiting, over every account.
    pub fn waiting(&self) -> usize {
        self.accounts.lock().unwrap().values().map(|a| a.findings.len()).sum()
    }

    async fn call(&self, requests: usize) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

fn summary(account: &str, findings: &BTreeMap<String, PendingFinding>, now_ms: i64) -> PendingAccount {
    PendingAccount {
        account: account.to_owned(),
        findings: findings.len(),
        oldest_ms: findings.values().map(|f| f.held_at_ms).min().unwrap_or(now_ms),
    }
}

#[async_trait]
impl PendingWrites for InMemoryPendingWrites {
    async fn hold(
        &self,
        groups: &[(String, Vec<PendingFinding>)],
        now_ms: i64,
    ) -> Vec<(String, Result<PendingAccount, StoreError>)> {
        // Accounts held 16 at a time, then one update per index shard touched (at most 16).
        self.requests.fetch_add(groups.len() + groups.len().min(16), Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency * (groups.len().div_ceil(16) as u32 + 1)).await;
        }
        if self.unavailable.load(Ordering::Relaxed) {
            return groups
                .iter()
                .map(|(a, _)| (a.clone(), Err(StoreError::Unavailable { reason: "the table is unreachable".into() })))
                .collect();
        }
        let mut accounts = self.accounts.lock().unwrap();
        let mut index = self.index.lock().unwrap();
        groups
            .iter()
            .map(|(account, findings)| {
                let item = accounts.entry(account.clone()).or_default();
                for finding in findings {
                    item.findings.insert(finding.key(), finding.clone());
                }
                let waiting = summary(account, &item.findings, now_ms);
                let entry = index.entry(account.clone()).or_insert((0, waiting.oldest_ms));
                entry.0 = waiting.findings;
                (account.clone(), Ok(waiting))
            })
            .collect()
    }

    async fn accounts(&self) -> Result<Vec<PendingAccount>, StoreError> {
        self.call(1).await;
        Ok(self
            .index
            .lock()
            .unwrap()
            .iter()
            .map(|(account, (findings, oldest_ms))| PendingAccount {
                account: account.clone(),
                findings: *findings,
                oldest_ms: *oldest_ms,
            })
            .collect())
    }

    async fn take(&self, account: &str, now_ms: i64, until_ms: i64) -> Result<Option<Taken>, StoreError> {
        self.call(2).await;
        let mut accounts = self.accounts.lock().unwrap();
        let Some(item) = accounts.get_mut(account) else { return Ok(None) };
        if item.claimed_until_ms.is_some_and(|until| until >= now_ms) {
            return Ok(None);
        }
        item.claimed_until_ms = Some(until_ms);
        Ok(Some(Taken { findings: item.findings.values().cloned().collect() }))
    }

    async fn release(&self, account: &str, written: &[String]) -> Result<(), StoreError> {
        self.call(1).await;
        let mut accounts = self.accounts.lock().unwrap();
        let Some(item) = accounts.get_mut(account) else { return Ok(()) };
        for key in written {
            item.findings.remove(key);
        }
        item.claimed_until_ms = None;
        self.requests.fetch_add(1, Ordering::Relaxed);
        if item.findings.is_empty() {
            accounts.remove(account);
            self.index.lock().unwrap().remove(account);
        } else {
            let waiting = summary(account, &item.findings, i64::MAX);
            self.index.lock().unwrap().insert(account.to_owned(), (waiting.findings, waiting.oldest_ms));
        }
        Ok(())
    }

    /// Not measured: capacity depends on DynamoDB's item sizes, which only the table adapter
    /// sees (`requests` above counts the requests the adapter would make, for the simulator).
    fn usage(&self) -> Option<StoreUsage> {
        None
    }
}
