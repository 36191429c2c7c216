//! The Amazon Detective adapter: the behavior graph and its members, starting investigations, and reading
//! their status, severity and indicators. Nothing here waits for an investigation to finish.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_detective::error::ProvideErrorMetadata;
use aws_smithy_types::DateTime;
use tokio::sync::OnceCell;

use crate::adapters::sdk::{ErrorClass, classify};
use crate::ports::detective::{DetectiveError, InvestigationStatus, Investigations};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Codes that no retry can fix: validation, an unknown graph or entity, access, quota.
const REFUSED: &[&str] =
    &["ValidationException", "ResourceNotFoundException", "AccessDeniedException", "ServiceQuotaExceededException"];

/// Maps an SDK error to the port's error through the one classifier.
fn detective_error<E, R>(operation: &'static str, e: aws_sdk_detective::error::SdkError<E, R>) -> DetectiveError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let class = classify(&e, REFUSED);
    let code = e.code().unwrap_or_default().to_owned();
    let source: BoxError = Box::new(e);
    match class {
        ErrorClass::Throttled => DetectiveError::Throttled { operation, source },
        ErrorClass::Refused => DetectiveError::Refused { operation, code, source },
        ErrorClass::Transient => DetectiveError::Transient { operation, source },
    }
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
                    let page = page.map_err(|e| detective_error("ListGraphs", e))?;
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

    async fn covered_accounts(&self, graph: &str) -> Result<BTreeSet<String>, DetectiveError> {
        use aws_sdk_detective::types::MemberStatus;
        let mut covered = BTreeSet::new();
        // The graph's ARN names its administrator account, which ListMembers need not list.
        if let Some(admin) = graph.split(':').nth(4).filter(|a| !a.is_empty()) {
            covered.insert(admin.to_owned());
        }
        let mut pages = self.client.list_members().graph_arn(graph).max_results(200).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| detective_error("ListMembers", e))?;
            for member in page.member_details.unwrap_or_default() {
                if member.status == Some(MemberStatus::Enabled)
                    && let Some(account) = member.account_id
                {
                    covered.insert(account);
                }
            }
        }
        Ok(covered)
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
            .map_err(|e| detective_error("StartInvestigation", e))?;
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
            .map_err(|e| detective_error("GetInvestigation", e))?;
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
                .map_err(|e| detective_error("ListIndicators", e))?;
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

#[cfg(test)]
mod tests {
    use aws_sdk_detective::Client;
    use aws_sdk_detective::operation::list_members::ListMembersOutput;
    use aws_sdk_detective::operation::start_investigation::StartInvestigationError;
    use aws_sdk_detective::types::error::ResourceNotFoundException;
    use aws_sdk_detective::types::{MemberDetail, MemberStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    const GRAPH: &str = "arn:aws:detective:us-east-1:999988887777:graph:0123456789abcdef0123456789abcdef";

    fn member(account: &str, status: MemberStatus) -> MemberDetail {
        MemberDetail::builder().account_id(account).status(status).build()
    }

    #[tokio::test]
    async fn coverage_reads_every_page_and_keeps_enabled_members_and_the_administrator() {
        let first = mock!(Client::list_members).match_requests(|r| r.next_token().is_none()).then_output(|| {
            ListMembersOutput::builder()
                .member_details(member("111111111111", MemberStatus::Enabled))
                .member_details(member("222222222222", MemberStatus::Invited))
                .next_token("p2")
                .build()
        });
        let second = mock!(Client::list_members).match_requests(|r| r.next_token() == Some("p2")).then_output(|| {
            ListMembersOutput::builder()
                .member_details(member("333333333333", MemberStatus::Enabled))
                .member_details(member("444444444444", MemberStatus::AcceptedButDisabled))
                .member_details(member("555555555555", MemberStatus::VerificationFailed))
                .build()
        });
        let client = mock_client!(aws_sdk_detective, RuleMode::MatchAny, [&first, &second]);
        let detective = DetectiveClient::new(client, Some(GRAPH.into()));
        let covered = detective.covered_accounts(GRAPH).await.unwrap();
        assert_eq!(covered, BTreeSet::from(["111111111111", "333333333333", "999988887777"].map(String::from)));
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_unknown_entity_is_refused_with_its_code() {
        let start = mock!(Client::start_investigation).then_error(|| {
            StartInvestigationError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("no such entity")
                    .meta(ErrorMetadata::builder().code("ResourceNotFoundException").build())
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_detective, [&start]);
        let detective = DetectiveClient::new(client, Some(GRAPH.into()));
        let error = detective.start(GRAPH, "arn:aws:iam::123456789012:user/x", 0, 3600).await.unwrap_err();
        assert!(
            matches!(&error, DetectiveError::Refused { code, .. } if code == "ResourceNotFoundException"),
            "{error:?}"
        );
    }
}
