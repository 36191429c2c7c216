//! Port: writing enrichment to findings and reading findings back: Security Hub CSPM
//! (BatchUpdateFindings, GetFindings) and the new Security Hub (BatchUpdateFindingsV2).

use async_trait::async_trait;

use crate::core::enrich::EnrichmentPayload;
use crate::core::finding::OcsfFindingId;
use crate::core::finding::{Finding, FindingId, Hub};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A finding Security Hub did not update, as UnprocessedFindings reports it (`I` is how the
/// hub names findings: `FindingId` for CSPM, `OcsfFindingId` for the new hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed<I = FindingId> {
    pub id: I,
    pub code: String,
    pub message: String,
}

impl<I> Unprocessed<I> {
    /// UnprocessedFindings codes worth another try; the others never succeed on retry.
    /// CSPM: ConcurrentUpdateError, InternalFailure; V2: ConflictException,
    /// InternalServerException (ResourceNotFoundException and ValidationException are final).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ConcurrentUpdateError" | "InternalFailure" | "ConflictException" | "InternalServerException"
        )
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

/// One BatchUpdateFindingsV2 call: one comment for every finding named (≤ 100, all named the
/// same way).
#[async_trait]
pub trait FindingsWriterV2: Send + Sync {
    async fn batch_update_v2(
        &self,
        ids: &[OcsfFindingId],
        comment: &str,
    ) -> Result<Vec<Unprocessed<OcsfFindingId>>, WriteError>;
}

/// Reads findings' current state (GetFindings), for writers that were not handed the finding.
#[async_trait]
pub trait FindingsReader: Send + Sync {
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<Finding>, WriteError>;
    /// One page (at most 100) of one hub's active findings of these accounts (every account
    /// when empty; at most 20), in account order so that one account's findings come together:
    /// Security Hub CSPM's ACTIVE ones (GetFindings), or the new hub's not resolved or archived
    /// (GetFindingsV2, decoded into the same finding view).
    async fn active_findings(
        &self,
        hub: Hub,
        accounts: &[String],
        next_token: Option<String>,
    ) -> Result<FindingsPage, WriteError>;
}
