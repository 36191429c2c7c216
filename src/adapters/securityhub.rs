//! The Security Hub adapter: one BatchUpdateFindings call per request, GetFindings for writers
//! that were not handed the finding and for the sweep (CSPM), one BatchUpdateFindingsV2 call per
//! request (the new hub, `Comment` only) and GetFindingsV2 for the sweep of the new hub.
//! Retries are the `Updater`'s and the sweep's, not this file's.

use async_trait::async_trait;
use aws_sdk_securityhub::error::ProvideErrorMetadata;
use aws_sdk_securityhub::types::{AwsSecurityFindingIdentifier, NoteUpdate};

use crate::adapters::sdk::{ErrorClass, classify};
use crate::core::enrich::{EnrichmentPayload, UPDATED_BY};
use crate::core::finding::OcsfFindingId;
use crate::core::finding::{Finding, FindingId, Hub, Note, Severity};
use crate::ports::findings::{FindingsPage, FindingsReader, FindingsWriter, FindingsWriterV2, Unprocessed, WriteError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// GetFindings takes at most 20 values per filter field.
const GET_FINDINGS_FILTER_VALUES: usize = 20;

/// The Security Hub adapter.
pub struct SecurityHubWriter {
    client: aws_sdk_securityhub::Client,
}

impl SecurityHubWriter {
    /// The client should have SDK retries off: the `Updater` retries within the deadline and
    /// the rate limit, which the SDK's own retry loop knows nothing of.
    pub fn new(client: aws_sdk_securityhub::Client) -> Self {
        SecurityHubWriter { client }
    }
}

#[async_trait]
impl FindingsWriter for SecurityHubWriter {
    async fn batch_update(
        &self,
        ids: &[FindingId],
        payload: &EnrichmentPayload,
    ) -> Result<Vec<Unprocessed>, WriteError> {
        let identifiers = ids
            .iter()
            .map(|f| AwsSecurityFindingIdentifier::builder().id(&f.id).product_arn(&f.product_arn).build())
            .collect();
        let note = payload.note.as_ref().map(|text| NoteUpdate::builder().text(text).updated_by(UPDATED_BY).build());
        let result = self
            .client
            .batch_update_findings()
            .set_finding_identifiers(Some(identifiers))
            .set_note(note)
            .set_user_defined_fields(Some(payload.fields.clone().into_iter().collect()))
            .send()
            .await;
        match result {
            Ok(output) => Ok(output
                .unprocessed_findings
                .unwrap_or_default()
                .into_iter()
                .map(|u| Unprocessed {
                    id: u
                        .finding_identifier
                        .map(|f| FindingId {
                            id: f.id.unwrap_or_default(),
                            product_arn: f.product_arn.unwrap_or_default(),
                        })
                        .unwrap_or_else(|| FindingId { id: String::new(), product_arn: String::new() }),
                    code: u.error_code.unwrap_or_default(),
                    message: u.error_message.unwrap_or_default(),
                })
                .collect()),
            // Only a malformed request is final. AccessDenied stays retryable so that a broken
            // permission shows up as failed records, not as silently dropped data.
            Err(error) => Err(write_error(error, &["InvalidInputException"])),
        }
    }
}

#[async_trait]
impl FindingsReader for SecurityHubWriter {
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<Finding>, WriteError> {
        use aws_sdk_securityhub::types::{AwsSecurityFindingFilters, StringFilter, StringFilterComparison};
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_FINDINGS_FILTER_VALUES) {
            let filters = chunk.iter().fold(AwsSecurityFindingFilters::builder(), |b, f| {
                b.id(StringFilter::builder().value(&f.id).comparison(StringFilterComparison::Equals).build())
            });
            let mut pages =
                self.client.get_findings().filters(filters.build()).max_results(100).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| write_error(e, &[]))?;
                for finding in page.findings.unwrap_or_default().into_iter().map(from_asff) {
                    if chunk.contains(&finding.identifier()) {
                        found.push(finding);
                    }
                }
            }
        }
        Ok(found)
    }

    async fn active_findings(
        &self,
        hub: Hub,
        accounts: &[String],
        next_token: Option<String>,
    ) -> Result<FindingsPage, WriteError> {
        match hub {
            Hub::Cspm => self.active_findings_cspm(accounts, next_token).await,
            Hub::V2 => self.active_findings_v2(accounts, next_token).await,
        }
    }
}

