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
pub enum WriteError {
    #[error("BatchUpdateFindings was throttled")]
    Throttled {
        #[source]
        source: BoxError,
    },
    #[error("BatchUpdateFindings failed; worth retrying")]
    Transient {
        #[source]
        source: BoxError,
    },
    /// The request itself is invalid: retrying the same request cannot help.
    #[error("BatchUpdateFindings rejected the request ({code})")]
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

/// Reads findings' current state (GetFindings), for writers that were not handed the finding.
#[async_trait]
pub trait FindingsReader: Send + Sync {
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<Finding>, WriteError>;
}
