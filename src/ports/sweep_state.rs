//! Port: what the sweep keeps between runs: where a sweep of every finding stopped, and the
//! accounts whose findings wait to be refreshed because their metadata changed.

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
}
