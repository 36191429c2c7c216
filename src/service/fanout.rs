//! The enricher's side of investigations: select findings (`core::select::plan_jobs`) and queue
//! one job per actor and window in the job table. Never waits on Detective.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::event::Candidate;
use crate::core::finding::FindingId;
use crate::core::investigation::Enqueued;
use crate::core::select::{Asks, Criteria, plan_jobs};
use crate::core::time::now_epoch_seconds;
use crate::ports::jobs::JobStore;

pub struct Fanout {
    pub jobs: Arc<dyn JobStore>,
    pub criteria: Criteria,
    pub lookback_hours: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FanoutStats {
    pub findings_selected: usize,
    /// Of the selected findings, those a person asked for (custom action, `investigate=true`).
    pub explicit_requests: usize,
    pub entities_unresolved: usize,
    pub jobs_created: usize,
    pub jobs_joined: usize,
    /// Findings that joined a job another finding of the batch asked for (same actor,
    /// overlapping window).
    pub findings_joined: usize,
    pub findings_overflow: usize,
    pub enqueue_failures: usize,
}

impl Fanout {
    /// Queues jobs for the chosen candidates. Returns the stats and the candidates whose job
    /// could not be written: their records must be retried so no investigation is lost.
    pub async fn queue(
        &self,
        candidates: &[Candidate],
        eligible: &[usize],
        asks: &HashMap<FindingId, Asks>,
        deadline: Instant,
    ) -> (FanoutStats, BTreeSet<usize>) {
        let now_millis = now_epoch_seconds() * 1000;
        let selection = plan_jobs(candidates, eligible, asks, &self.criteria, self.lookback_hours, now_millis);
        let mut stats = FanoutStats {
            findings_selected: selection.findings_selected,
            explicit_requests: selection.explicit,
            entities_unresolved: selection.unresolved.len(),
            findings_joined: selection.findings_joined,
            ..FanoutStats::default()
        };
        for (i, reason) in &selection.unresolved {
            tracing::info!(finding_id = %candidates[*i].finding.id, ?reason, "IAM entity not investigated");
        }
        let requests = selection.jobs;

        let now = now_millis / 1000;
        let results: Vec<_> = futures::stream::iter(requests)
            .map(|(request, members)| async move {
                let result = match tokio::time::timeout_at(deadline, self.jobs.enqueue(&request, now)).await {
                    Ok(result) => result.map_err(|e| error_chain(&e)),
                    Err(_) => Err("deadline reached".to_owned()),
                };
                (request, members, result)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut failed = BTreeSet::new();
        for (request, members, result) in results {
            match result {
                Ok(Enqueued::Created) => stats.jobs_created += 1,
                Ok(Enqueued::Joined) => stats.jobs_joined += 1,
                Ok(Enqueued::Overflow(n)) => stats.findings_overflow += n,
                Err(error) => {
                    stats.enqueue_failures += 1;
                    tracing::warn!(job_id = %request.job_id(), %error, "could not queue an investigation; its records will be retried");
                    failed.extend(members);
                }
            }
        }
        (stats, failed)
    }
}
