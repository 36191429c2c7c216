//! The `Updater`: sends a batch's BatchUpdateFindings requests within this environment's share
//! of the quota and the invocation's deadline, retrying throttles and transient
//! UnprocessedFindings with backoff. One outcome per finding comes back, keyed as the request
//! keyed it.

use std::collections::HashMap;
use std::ops::AddAssign;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::finding::FindingId;
use crate::core::outcome::{FailReason, FindingOutcome, SkipReason};
use crate::core::plan::UpdateRequest;
use crate::core::rate::Rate;
use crate::limits::backoff;
use crate::ports::findings::{FindingsWriter, Unprocessed, WriteError};
use crate::service::quota_share::QuotaShare;

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

impl AddAssign for UpdateStats {
    /// Adds the figures of later calls; the quota share is the later one's when it has one.
    fn add_assign(&mut self, later: UpdateStats) {
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
    pub fn new(writer: Arc<dyn FindingsWriter>, rate: Rate) -> Self {
        Self::sharing(writer, QuotaShare::fixed(rate))
    }

    /// An updater paced at its share of a pool (see `quota_share`).
    pub fn sharing(writer: Arc<dyn FindingsWriter>, quota: QuotaShare) -> Self {
        Updater { writer, quota, max_attempts: 8, concurrency: 4, base_backoff: Duration::from_millis(100) }
    }

    pub fn with_backoff(mut self, base: Duration, max_attempts: u32) -> Self {
        self.base_backoff = base;
        self.max_attempts = max_attempts;
        self
    }

    /// Sends every request; returns one outcome per finding, keyed as the request keyed it.
    pub async fn run(
        &self,
        requests: &[UpdateRequest],
        deadline: Instant,
    ) -> (Vec<(usize, FindingOutcome)>, UpdateStats) {
        if requests.is_empty() {
            return (Vec::new(), UpdateStats::default());
        }
        let results: Vec<(Vec<(usize, FindingOutcome)>, UpdateStats)> = self
            .quota
            .while_active(
                futures::stream::iter(requests)
                    .map(|request| self.send(request, deadline))
                    .buffer_unordered(self.concurrency)
                    .collect(),
            )
            .await;
        let mut outcomes = Vec::with_capacity(requests.iter().map(|r| r.findings.len()).sum());
        let mut total = UpdateStats::default();
        for (o, stats) in results {
            outcomes.extend(o);
            total += stats;
        }
        total.quota_holders = self.quota.holders();
        (outcomes, total)
    }

    async fn send(&self, request: &UpdateRequest, deadline: Instant) -> (Vec<(usize, FindingOutcome)>, UpdateStats) {
        let mut stats = UpdateStats::default();
        let mut outcomes: Vec<Option<FindingOutcome>> = vec![None; request.findings.len()];
        let mut pending: Vec<usize> = (0..request.findings.len()).collect();
        let enriched = FindingOutcome::Enriched { partial: request.payload.is_partial() };
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt == self.max_attempts {
                mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Transient));
                break;
            }
            if attempt > 0 {
                let pause = backoff(self.base_backoff, attempt);
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
            let ids: Vec<FindingId> = pending.iter().map(|&i| request.findings[i].1.clone()).collect();
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
                        match by_id.get(&request.findings[i].1) {
                            None => outcomes[i] = Some(enriched.clone()),
                            Some(u) if u.is_transient() => retry.push(i),
                            Some(u) => {
                                tracing::warn!(finding_id = %u.id.id, code = %u.code, message = %u.message, "Security Hub did not update a finding");
                                outcomes[i] = Some(FindingOutcome::Skipped(SkipReason::Rejected(u.code.clone())));
                            }
                        }
                    }
                    pending = retry;
                }
                Ok(Err(WriteError::Rejected { code, source })) => {
                    tracing::error!(code = %code, error = %error_chain(&*source), findings = pending.len(), "BatchUpdateFindings rejected a request");
                    mark(&mut outcomes, &pending, FindingOutcome::Skipped(SkipReason::Rejected(code)));
                    break;
                }
                Ok(Err(WriteError::Throttled { .. })) => stats.throttled += 1,
                Ok(Err(WriteError::Transient { source })) => {
                    stats.transient_errors += 1;
                    tracing::warn!(error = %error_chain(&*source), "BatchUpdateFindings failed; retrying");
                }
            }
        }
        let outcomes = request
            .members()
            .zip(outcomes)
            .map(|(member, o)| (member, o.unwrap_or(FindingOutcome::Failed(FailReason::Transient))))
            .collect();
        (outcomes, stats)
    }
}

fn mark(outcomes: &mut [Option<FindingOutcome>], indices: &[usize], outcome: FindingOutcome) {
    for &i in indices {
        outcomes[i] = Some(outcome.clone());
    }
}
