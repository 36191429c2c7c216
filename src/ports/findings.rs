//! Port: writing enrichment to findings and reading findings back (Security Hub CSPM).

use async_trait::async_trait;

use crate::core::enrich::EnrichmentPayload;
use crate::core::finding::{Finding, FindingId};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A finding Security Hub did not update, as UnprocessedFindings reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed {
    pub id: FindingId,
    pub code: String,
    pub message: String,
}

impl Unprocessed {
    /// UnprocessedFindings codes worth another try; the others never succeed on retry.
    pub fn is_transient(&self) -> bool {
        matches!(self.code.as_str(), "ConcurrentUpdateError" | "InternalFailure")
    }
}

#[derive(Debug, thiserror::Error)]
/// A failed BatchUpdateFindings or GetFindings call.
pub enum WriteError {
    #[error("Security Hub throttled the call")]
    Throttled {
        #[source]
        source: BoxError,
    },
    #[error("the Security Hub call failed; worth retrying")]
    Transient {
        #[source]
        source: BoxError,
    },
    /// The request itself is invalid: retrying the same request cannot help.
    #[error("Security Hub rejected the request ({code})")]
    Rejected {
        code: String,
        #[source]
        source: BoxError,
    },
}

/// One BatchUpdateFindings call.
#[async_trait]
pub trait FindingsWriter: Send + Sync {
    async fn batch_update(
        &self,
        ids: &[FindingId],
        payload: &EnrichmentPayload,
    ) -> Result<Vec<Unprocessed>, WriteError>;
}

/// One page of active findings.
#[derive(Debug, Clone, Default)]
pub struct FindingsPage {
    pub findings: Vec<Finding>,
    /// Where the next page starts; `None` after the last page.
    pub next_token: Option<String>,
}

/// Reads findings' current state (GetFindings), for writers that were not handed the finding.
#[async_trait]
pub trait FindingsReader: Send + Sync {
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<Finding>, WriteError>;
    /// One page (at most 100) of ACTIVE findings of these accounts (every account when empty),
    /// in account order so that one account's findings come together.
    async fn active_findings(
        &self,
        accounts: &[String],
        next_token: Option<String>,
    ) -> Result<FindingsPage, WriteError>;
}
