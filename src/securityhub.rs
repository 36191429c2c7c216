//! Writing enrichment back: one BatchUpdateFindings call per request (the adapter), and the
//! `Updater` that sends a batch's requests within the rate limit and the invocation's
//! deadline, retrying throttles and transient UnprocessedFindings with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_securityhub::error::ProvideErrorMetadata;
use aws_sdk_securityhub::types::{AwsSecurityFindingIdentifier, NoteUpdate};
use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::enrich::{EnrichmentPayload, UPDATED_BY};
use crate::finding::FindingId;
use crate::outcome::{FailReason, FindingOutcome, SkipReason};
use crate::quota::QuotaShare;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A finding Security Hub did not update, as UnprocessedFindings reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed {
    pub id: FindingId,
    pub code: String,
    pub message: String,
}

/// UnprocessedFindings codes worth another try; the others never succeed on retry.
pub fn is_transient_code(code: &str) -> bool {
    matches!(code, "ConcurrentUpdateError" | "InternalFailure")
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
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<crate::finding::Finding>, WriteError>;
}

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
            Err(error) => {
                let code = error.code().unwrap_or_default().to_owned();
                let source: BoxError = Box::new(aws_sdk_securityhub::Error::from(error));
                Err(match code.as_str() {
                    "TooManyRequestsException" | "ThrottlingException" | "LimitExceededException" => {
                        WriteError::Throttled { source }
                    }
                    // Only a malformed request is final. AccessDenied stays retryable so that a
                    // broken permission shows up as failed records, not as silently dropped data.
                    "InvalidInputException" => WriteError::Rejected { code, source },
                    _ => WriteError::Transient { source },
                })
            }
        }
    }
}

