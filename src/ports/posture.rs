//! Port: where the sweep keeps its posture counts between runs and for the report: the last
//! completed pass's counts with its end time, and the counts of the pass still running.

use async_trait::async_trait;

use crate::core::posture::{CompletedPass, PassProgress};
use crate::ports::metadata::StoreError;

#[async_trait]
pub trait PostureStore: Send + Sync {
    /// The last completed pass's counts, if a pass has completed.
    async fn last_pass(&self) -> Result<Option<CompletedPass>, StoreError>;
    /// The counts of the refresher's pass still running, if one is.
    async fn progress(&self) -> Result<Option<PassProgress>, StoreError>;
    /// Records a completed pass (replacing the last one).
    async fn save_pass(&self, pass: &CompletedPass) -> Result<(), StoreError>;
    /// Records how far the running pass is; `None` once it has ended.
    async fn save_progress(&self, progress: Option<&PassProgress>) -> Result<(), StoreError>;
}
