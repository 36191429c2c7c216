//! Port: the investigation job table, which makes every investigation run once.

use async_trait::async_trait;

use crate::core::investigation::{Enqueued, Job, JobChange, JobRequest};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("DynamoDB {operation} on the jobs table failed")]
    Request {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("job {job_id} is not in the state this change expects")]
    Conflict { job_id: String },
}

#[async_trait]
pub trait JobStore: Send + Sync {
    async fn enqueue(&self, request: &JobRequest, now: i64) -> Result<Enqueued, JobError>;
    /// Jobs still in progress (PENDING, STARTING, RUNNING), at most `limit`.
    async fn active(&self, limit: usize) -> Result<Vec<Job>, JobError>;
    /// PENDING and due → STARTING. False when another runner got it first or it is not due.
    async fn claim(&self, job_id: &str, now: i64) -> Result<bool, JobError>;
    async fn update(&self, job_id: &str, change: &JobChange, now: i64) -> Result<(), JobError>;
    /// Adds a pending job's findings and priority to `lead`, then marks it JOINED. False when
    /// the job was no longer pending (another runner took it; the lead has its findings too).
    async fn absorb(&self, lead: &str, job: &Job, now: i64) -> Result<bool, JobError>;
}