#[async_trait]
impl FindingsReader for SecurityHubWriter {
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<crate::finding::Finding>, WriteError> {
        use aws_sdk_securityhub::types::{AwsSecurityFindingFilters, StringFilter, StringFilterComparison};
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_FINDINGS_FILTER_VALUES) {
            let filters = chunk.iter().fold(AwsSecurityFindingFilters::builder(), |b, f| {
                b.id(StringFilter::builder().value(&f.id).comparison(StringFilterComparison::Equals).build())
            });
            let mut pages =
                self.client.get_findings().filters(filters.build()).max_results(100).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    let throttled = e.code() == Some("TooManyRequestsException");
                    let source: BoxError = Box::new(aws_sdk_securityhub::Error::from(e));
                    if throttled { WriteError::Throttled { source } } else { WriteError::Transient { source } }
                })?;
                for f in page.findings.unwrap_or_default() {
                    let finding = crate::finding::Finding {
                        id: f.id.unwrap_or_default(),
                        product_arn: f.product_arn.unwrap_or_default(),
                        aws_account_id: f.aws_account_id.unwrap_or_default(),
                        aws_account_name: f.aws_account_name,
                        updated_at: f.updated_at,
                        first_observed_at: f.first_observed_at,
                        created_at: f.created_at,
                        product_name: f.product_name,
                        record_state: f.record_state.map(|r| r.as_str().to_owned()),
                        severity: None,
                        note: f.note.map(|n| crate::finding::Note {
                            text: n.text.unwrap_or_default(),
                            updated_by: n.updated_by.unwrap_or_default(),
                        }),
                        user_defined_fields: f.user_defined_fields.unwrap_or_default().into_iter().collect(),
                        resources: Vec::new(),
                    };
                    if chunk.contains(&finding.identifier()) {
                        found.push(finding);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// One request as the updater takes it: identifiers and the payload they share.
#[derive(Debug, Clone)]
pub struct PlannedUpdate {
    pub ids: Vec<FindingId>,
    pub payload: Arc<EnrichmentPayload>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdateStats {
    /// BatchUpdateFindings calls made, retries included.
    pub calls: usize,
    /// Findings carried by each successful call.
    pub findings_per_call: Vec<usize>,
    pub throttled: usize,
    pub transient_errors: usize,
    pub retried_findings: usize,
    /// Environments sharing the quota as of the last claim; `None` on a fixed or fallback share.
    pub quota_holders: Option<u32>,
}

impl UpdateStats {
    /// Adds the figures of later calls; the quota share is the later one's when it has one.
    pub fn absorb(&mut self, later: UpdateStats) {
        self.calls += later.calls;
        self.findings_per_call.extend(later.findings_per_call);
        self.throttled += later.throttled;
        self.transient_errors += later.transient_errors;
        self.retried_findings += later.retried_findings;
        self.quota_holders = later.quota_holders.or(self.quota_holders);
    }
}

pub struct Updater {
    writer: Arc<dyn FindingsWriter>,
    quota: QuotaShare,
    max_attempts: u32,
    concurrency: usize,
    base_backoff: Duration,
}

impl Updater {
    /// An updater paced at a fixed rate.
    pub fn new(writer: Arc<dyn FindingsWriter>, rate: crate::config::Rate) -> Self {
        Self::sharing(writer, QuotaShare::fixed(rate))
    }

    /// An updater paced at its share of a pool (see `quota`).
    pub fn sharing(writer: Arc<dyn FindingsWriter>, quota: QuotaShare) -> Self {
        Updater { writer, quota, max_attempts: 8, concurrency: 4, base_backoff: Duration::from_millis(100) }
    }

    pub fn with_backoff(mut self, base: Duration, max_attempts: u32) -> Self {
        self.base_backoff = base;
        self.max_attempts = max_attempts;
        self
    }

    /// Sends every request; returns one outcome per identifier of each request, in order.
    pub async fn run(&self, requests: &[PlannedUpdate], deadline: Instant) -> (Vec<Vec<FindingOutcome>>, UpdateStats) {
        if requests.is_empty() {
            return (Vec::new(), UpdateStats::default());
        }
        let results: Vec<(usize, Vec<FindingOutcome>, UpdateStats)> = self
            .quota
            .while_active(
                futures::stream::iter(requests.iter().enumerate())
                    .map(|(i, request)| async move {
                        let (outcomes, stats) = self.send(request, deadline).await;
                        (i, outcomes, stats)
                    })
                    .buffer_unordered(self.concurrency)
                    .collect(),
            )
            .await;
        let mut outcomes = vec![Vec::new(); requests.len()];
        let mut total = UpdateStats::default();
        for (i, o, stats) in results {
            outcomes[i] = o;
            total.absorb(stats);
        }
        total.quota_holders = self.quota.holders();
        (outcomes, total)
    }

    async fn send(&self, request: &PlannedUpdate, deadline: Instant) -> (Vec<FindingOutcome>, UpdateStats) {
        let mut stats = UpdateStats::default();
        let mut outcomes: Vec<Option<FindingOutcome>> = vec![None; request.ids.len()];
        let mut pending: Vec<usize> = (0..request.ids.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt == self.max_attempts {
                mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Transient));
                break;
            }
            if attempt > 0 {
                let pause = crate::limits::backoff(self.base_backoff, attempt);
                if Instant::now() + pause >= deadline {
                    mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Deadline));
                    break;
                }
                tokio::time::sleep(pause).await;
                stats.retried_findings += pending.len();
            }
            attempt += 1;
            if self.quota.acquire(deadline).await.is_err() {
                mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Deadline));
                break;
            }
            let ids: Vec<FindingId> = pending.iter().map(|&i| request.ids[i].clone()).collect();
            stats.calls += 1;
            let call = tokio::time::timeout_at(deadline, self.writer.batch_update(&ids, &request.payload)).await;
            match call {
                Err(_elapsed) => {
                    // The call may or may not have landed; a retry rewrites the same payload.
                    mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Deadline));
                    break;
                }
                Ok(Ok(unprocessed)) => {
                    stats.findings_per_call.push(ids.len());
                    let by_id: HashMap<&FindingId, &Unprocessed> = unprocessed.iter().map(|u| (&u.id, u)).collect();
                    let mut retry = Vec::new();
                    for &i in &pending {
                        match by_id.get(&request.ids[i]) {
                            None => outcomes[i] = Some(FindingOutcome::Enriched { partial: false }),
                            Some(u) if is_transient_code(&u.code) => retry.push(i),
                            Some(u) => {
                                tracing::warn!(finding_id = %u.id.id, code = %u.code, message = %u.message, "Security Hub did not update a finding");
                                outcomes[i] = Some(FindingOutcome::Skipped(SkipReason::Rejected(u.code.clone())));
                            }
                        }
                    }
                    pending = retry;
                }
                Ok(Err(WriteError::Rejected { code, source })) => {
                    tracing::error!(code = %code, error = %crate::metadata::directory_error_chain(&*source), findings = pending.len(), "BatchUpdateFindings rejected a request");
                    mark(&mut outcomes, &pending, FindingOutcome::Skipped(SkipReason::Rejected(code)));
                    break;
                }
                Ok(Err(WriteError::Throttled { .. })) => stats.throttled += 1,
                Ok(Err(WriteError::Transient { source })) => {
                    stats.transient_errors += 1;
                    tracing::warn!(error = %crate::metadata::directory_error_chain(&*source), "BatchUpdateFindings failed; retrying");
                }
            }
        }
        let outcomes =
            outcomes.into_iter().map(|o| o.unwrap_or(FindingOutcome::Failed(FailReason::Transient))).collect();
        (outcomes, stats)
    }
}

fn mark(outcomes: &mut [Option<FindingOutcome>], indices: &[usize], outcome: FindingOutcome) {
    for &i in indices {
        outcomes[i] = Some(outcome.clone());
    }
}

/// A scripted reply for the in-memory hub's next call.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    Throttle,
    Transient,
    /// Reports these findings (all of the call's findings when empty) unprocessed with this code.
    Unprocessed {
        code: String,
        ids: Vec<FindingId>,
    },
    Reject {
        code: String,
    },
}