impl SecurityHubWriter {
    /// GetFindings: RecordState ACTIVE, sorted by AwsAccountId.
    async fn active_findings_cspm(
        &self,
        accounts: &[String],
        next_token: Option<String>,
    ) -> Result<FindingsPage, WriteError> {
        use aws_sdk_securityhub::types::{
            AwsSecurityFindingFilters, SortCriterion, SortOrder, StringFilter, StringFilterComparison,
        };
        let equals =
            |value: &str| StringFilter::builder().value(value).comparison(StringFilterComparison::Equals).build();
        let filters =
            accounts.iter().fold(AwsSecurityFindingFilters::builder().record_state(equals("ACTIVE")), |b, a| {
                b.aws_account_id(equals(a))
            });
        let page = self
            .client
            .get_findings()
            .filters(filters.build())
            .sort_criteria(SortCriterion::builder().field("AwsAccountId").sort_order(SortOrder::Ascending).build())
            .max_results(MAX_FINDINGS_PER_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| write_error(e, &["InvalidInputException"]))?;
        Ok(FindingsPage {
            findings: page.findings.unwrap_or_default().into_iter().map(from_asff).collect(),
            next_token: page.next_token.filter(|t| !t.is_empty()),
        })
    }

    /// GetFindingsV2: findings whose `status` is not one that ends them (`INACTIVE_V2_STATUSES`)
    /// and, when accounts are given, whose `cloud.account.uid` is one of them; sorted by
    /// `cloud.account.uid`. A finding the decoder cannot use is logged and left out: the sweep
    /// could not write it back either.
    async fn active_findings_v2(
        &self,
        accounts: &[String],
        next_token: Option<String>,
    ) -> Result<FindingsPage, WriteError> {
        use aws_sdk_securityhub::types::{
            AllowedOperators, CompositeFilter, OcsfFindingFilters, OcsfStringField, OcsfStringFilter, SortCriterion,
            SortOrder, StringFilter, StringFilterComparison,
        };
        let filter = |field: OcsfStringField, comparison: StringFilterComparison, value: &str| {
            OcsfStringFilter::builder()
                .field_name(field)
                .filter(StringFilter::builder().value(value).comparison(comparison).build())
                .build()
        };
        let open = INACTIVE_V2_STATUSES
            .iter()
            .fold(CompositeFilter::builder().operator(AllowedOperators::And), |b, status| {
                b.string_filters(filter(OcsfStringField::Status, StringFilterComparison::NotEquals, status))
            });
        let mut filters =
            OcsfFindingFilters::builder().composite_operator(AllowedOperators::And).composite_filters(open.build());
        if !accounts.is_empty() {
            let of_accounts =
                accounts.iter().fold(CompositeFilter::builder().operator(AllowedOperators::Or), |b, a| {
                    b.string_filters(filter(OcsfStringField::CloudAccountUid, StringFilterComparison::Equals, a))
                });
            filters = filters.composite_filters(of_accounts.build());
        }
        let page = self
            .client
            .get_findings_v2()
            .filters(filters.build())
            .sort_criteria(SortCriterion::builder().field("cloud.account.uid").sort_order(SortOrder::Ascending).build())
            .max_results(MAX_FINDINGS_PER_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| write_error(e, &["ValidationException"]))?;
        let mut findings = Vec::new();
        for document in page.findings.unwrap_or_default() {
            let raw = document_to_json(&document).to_string();
            match crate::core::ocsf::decode(&raw) {
                Ok(finding) => findings.push(finding),
                Err(error) => {
                    tracing::warn!(error = %crate::core::error::error_chain(&error), "GetFindingsV2 returned an OCSF finding we cannot read; left out")
                }
            }
        }
        Ok(FindingsPage { findings, next_token: page.next_token.filter(|t| !t.is_empty()) })
    }
}

/// The new hub's `status` values after which a finding no longer needs enrichment: the
/// counterparts of RecordState ARCHIVED (OCSF status_id 4 Resolved, 5 Archived, 6 Deleted).
/// Suppressed findings stay, as CSPM's suppressed findings are still ACTIVE records.
pub const INACTIVE_V2_STATUSES: [&str; 3] = ["Resolved", "Archived", "Deleted"];

