//! The investigator's pass over the job table: start what is pending (within the Detective
//! quota), look once at what is running, and write finished verdicts back to the findings.
//! A pass never waits for an investigation; the next pass (every minute, or on a table
//! stream event) looks again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::detective::{DetectiveError, InvestigationStatus, Investigations};
use super::jobs::{Job, JobChange, JobStatus, JobStore};
use crate::enrich::{self, AccountEnrichment, Completeness, EnrichmentPayload, TagFilter, keys};
use crate::limits::Limiter;
use crate::metadata::{AccountRecord, MetadataStore, directory_error_chain, now_epoch_seconds};
use crate::outcome::FindingOutcome;
use crate::securityhub::{FindingsReader, PlannedUpdate, Updater};

/// A claim older than this, without an investigation id, may or may not have started one:
/// it is failed rather than started twice.
const STALE_CLAIM_SECONDS: i64 = 600;
/// Detective wants the window to end in the past.
const SCOPE_END_LAG_SECONDS: i64 = 300;
const ACTIVE_JOBS_PER_PASS: usize = 500;

pub struct Investigator {
    pub jobs: Arc<dyn JobStore>,
    pub detective: Arc<dyn Investigations>,
    pub hub: Arc<dyn FindingsReader>,
    pub updater: Updater,
    pub cache: Arc<dyn MetadataStore>,
    pub tag_filter: TagFilter,
    pub detective_limit: Limiter,
    /// GetFindings: 3 requests/s per account and region.
    pub read_limit: Limiter,
    pub max_attempts: u32,
    /// A transient failure waits this × 2^attempts (at most 64×) before the next try.
    pub retry_base: Duration,
    pub region: String,
    pub deadline_margin: Duration,
}

/// Detective's transient failures are retried after a minute, then longer.
pub const RETRY_BASE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub active: usize,
    pub started: usize,
    pub still_running: usize,
    pub completed: usize,
    pub failed: usize,
    pub retried: usize,
    pub not_due: usize,
    pub claims_lost: usize,
    pub errors: usize,
}

enum Step {
    Started,
    StillRunning,
    Completed,
    Failed,
    Retried,
    NotDue,
    ClaimLost,
    Error,
}

/// What a finished job writes to its findings.
enum Verdict {
    Complete { investigation_id: String, severity: String, indicators: BTreeMap<String, usize>, graph: String },
    Failed { reason: String },
}

