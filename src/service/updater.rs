//! The `Updater`: sends a batch's BatchUpdateFindings (and BatchUpdateFindingsV2) requests within this environment's share
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
use crate::core::outcome::{FailReason, FindingOutcome, SkipReason};
use crate::core::plan::{UpdateRequest, UpdateRequestV2};
use crate::core::rate::Rate;
use crate::limits::backoff;
use crate::ports::findings::{FindingsWriter, FindingsWriterV2, Unprocessed, WriteError};
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
    /// Milliseconds the calls spent waiting for permits of the quota, summed, once the bucket
    /// had filled after an empty start: the quota is saturated when calls queue for it (what
    /// the pending-writes store watches).
    pub quota_wait_ms: u64,
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
        self.quota_wait_ms += later.quota_wait_ms;
    }
}

pub struct Updater {
    writer: Arc<dyn FindingsWriter>,
    /// BatchUpdateFindingsV2 for OCSF findings. It shares the CSPM quota: both operations are
    /// the one IAM action `securityhub:BatchUpdateFindings`, and V2's own rate is unpublished,
    /// so sharing is the safe reading either way.
    writer_v2: Option<Arc<dyn FindingsWriterV2>>,
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
        Updater {
            writer,
            writer_v2: None,
            quota,
            max_attempts: 8,
            concurrency: 4,
            base_backoff: Duration::from_millis(100),
        }
    }

    /// Writes OCSF findings with this BatchUpdateFindingsV2 writer.
    pub fn with_v2_writer(mut self, writer: Arc<dyn FindingsWriterV2>) -> Self {
        self.writer_v2 = Some(writer);
        self
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
        let writer = &self.writer;
        let payload = &request.payload;
        self.send_with(&request.findings, payload.is_partial(), deadline, |ids| async move {
            writer.batch_update(&ids, payload).await
        })
        .await
    }

    /// Sends every BatchUpdateFindingsV2 request within the same quota and deadline, with the
    /// same retries. Without a V2 writer (a wiring bug) the findings fail for retry, not lost.
    pub async fn run_v2(
        &self,
        requests: &[UpdateRequestV2],
        deadline: Instant,
    ) -> (Vec<(usize, FindingOutcome)>, UpdateStats) {
        if requests.is_empty() {
            return (Vec::new(), UpdateStats::default());
        }
        let Some(writer) = &self.writer_v2 else {
            tracing::error!(
                findings = requests.iter().map(|r| r.findings.len()).sum::<usize>(),
                "no BatchUpdateFindingsV2 writer is wired; failing OCSF findings for retry"
            );
            let outcomes =
                requests.iter().flat_map(|r| r.members()).map(|m| (m, FindingOutcome::Failed(FailReason::Transient)));
            return (outcomes.collect(), UpdateStats::default());
        };
        let results: Vec<(Vec<(usize, FindingOutcome)>, UpdateStats)> = self
            .quota
            .while_active(
                futures::stream::iter(requests)
                    .map(|request| {
                        let comment = &request.comment;
                        self.send_with(&request.findings, request.partial, deadline, move |ids| async move {
                            writer.batch_update_v2(&ids, comment).await
                        })
                    })
                    .buffer_unordered(self.concurrency)
                    .collect(),
            )
            .await;
        let mut outcomes = Vec::new();
        let mut total = UpdateStats::default();
        for (o, stats) in results {
            outcomes.extend(o);
            total += stats;
        }
        total.quota_holders = self.quota.holders();
        (outcomes, total)
    }

    /// The one pacing and retry loop of both hubs: `call` sends the still pending identifiers
    /// and answers with the ones the hub did not process.
    async fn send_with<I, F, Fut>(
        &self,
        findings: &[(usize, I)],
        partial: bool,
        deadline: Instant,
        call: F,
    ) -> (Vec<(usize, FindingOutcome)>, UpdateStats)
    where
        I: Clone + Eq + std::hash::Hash + std::fmt::Debug,
        F: Fn(Vec<I>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Unprocessed<I>>, WriteError>>,
    {
        let mut stats = UpdateStats::default();
        let mut outcomes: Vec<Option<FindingOutcome>> = vec![None; findings.len()];
        let mut pending: Vec<usize> = (0..findings.len()).collect();
        let enriched = FindingOutcome::Enriched { partial };
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
            match self.quota.acquire(deadline).await {
                Ok(waited) => stats.quota_wait_ms += waited.as_millis() as u64,
                Err(_) => {
                    mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Deadline));
                    break;
                }
            }
            let ids: Vec<I> = pending.iter().map(|&i| findings[i].1.clone()).collect();
            let sent = ids.len();
            stats.calls += 1;
            let result = tokio::time::timeout_at(deadline, call(ids)).await;
            match result {
                Err(_elapsed) => {
                    // The call may or may not have landed; a retry rewrites the same payload.
                    mark(&mut outcomes, &pending, FindingOutcome::Failed(FailReason::Deadline));
                    break;
                }
                Ok(Ok(unprocessed)) => {
                    stats.findings_per_call.push(sent);
                    let by_id: HashMap<&I, &Unprocessed<I>> = unprocessed.iter().map(|u| (&u.id, u)).collect();
                    let mut retry = Vec::new();
                    for &i in &pending {
                        match by_id.get(&findings[i].1) {
                            None => outcomes[i] = Some(enriched.clone()),
                            Some(u) if u.is_transient() => retry.push(i),
                            Some(u) => {
                                tracing::warn!(finding_id = ?u.id, code = %u.code, message = %u.message, "Security Hub did not update a finding");
                                outcomes[i] = Some(FindingOutcome::Skipped(SkipReason::Rejected(u.code.clone())));
                            }
                        }
                    }
                    pending = retry;
                }
                Ok(Err(WriteError::Rejected { code, source })) => {
                    tracing::error!(code = %code, error = %error_chain(&*source), findings = pending.len(), "Security Hub rejected an update request");
                    mark(&mut outcomes, &pending, FindingOutcome::Skipped(SkipReason::Rejected(code)));
                    break;
                }
                Ok(Err(WriteError::Throttled { .. })) => stats.throttled += 1,
                Ok(Err(WriteError::Transient { source })) => {
                    stats.transient_errors += 1;
                    tracing::warn!(error = %error_chain(&*source), "Security Hub update failed; retrying");
                }
            }
        }
        let outcomes = findings
            .iter()
            .map(|(member, _)| *member)
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