/// GetFindingsV2 returns findings as Smithy documents; the decoder reads JSON. The SDK offers no
/// conversion (its serde support is behind an unstable cfg), hence this small walk.
fn document_to_json(document: &aws_smithy_types::Document) -> serde_json::Value {
    use aws_smithy_types::{Document, Number};
    match document {
        Document::Object(map) => map.iter().map(|(k, v)| (k.clone(), document_to_json(v))).collect(),
        Document::Array(items) => items.iter().map(document_to_json).collect(),
        Document::Number(Number::PosInt(n)) => (*n).into(),
        Document::Number(Number::NegInt(n)) => (*n).into(),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Document::String(text) => text.clone().into(),
        Document::Bool(b) => (*b).into(),
        Document::Null => serde_json::Value::Null,
    }
}

/// GetFindings' largest page.
const MAX_FINDINGS_PER_PAGE: i32 = 100;

/// The ASFF subset we read, from the SDK's finding.
fn from_asff(f: aws_sdk_securityhub::types::AwsSecurityFinding) -> Finding {
    Finding {
        id: f.id.unwrap_or_default(),
        product_arn: f.product_arn.unwrap_or_default(),
        aws_account_id: f.aws_account_id.unwrap_or_default(),
        aws_account_name: f.aws_account_name,
        updated_at: f.updated_at,
        first_observed_at: f.first_observed_at,
        last_observed_at: f.last_observed_at,
        created_at: f.created_at,
        product_name: f.product_name,
        title: f.title,
        record_state: f.record_state.map(|r| r.as_str().to_owned()),
        // The sweep's posture counts and enriched-finding events carry it.
        severity: f.severity.map(|s| Severity { label: s.label.map(|l| l.as_str().to_owned()) }),
        note: f.note.map(|n| Note { text: n.text.unwrap_or_default(), updated_by: n.updated_by.unwrap_or_default() }),
        user_defined_fields: f.user_defined_fields.unwrap_or_default().into_iter().collect(),
        resources: Vec::new(),
        detection: None,
        ocsf: None,
    }
}

#[async_trait]
impl FindingsWriterV2 for SecurityHubWriter {
    /// Names the findings by `MetadataUids` when every one has a metadata.uid, else by
    /// `FindingIdentifiers`: the API refuses both lists in one request, and the plan never
    /// mixes them.
    async fn batch_update_v2(
        &self,
        ids: &[OcsfFindingId],
        comment: &str,
    ) -> Result<Vec<Unprocessed<OcsfFindingId>>, WriteError> {
        use aws_sdk_securityhub::types::OcsfFindingIdentifier;
        let mut metadata_uids = Vec::new();
        let mut identifiers = Vec::new();
        for id in ids {
            match id {
                OcsfFindingId::MetadataUid(uid) => metadata_uids.push(uid.clone()),
                OcsfFindingId::Triple { cloud_account_uid, finding_info_uid, metadata_product_uid } => identifiers
                    .push(
                        OcsfFindingIdentifier::builder()
                            .cloud_account_uid(cloud_account_uid)
                            .finding_info_uid(finding_info_uid)
                            .metadata_product_uid(metadata_product_uid)
                            .build(),
                    ),
            }
        }
        let mut request = self.client.batch_update_findings_v2().comment(comment);
        if !metadata_uids.is_empty() {
            request = request.set_metadata_uids(Some(metadata_uids));
        }
        let by_triple = !identifiers.is_empty();
        if by_triple {
            request = request.set_finding_identifiers(Some(identifiers));
        }
        match request.send().await {
            Ok(output) => Ok(output
                .unprocessed_findings
                .unwrap_or_default()
                .into_iter()
                .map(|u| {
                    // Named back the way the request named it, so the updater can match it.
                    let triple = u.finding_identifier.map(|f| OcsfFindingId::Triple {
                        cloud_account_uid: f.cloud_account_uid.unwrap_or_default(),
                        finding_info_uid: f.finding_info_uid.unwrap_or_default(),
                        metadata_product_uid: f.metadata_product_uid.unwrap_or_default(),
                    });
                    let by_uid = u.metadata_uid.map(OcsfFindingId::MetadataUid);
                    let id = if by_triple { triple.or(by_uid) } else { by_uid.or(triple) }
                        .unwrap_or_else(|| OcsfFindingId::MetadataUid(String::new()));
                    Unprocessed {
                        id,
                        code: u.error_code.map(|c| c.as_str().to_owned()).unwrap_or_default(),
                        message: u.error_message.unwrap_or_default(),
                    }
                })
                .collect()),
            // ValidationException is the V2 API's malformed request; AccessDenied stays
            // retryable, as for V1.
            Err(error) => Err(write_error(error, &["ValidationException"])),
        }
    }
}

