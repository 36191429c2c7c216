//! Port: Amazon Detective, as the investigator uses it. Nothing here waits for an
//! investigation to finish.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DetectiveError {
    #[error("Detective {operation} was throttled")]
    Throttled {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("Detective {operation} failed; worth retrying")]
    Transient {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    /// The request can never succeed as it is (validation, unknown graph, access).
    #[error("Detective {operation} refused the request ({code})")]
    Refused {
        operation: &'static str,
        code: String,
        #[source]
        source: BoxError,
    },
    #[error("no Detective behavior graph in this region: enable Detective or set DETECTIVE_GRAPH_ARN")]
    NoGraph,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvestigationStatus {
    Running,
    Successful { severity: String },
    Failed,
}

#[async_trait]
pub trait Investigations: Send + Sync {
    async fn graph(&self) -> Result<String, DetectiveError>;
    /// The accounts whose entities the graph can investigate: its members whose status is
    /// ENABLED (the only status in which a member contributes data), and its administrator.
    async fn covered_accounts(&self, graph: &str) -> Result<BTreeSet<String>, DetectiveError>;
    async fn start(
        &self,
        graph: &str,
        entity_arn: &str,
        scope_start: i64,
        scope_end: i64,
    ) -> Result<String, DetectiveError>;
    async fn status(&self, graph: &str, investigation_id: &str) -> Result<InvestigationStatus, DetectiveError>;
    /// Indicator counts by type, for the note.
    async fn indicators(&self, graph: &str, investigation_id: &str) -> Result<BTreeMap<String, usize>, DetectiveError>;
}
