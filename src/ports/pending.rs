//! Port: the pending-writes store, where findings wait (durably) to be written together with
//! later findings of their account (see `service::pending`).

use async_trait::async_trait;
use serde::Serialize;

use crate::core::pending::{PendingAccount, PendingFinding};
use crate::ports::metadata::StoreError;

/// An account's findings as a drainer took them: its claim on them lasts until it gives them
/// back with `release`, or the claim lapses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub findings: Vec<PendingFinding>,
}

/// What a store's requests have cost since it was built: DynamoDB requests and the capacity
/// units they consumed (for the cost per finding: `PendingStoreWriteUnits` and the README).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreUsage {
    pub requests: u64,
    pub write_units: u64,
    pub read_units: u64,
}

impl StoreUsage {
    /// What was spent between `earlier` and this snapshot.
    pub fn since(self, earlier: StoreUsage) -> StoreUsage {
        StoreUsage {
            requests: self.requests.saturating_sub(earlier.requests),
            write_units: self.write_units.saturating_sub(earlier.write_units),
            read_units: self.read_units.saturating_sub(earlier.read_units),
        }
    }
}

impl std::ops::AddAssign for StoreUsage {
    fn add_assign(&mut self, other: StoreUsage) {
        self.requests += other.requests;
        self.write_units += other.write_units;
        self.read_units += other.read_units;
    }
}

#[async_trait]
pub trait PendingWrites: Send + Sync {
    /// Puts each account's findings in the store (a finding already there is replaced by this
    /// later snapshot) and indexes the accounts; answers, per account, what it has waiting now,
    /// these included, or why they could not be held. Once an account's answer is `Ok`, its
    /// findings survive the caller.
    async fn hold(
        &self,
        groups: &[(String, Vec<PendingFinding>)],
        now_ms: i64,
    ) -> Vec<(String, Result<PendingAccount, StoreError>)>;
    /// The accounts with findings waiting, from the index (a hint: `take` reads the truth).
    async fn accounts(&self) -> Result<Vec<PendingAccount>, StoreError>;
    /// Claims an account's waiting findings until `until_ms` (its index entry stays, so that
    /// another drainer finds it should this one die); `None` when another drainer holds an
    /// unexpired claim on them.
    async fn take(&self, account: &str, now_ms: i64, until_ms: i64) -> Result<Option<Taken>, StoreError>;
    /// Removes the findings written (by key, `PendingFinding::key`), ends the claim, and sets
    /// the account's index entry to what remains (those not written, or held meanwhile), or
    /// takes it off when nothing does.
    async fn release(&self, account: &str, written: &[String]) -> Result<(), StoreError>;
    /// What this store's requests have cost so far; `None` for a store that does not measure
    /// it (an in-memory fake).
    fn usage(&self) -> Option<StoreUsage>;
}