/// Maps an SDK error to the port's error through the one classifier.
fn write_error<E>(error: E, refused: &[&str]) -> WriteError
where
    E: ProvideErrorMetadata + Into<aws_sdk_securityhub::Error>,
{
    let class = classify(&error, refused);
    let code = error.code().unwrap_or_default().to_owned();
    let source: BoxError = Box::new(error.into());
    match class {
        ErrorClass::Throttled => WriteError::Throttled { source },
        ErrorClass::Refused => WriteError::Rejected { code, source },
        ErrorClass::Transient => WriteError::Transient { source },
    }
}

#[cfg(test)]
mod tests {
    //! Edge cases against mocked SDK answers (the emulator covers the wire end to end in
    //! `tests/local_stack`): throttling then success through the updater, UnprocessedFindings,
    //! a rejected request, GetFindings over several pages.

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use aws_sdk_securityhub::Client;
    use aws_sdk_securityhub::operation::batch_update_findings::BatchUpdateFindingsOutput;
    use aws_sdk_securityhub::operation::get_findings::GetFindingsOutput;
    use aws_sdk_securityhub::types::{AwsSecurityFinding, BatchUpdateFindingsUnprocessedFinding};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use tokio::time::Instant;

    use super::*;
    use crate::core::outcome::FindingOutcome;
    use crate::core::plan::UpdateRequest;
    use crate::core::rate::Rate;
    use crate::service::updater::Updater;

    fn id(name: &str) -> FindingId {
        FindingId { id: name.into(), product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into() }
    }

    fn payload() -> EnrichmentPayload {
        EnrichmentPayload {
            note: Some("Account a".into()),
            fields: BTreeMap::from([("AccountName".into(), "a".into())]),
        }
    }

    fn identifier(f: &FindingId) -> AwsSecurityFindingIdentifier {
        AwsSecurityFindingIdentifier::builder().id(&f.id).product_arn(&f.product_arn).build()
    }

