//! The Amazon Detective adapter: the behavior graph, starting investigations, and reading
//! their status, severity and indicators. Nothing here waits for an investigation to finish.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_detective::error::ProvideErrorMetadata;
use aws_smithy_types::DateTime;
use tokio::sync::OnceCell;

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

impl DetectiveError {
    fn from_sdk<E, R>(operation: &'static str, e: aws_sdk_detective::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = e.code().unwrap_or_default().to_owned();
        let source: BoxError = Box::new(e);
        match code.as_str() {
            "TooManyRequestsException" | "ThrottlingException" => DetectiveError::Throttled { operation, source },
            "ValidationException"
            | "ResourceNotFoundException"
            | "AccessDeniedException"
            | "ServiceQuotaExceededException" => DetectiveError::Refused { operation, code, source },
            _ => DetectiveError::Transient { operation, source },
        }
    }
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

pub struct DetectiveClient {
    client: aws_sdk_detective::Client,
    configured_graph: Option<String>,
    discovered_graph: OnceCell<String>,
}

impl DetectiveClient {
    pub fn new(client: aws_sdk_detective::Client, configured_graph: Option<String>) -> Self {
        DetectiveClient { client, configured_graph, discovered_graph: OnceCell::new() }
    }
}

#[async_trait]
impl Investigations for DetectiveClient {
    async fn graph(&self) -> Result<String, DetectiveError> {
        if let Some(graph) = &self.configured_graph {
            return Ok(graph.clone());
        }
        self.discovered_graph
            .get_or_try_init(|| async {
                let mut graphs = Vec::new();
                let mut pages = self.client.list_graphs().into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| DetectiveError::from_sdk("ListGraphs", e))?;
                    graphs.extend(page.graph_list.unwrap_or_default());
                }
                // An account administers one graph per region; should there be several, the
                // oldest is the organization's.
                graphs.sort_by_key(|g| g.created_time.map(|t| t.to_millis().unwrap_or(i64::MAX)));
                if graphs.len() > 1 {
                    tracing::warn!(
                        graphs = graphs.len(),
                        "several Detective graphs; using the oldest (set DETECTIVE_GRAPH_ARN to choose)"
                    );
                }
                graphs.into_iter().find_map(|g| g.arn).ok_or(DetectiveError::NoGraph)
            })
            .await
            .cloned()
    }

    async fn start(
        &self,
        graph: &str,
        entity_arn: &str,
        scope_start: i64,
        scope_end: i64,
    ) -> Result<String, DetectiveError> {
        let out = self
            .client
            .start_investigation()
            .graph_arn(graph)
            .entity_arn(entity_arn)
            .scope_start_time(DateTime::from_secs(scope_start))
            .scope_end_time(DateTime::from_secs(scope_end))
            .send()
            .await
            .map_err(|e| DetectiveError::from_sdk("StartInvestigation", e))?;
        out.investigation_id.ok_or_else(|| DetectiveError::Transient {
            operation: "StartInvestigation",
            source: "no InvestigationId in the answer".into(),
        })
    }

    async fn status(&self, graph: &str, investigation_id: &str) -> Result<InvestigationStatus, DetectiveError> {
        use aws_sdk_detective::types::Status;
        let out = self
            .client
            .get_investigation()
            .graph_arn(graph)
            .investigation_id(investigation_id)
            .send()
            .await
            .map_err(|e| DetectiveError::from_sdk("GetInvestigation", e))?;
        Ok(match out.status {
            Some(Status::Successful) => InvestigationStatus::Successful {
                severity: out.severity.map(|s| s.as_str().to_owned()).unwrap_or_else(|| "INFORMATIONAL".into()),
            },
            Some(Status::Failed) => InvestigationStatus::Failed,
            _ => InvestigationStatus::Running,
        })
    }

    async fn indicators(&self, graph: &str, investigation_id: &str) -> Result<BTreeMap<String, usize>, DetectiveError> {
        let mut counts = BTreeMap::new();
        let mut token = None;
        // Two pages are plenty for a note; the console has the rest.
        for _ in 0..2 {
            let out = self
                .client
                .list_indicators()
                .graph_arn(graph)
                .investigation_id(investigation_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| DetectiveError::from_sdk("ListIndicators", e))?;
            for indicator in out.indicators.unwrap_or_default() {
                if let Some(kind) = indicator.indicator_type {
                    *counts.entry(kind.as_str().to_owned()).or_default() += 1;
                }
            }
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok(counts)
    }
}
