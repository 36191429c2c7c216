//! Port: what the sweep keeps between runs: where a sweep of every finding stopped, when the
//! last one finished, the accounts whose findings wait to be refreshed (their metadata changed,
//! or the stream could not resolve them), and the lease that keeps two runs from overlapping.

use async_trait::async_trait;

use crate::ports::metadata::StoreError;

/// Where an interrupted sweep of every active finding goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// GetFindings' NextToken of the first page not yet done.
    pub next_token: String,
    /// When the pass began (epoch seconds), for the log and the operator.
    pub pass_started_at: i64,
}

#[async_trait]
pub trait SweepState: Send + Sync {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;
    /// Records where the pass stands; `None` once it has reached the end.
    async fn save_checkpoint(&self, checkpoint: Option<&Checkpoint>) -> Result<(), StoreError>;
    /// Accounts whose findings wait to be refreshed.
    async fn queued(&self) -> Result<Vec<String>, StoreError>;
    async fn enqueue(&self, accounts: &[String]) -> Result<(), StoreError>;
    /// Takes accounts off the queue once their findings are refreshed.
    async fn dequeue(&self, accounts: &[String]) -> Result<(), StoreError>;
    /// When the last pass over every finding reached its end (epoch seconds), if one has.
    async fn last_pass_completed(&self) -> Result<Option<i64>, StoreError>;
    async fn record_pass_completed(&self, at: i64) -> Result<(), StoreError>;
    /// Takes the run lease for `holder` until `until` (epoch seconds), if no other holder has
    /// one that has not expired at `now`; true when taken.
    async fn take_lease(&self, holder: &str, now: i64, until: i64) -> Result<bool, StoreError>;
    /// Gives the lease back, if `holder` still has it.
    async fn release_lease(&self, holder: &str) -> Result<(), StoreError>;
}