    fn ok_output() -> BatchUpdateFindingsOutput {
        BatchUpdateFindingsOutput::builder()
            .set_processed_findings(Some(vec![]))
            .set_unprocessed_findings(Some(vec![]))
            .build()
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_retried_by_the_updater_and_then_lands() {
        let rule = mock!(Client::batch_update_findings)
            .sequence()
            .http_status(429, Some(r#"{"__type":"TooManyRequestsException","Message":"Rate exceeded"}"#.into()))
            .output(ok_output)
            .build();
        // Retries off, as `wiring` builds the client: the updater owns them.
        let client = mock_client!(aws_sdk_securityhub, RuleMode::Sequential, [&rule], |c| c
            .retry_config(aws_sdk_securityhub::config::retry::RetryConfig::disabled()));
        let updater = Updater::new(Arc::new(SecurityHubWriter::new(client)), Rate { per_second: 100.0, burst: 10 });
        let request = UpdateRequest { payload: Arc::new(payload()), findings: vec![(7, id("a"))] };
        let (outcomes, stats) = updater.run(&[request], Instant::now() + Duration::from_secs(30)).await;
        assert_eq!(outcomes, vec![(7, FindingOutcome::Enriched { partial: false })]);
        assert_eq!((stats.calls, stats.throttled), (2, 1));
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn unprocessed_findings_come_back_by_identifier_and_bad_requests_are_rejected() {
        let partly = mock!(Client::batch_update_findings).then_output(|| {
            BatchUpdateFindingsOutput::builder()
                .set_processed_findings(Some(vec![]))
                .unprocessed_findings(
                    BatchUpdateFindingsUnprocessedFinding::builder()
                        .finding_identifier(identifier(&id("b")))
                        .error_code("ConcurrentUpdateError")
                        .error_message("busy")
                        .build(),
                )
                .build()
        });
        let writer = SecurityHubWriter::new(mock_client!(aws_sdk_securityhub, [&partly]));
        let unprocessed = writer.batch_update(&[id("a"), id("b")], &payload()).await.unwrap();
        assert_eq!(unprocessed.len(), 1);
        assert_eq!(unprocessed[0].id, id("b"));
        assert!(unprocessed[0].is_transient());

        let invalid = mock!(Client::batch_update_findings).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(r#"{"__type":"InvalidInputException","Message":"bad"}"#),
            )
        });
        let writer = SecurityHubWriter::new(mock_client!(aws_sdk_securityhub, [&invalid]));
        let error = writer.batch_update(&[id("a")], &payload()).await.unwrap_err();
        assert!(matches!(error, WriteError::Rejected { ref code, .. } if code == "InvalidInputException"), "{error:?}");
    }

    #[tokio::test]
    async fn v2_names_findings_one_way_per_request_and_maps_unprocessed_back() {
        use aws_sdk_securityhub::operation::batch_update_findings_v2::BatchUpdateFindingsV2Output;
        use aws_sdk_securityhub::types::{
            BatchUpdateFindingsV2UnprocessedFinding, BatchUpdateFindingsV2UnprocessedFindingErrorCode,
        };
        let by_uid = mock!(Client::batch_update_findings_v2)
            .match_requests(|r| {
                r.metadata_uids() == ["m1", "m2"] && r.finding_identifiers().is_empty() && r.comment() == Some("c")
            })
            .then_output(|| {
                BatchUpdateFindingsV2Output::builder()
                    .set_processed_findings(Some(vec![]))
                    .unprocessed_findings(
                        BatchUpdateFindingsV2UnprocessedFinding::builder()
                            .metadata_uid("m2")
                            .error_code(BatchUpdateFindingsV2UnprocessedFindingErrorCode::ConflictException)
                            .error_message("busy")
                            .build(),
                    )
                    .build()
            });
        let writer = SecurityHubWriter::new(mock_client!(aws_sdk_securityhub, [&by_uid]));
        let ids = [OcsfFindingId::MetadataUid("m1".into()), OcsfFindingId::MetadataUid("m2".into())];
        let unprocessed = writer.batch_update_v2(&ids, "c").await.unwrap();
        assert_eq!(unprocessed.len(), 1);
        assert_eq!(unprocessed[0].id, OcsfFindingId::MetadataUid("m2".into()));
        assert!(unprocessed[0].is_transient(), "ConflictException is retried");

        let invalid = mock!(Client::batch_update_findings_v2).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(r#"{"__type":"ValidationException","Message":"bad"}"#),
            )
        });
        let writer = SecurityHubWriter::new(mock_client!(aws_sdk_securityhub, [&invalid]));
        let triple = OcsfFindingId::Triple {
            cloud_account_uid: "111122223333".into(),
            finding_info_uid: "f".into(),
            metadata_product_uid: "p".into(),
        };
        let error = writer.batch_update_v2(&[triple], "c").await.unwrap_err();
        assert!(matches!(error, WriteError::Rejected { ref code, .. } if code == "ValidationException"), "{error:?}");
    }

    #[tokio::test]
    async fn current_findings_are_read_over_every_page() {
        let finding = |name: &str| {
            AwsSecurityFinding::builder()
                .id(name)
                .product_arn(id(name).product_arn)
                .aws_account_id("111122223333")
                .build()
        };
        let first = mock!(Client::get_findings)
            .match_requests(|r| r.next_token().is_none())
            .then_output(move || GetFindingsOutput::builder().findings(finding("a")).next_token("p2").build());
        let second = mock!(Client::get_findings)
            .match_requests(|r| r.next_token() == Some("p2"))
            .then_output(move || GetFindingsOutput::builder().findings(finding("b")).findings(finding("z")).build());
        let writer = SecurityHubWriter::new(mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, [&first, &second]));
        let found = writer.current(&[id("a"), id("b")]).await.unwrap();
        let ids: Vec<FindingId> = found.iter().map(Finding::identifier).collect();
        assert_eq!(ids, vec![id("a"), id("b")], "both pages read; a finding not asked for is dropped");
    }
}