/// One BatchUpdateFindings call as the in-memory hub answered it.
#[derive(Debug, Clone, Copy)]
pub struct HubCall {
    pub at: Instant,
    /// Findings updated (0 for a failed call).
    pub applied: usize,
    pub throttled: bool,
}

/// An in-memory Security Hub for handler tests and the load-test simulator: applies updates
/// to a map, answers FindingNotFound for unknown findings once any are registered, follows a
/// script of replies, and can enforce a quota.
#[derive(Default)]
pub struct InMemoryHub {
    pub findings: std::sync::Mutex<HashMap<FindingId, EnrichmentPayload>>,
    known: std::sync::Mutex<Option<std::collections::HashSet<FindingId>>>,
    script: std::sync::Mutex<std::collections::VecDeque<ScriptedReply>>,
    quota: Option<governor::DefaultDirectRateLimiter>,
    /// Every call as it was answered, in order (failed and throttled ones included).
    pub call_log: std::sync::Mutex<Vec<HubCall>>,
    /// When each finding was first updated.
    pub first_updated: std::sync::Mutex<HashMap<FindingId, Instant>>,
    /// Time each call takes, as the network and the service would.
    pub latency: Duration,
}

impl InMemoryHub {
    /// A hub that throttles past this rate, as Security Hub does per account and region.
    pub fn with_quota(rate: crate::config::Rate) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.per_second);
        let burst = std::num::NonZeroU32::new(rate.burst).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::with_period(period).expect("positive rate").allow_burst(burst);
        InMemoryHub { quota: Some(governor::RateLimiter::direct(quota)), ..Default::default() }
    }

    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn register(&self, ids: impl IntoIterator<Item = FindingId>) {
        self.known.lock().unwrap().get_or_insert_with(Default::default).extend(ids);
    }

    pub fn script(&self, replies: impl IntoIterator<Item = ScriptedReply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn payload(&self, id: &FindingId) -> Option<EnrichmentPayload> {
        self.findings.lock().unwrap().get(id).cloned()
    }

    pub fn call_count(&self) -> usize {
        self.call_log.lock().unwrap().len()
    }
}

#[async_trait]
impl FindingsWriter for InMemoryHub {
    async fn batch_update(
        &self,
        ids: &[FindingId],
        payload: &EnrichmentPayload,
    ) -> Result<Vec<Unprocessed>, WriteError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let answer = self.apply(ids, payload);
        let now = Instant::now();
        let (applied, throttled) = match &answer {
            Ok(unprocessed) => {
                let mut first = self.first_updated.lock().unwrap();
                for id in ids.iter().filter(|id| !unprocessed.iter().any(|u| &u.id == *id)) {
                    first.entry(id.clone()).or_insert(now);
                }
                (ids.len() - unprocessed.len(), false)
            }
            Err(error) => (0, matches!(error, WriteError::Throttled { .. })),
        };
        self.call_log.lock().unwrap().push(HubCall { at: now, applied, throttled });
        answer
    }
}

impl InMemoryHub {
    fn apply(&self, ids: &[FindingId], payload: &EnrichmentPayload) -> Result<Vec<Unprocessed>, WriteError> {
        if ids.is_empty() || ids.len() > crate::plan::MAX_FINDINGS_PER_UPDATE {
            return Err(WriteError::Rejected {
                code: "InvalidInputException".into(),
                source: "1 to 100 identifiers".into(),
            });
        }
        if self.quota.as_ref().is_some_and(|q| q.check().is_err()) {
            return Err(WriteError::Throttled { source: "TooManyRequestsException (in-memory quota)".into() });
        }
        let reply = self.script.lock().unwrap().pop_front();
        let mut unprocessed = Vec::new();
        match reply {
            Some(ScriptedReply::Throttle) => {
                return Err(WriteError::Throttled { source: "TooManyRequestsException (scripted)".into() });
            }
            Some(ScriptedReply::Transient) => {
                return Err(WriteError::Transient { source: "InternalException (scripted)".into() });
            }
            Some(ScriptedReply::Reject { code }) => {
                return Err(WriteError::Rejected { code, source: "scripted".into() });
            }
            Some(ScriptedReply::Unprocessed { code, ids: chosen }) => {
                for id in ids.iter().filter(|id| chosen.is_empty() || chosen.contains(id)) {
                    unprocessed.push(Unprocessed { id: id.clone(), code: code.clone(), message: "scripted".into() });
                }
            }
            None => {}
        }
        let known = self.known.lock().unwrap();
        let mut findings = self.findings.lock().unwrap();
        for id in ids {
            if unprocessed.iter().any(|u| &u.id == id) {
                continue;
            }
            if known.as_ref().is_some_and(|k| !k.contains(id)) {
                unprocessed.push(Unprocessed {
                    id: id.clone(),
                    code: "FindingNotFound".into(),
                    message: "Finding Not Found".into(),
                });
                continue;
            }
            findings.insert(id.clone(), payload.clone());
        }
        Ok(unprocessed)
    }
}
