//! The enricher's side of investigations: select findings, resolve their entities, and queue one
//! job per (entity, scope window) in the job table. Never waits on Detective.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::event::Candidate;
use crate::core::investigation::{Enqueued, JobRequest};
use crate::core::select::{Criteria, entities, scope_start, trigger};
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
    pub entities_unresolved: usize,
    pub jobs_created: usize,
    pub jobs_joined: usize,
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
        deadline: Instant,
    ) -> (FanoutStats, BTreeSet<usize>) {
        let mut stats = FanoutStats::default();
        let now_millis = now_epoch_seconds() * 1000;
        let mut requests: BTreeMap<String, (JobRequest, Vec<usize>)> = BTreeMap::new();
        for &i in eligible {
            let candidate = &candidates[i];
            if trigger(&candidate.finding, &candidate.kind, &self.criteria).is_none() {
                continue;
            }
            stats.findings_selected += 1;
            let (found, unresolved) = entities(&candidate.finding);
            stats.entities_unresolved += unresolved.len();
            for reason in &unresolved {
                tracing::info!(finding_id = %candidate.finding.id, ?reason, "IAM entity not investigated");
            }
            let start = scope_start(&candidate.finding, self.lookback_hours, now_millis);
            for entity in found {
                let request = JobRequest { entity_arn: entity.arn, scope_start: start, findings: BTreeSet::new() };
                let slot = requests.entry(request.job_id()).or_insert_with(|| (request, Vec::new()));
                slot.0.findings.insert(candidate.finding.identifier());
                slot.1.push(i);
            }
        }

        let now = now_millis / 1000;
        let results: Vec<_> = futures::stream::iter(requests.into_values())
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
