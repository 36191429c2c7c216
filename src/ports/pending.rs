//! Port: the pending-writes store, where findings wait (durably) to be written together with
//! later findings of their account (see `service::pending`).

use async_trait::async_trait;

use crate::core::pending::{PendingAccount, PendingFinding};
use crate::ports::metadata::StoreError;

/// An account's findings as a drainer took them: its claim on them lasts until it gives them
/// back with `release`, or the claim lapses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub findings: Vec<PendingFinding>,
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
}