impl Investigator {
    pub async fn run_pass(&self, deadline: Instant) -> PassReport {
        let deadline = deadline.checked_sub(self.deadline_margin).unwrap_or_else(Instant::now);
        let mut report = PassReport::default();
        let jobs = match self.jobs.active(ACTIVE_JOBS_PER_PASS).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %directory_error_chain(&e), "could not read the jobs table");
                report.errors += 1;
                return report;
            }
        };
        report.active = jobs.len();
        let steps: Vec<Step> =
            futures::stream::iter(jobs).map(|job| self.advance(job, deadline)).buffer_unordered(4).collect().await;
        for step in steps {
            match step {
                Step::Started => report.started += 1,
                Step::StillRunning => report.still_running += 1,
                Step::Completed => report.completed += 1,
                Step::Failed => report.failed += 1,
                Step::Retried => report.retried += 1,
                Step::NotDue => report.not_due += 1,
                Step::ClaimLost => report.claims_lost += 1,
                Step::Error => report.errors += 1,
            }
        }
        tracing::info!(?report, "investigator pass done");
        crate::telemetry::record_investigations(crate::telemetry::Metric::InvestigationsStarted, report.started);
        crate::telemetry::record_investigations(crate::telemetry::Metric::InvestigationsCompleted, report.completed);
        crate::telemetry::record_investigations(crate::telemetry::Metric::InvestigationsFailed, report.failed);
        report
    }

    async fn advance(&self, job: Job, deadline: Instant) -> Step {
        let now = now_epoch_seconds();
        if Instant::now() >= deadline {
            return Step::NotDue;
        }
        let result = match job.status {
            JobStatus::Pending if job.next_attempt_at > now => return Step::NotDue,
            JobStatus::Pending => self.start(&job, now, deadline).await,
            JobStatus::Starting if job.claimed_at.is_some_and(|t| now - t > STALE_CLAIM_SECONDS) => {
                let reason = "the start of this investigation was interrupted; not retried, to never start it twice";
                self.finish(&job, Verdict::Failed { reason: reason.into() }, deadline).await.map(|_| Step::Failed)
            }
            JobStatus::Starting => return Step::NotDue,
            JobStatus::Running => self.poll(&job, deadline).await,
            JobStatus::Complete | JobStatus::Failed => return Step::NotDue,
        };
        result.unwrap_or_else(|error| {
            tracing::warn!(job_id = %job.job_id, %error, "investigation job step failed; next pass retries");
            Step::Error
        })
    }

    fn backoff(&self, attempts: u32) -> i64 {
        self.retry_base.as_secs() as i64 * 2i64.pow(attempts.min(6))
    }

    async fn start(&self, job: &Job, now: i64, deadline: Instant) -> Result<Step, String> {
        if !self.jobs.claim(&job.job_id, now).await.map_err(|e| directory_error_chain(&e))? {
            return Ok(Step::ClaimLost);
        }
        let release = || async {
            if let Err(e) = self.jobs.update(&job.job_id, &JobChange::Released, now_epoch_seconds()).await {
                tracing::warn!(job_id = %job.job_id, error = %directory_error_chain(&e), "could not release a claim");
            }
        };
        let graph = match self.detective.graph().await {
            Ok(graph) => graph,
            Err(e) => {
                release().await;
                return Err(directory_error_chain(&e));
            }
        };
        if self.detective_limit.acquire(deadline).await.is_err() {
            release().await;
            return Ok(Step::NotDue);
        }
        let scope_end = (now - SCOPE_END_LAG_SECONDS).max(job.scope_start + 3600);
        match self.detective.start(&graph, &job.entity_arn, job.scope_start, scope_end).await {
            Ok(investigation_id) => {
                tracing::info!(job_id = %job.job_id, %investigation_id, "investigation started");
                let change = JobChange::Running { investigation_id, graph_arn: graph };
                self.jobs
                    .update(&job.job_id, &change, now_epoch_seconds())
                    .await
                    .map_err(|e| directory_error_chain(&e))?;
                Ok(Step::Started)
            }
            // Throttling says nothing about the job: the claim goes back and the next pass
            // tries again, without spending an attempt.
            Err(DetectiveError::Throttled { .. }) => {
                release().await;
                Ok(Step::NotDue)
            }
            Err(e @ DetectiveError::Transient { .. }) => {
                self.retry_or_fail(job, &directory_error_chain(&e), deadline).await
            }
            Err(e) => {
                let reason = directory_error_chain(&e);
                self.finish(job, Verdict::Failed { reason }, deadline).await?;
                Ok(Step::Failed)
            }
        }
    }

    async fn retry_or_fail(&self, job: &Job, reason: &str, deadline: Instant) -> Result<Step, String> {
        let attempts = job.attempts + 1;
        if attempts >= self.max_attempts {
            let reason = format!("gave up after {attempts} attempts: {reason}");
            self.finish(job, Verdict::Failed { reason }, deadline).await?;
            return Ok(Step::Failed);
        }
        let change = JobChange::Retry { attempts, next_attempt_at: now_epoch_seconds() + self.backoff(attempts) };
        self.jobs.update(&job.job_id, &change, now_epoch_seconds()).await.map_err(|e| directory_error_chain(&e))?;
        Ok(Step::Retried)
    }

    async fn poll(&self, job: &Job, deadline: Instant) -> Result<Step, String> {
        let (Some(graph), Some(id)) = (&job.graph_arn, &job.investigation_id) else {
            return Err("running job without graph or investigation id".into());
        };
        self.detective_limit.acquire(deadline).await.map_err(|e| e.to_string())?;
        match self.detective.status(graph, id).await.map_err(|e| directory_error_chain(&e))? {
            InvestigationStatus::Running => Ok(Step::StillRunning),
            InvestigationStatus::Failed => {
                self.retry_or_fail(job, "Detective reported the investigation FAILED", deadline).await
            }
            InvestigationStatus::Successful { severity } => {
                self.detective_limit.acquire(deadline).await.map_err(|e| e.to_string())?;
                let indicators = self.detective.indicators(graph, id).await.map_err(|e| directory_error_chain(&e))?;
                let verdict =
                    Verdict::Complete { investigation_id: id.clone(), severity, indicators, graph: graph.clone() };
                self.finish(job, verdict, deadline).await?;
                Ok(Step::Completed)
            }
        }
    }

    /// Writes the verdict to the job's findings, then closes the job. If the write fails the
    /// job stays as it was and the next pass writes again (the write is idempotent).
    async fn finish(&self, job: &Job, verdict: Verdict, deadline: Instant) -> Result<(), String> {
        self.write_back(job, &verdict, deadline).await?;
        let change = match &verdict {
            Verdict::Complete { severity, .. } => JobChange::Complete { severity: severity.clone() },
            Verdict::Failed { reason } => JobChange::Failed { reason: reason.clone() },
        };
        self.jobs.update(&job.job_id, &change, now_epoch_seconds()).await.map_err(|e| directory_error_chain(&e))
    }

    fn investigation_text(&self, verdict: &Verdict) -> String {
        match verdict {
            Verdict::Complete { investigation_id, severity, indicators, graph } => {
                let found = if indicators.is_empty() {
                    "no indicators".to_owned()
                } else {
                    indicators.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
                };
                let region = graph.split(':').nth(3).unwrap_or(&self.region);
                format!(
                    "Detective investigation {investigation_id}: severity {severity}; {found}. https://{region}.console.aws.amazon.com/detective/home?region={region}#investigations"
                )
            }
            Verdict::Failed { reason } => format!("Detective investigation failed: {reason}"),
        }
    }

    async fn write_back(&self, job: &Job, verdict: &Verdict, deadline: Instant) -> Result<(), String> {
        if job.findings.is_empty() {
            return Ok(());
        }
        let mut current = Vec::new();
        for chunk in job.findings.chunks(20) {
            self.read_limit.acquire(deadline).await.map_err(|e| e.to_string())?;
            current.extend(self.hub.current(chunk).await.map_err(|e| directory_error_chain(&e))?);
        }
        let accounts: Vec<String> = current
            .iter()
            .map(|f| f.aws_account_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // The account part of the note is re-rendered from the cache; without an entry, the
        // account part of our previous note is kept.
        let cached = self.cache.get_many(&accounts).await.unwrap_or_else(|e| {
            tracing::warn!(error = %directory_error_chain(&e), "cache unreadable; keeping the notes' account part");
            HashMap::new()
        });
        let account_notes: HashMap<&str, String> = cached
            .iter()
            .filter_map(|(id, entry)| match &entry.record {
                AccountRecord::Found(meta) => {
                    Some((id.as_str(), AccountEnrichment::new(meta, Completeness::Complete, &self.tag_filter).note))
                }
                AccountRecord::NotFound => None,
            })
            .collect();
        let text = self.investigation_text(verdict);
        let updates: Vec<(&str, String)> = match verdict {
            Verdict::Complete { investigation_id, severity, .. } => vec![
                (keys::INVESTIGATE, "complete".into()),
                (keys::INVESTIGATION_SEVERITY, severity.clone()),
                (keys::INVESTIGATION_ID, investigation_id.clone()),
            ],
            Verdict::Failed { .. } => vec![(keys::INVESTIGATE, "failed".into())],
        };
        let mut groups: BTreeMap<EnrichmentPayload, Vec<crate::finding::FindingId>> = BTreeMap::new();
        for finding in &current {
            let note = enrich::note_is_ours(finding.note.as_ref()).then(|| {
                let account = account_notes
                    .get(finding.aws_account_id.as_str())
                    .cloned()
                    .or_else(|| finding.note.as_ref().map(|n| enrich::account_part_of(&n.text).to_owned()))
                    .unwrap_or_default();
                enrich::compose_note(&account, &text)
            });
            let payload =
                EnrichmentPayload { note, fields: enrich::merge_fields(&finding.user_defined_fields, &updates) };
            groups.entry(payload).or_default().push(finding.identifier());
        }
        let requests: Vec<PlannedUpdate> = groups
            .into_iter()
            .flat_map(|(payload, ids)| {
                let payload = Arc::new(payload);
                ids.chunks(crate::plan::MAX_FINDINGS_PER_UPDATE)
                    .map(|chunk| PlannedUpdate { ids: chunk.to_vec(), payload: Arc::clone(&payload) })
                    .collect::<Vec<_>>()
            })
            .collect();
        let (outcomes, _) = self.updater.run(&requests, deadline).await;
        let failed = outcomes.iter().flatten().filter(|o| matches!(o, FindingOutcome::Failed(_))).count();
        if failed > 0 {
            return Err(format!("{failed} findings were not updated"));
        }
        tracing::info!(job_id = %job.job_id, findings = current.len(), "investigation verdict written");
        Ok(())
    }
}
