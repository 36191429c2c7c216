//! An in-memory job table: the conditional writes of `adapters::jobs_table` over a map, so
//! handler tests can see which investigations a batch queued.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use securityhub_enricher::core::investigation::{
    Enqueued, Job, JobChange, JobRequest, JobStatus, MAX_FINDINGS_PER_JOB,
};
use securityhub_enricher::ports::jobs::{JobError, JobStore};

#[derive(Default)]
pub struct InMemoryJobs {
    jobs: Mutex<BTreeMap<String, Job>>,
}

impl InMemoryJobs {
    /// Every job, by id.
    pub fn jobs(&self) -> BTreeMap<String, Job> {
        self.jobs.lock().unwrap().clone()
    }
}

fn conflict(job_id: &str) -> JobError {
    JobError::Conflict { job_id: job_id.to_owned() }
}

#[async_trait]
impl JobStore for InMemoryJobs {
    async fn enqueue(&self, request: &JobRequest, now: i64) -> Result<Enqueued, JobError> {
        let mut jobs = self.jobs.lock().unwrap();
        let id = request.job_id();
        let Some(job) = jobs.get_mut(&id) else {
            jobs.insert(
                id.clone(),
                Job {
                    job_id: id,
                    entity_arn: request.entity_arn.clone(),
                    scope_start: request.scope_start,
                    status: JobStatus::Pending,
                    findings: request.findings.iter().cloned().collect(),
                    findings_overflow: 0,
                    attempts: 0,
                    next_attempt_at: 0,
                    claimed_at: None,
                    investigation_id: None,
                    graph_arn: None,
                    priority: request.priority,
                    created_at: Some(now),
                },
            );
            return Ok(Enqueued::Created);
        };
        job.priority = job.priority.max(request.priority);
        if job.findings.len() >= MAX_FINDINGS_PER_JOB {
            job.findings_overflow += request.findings.len() as u64;
            return Ok(Enqueued::Overflow(request.findings.len()));
        }
        for finding in &request.findings {
            if !job.findings.contains(finding) {
                job.findings.push(finding.clone());
            }
        }
        Ok(Enqueued::Joined)
    }

    async fn active(&self, limit: usize) -> Result<Vec<Job>, JobError> {
        let jobs = self.jobs.lock().unwrap();
        let active = [JobStatus::Pending, JobStatus::Starting, JobStatus::Running];
        Ok(jobs.values().filter(|j| active.contains(&j.status)).take(limit).cloned().collect())
    }

    async fn claim(&self, job_id: &str, now: i64) -> Result<bool, JobError> {
        let mut jobs = self.jobs.lock().unwrap();
        match jobs.get_mut(job_id) {
            Some(job) if job.status == JobStatus::Pending && job.next_attempt_at <= now => {
                job.status = JobStatus::Starting;
                job.claimed_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn update(&self, job_id: &str, change: &JobChange, _now: i64) -> Result<(), JobError> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.get_mut(job_id).ok_or_else(|| conflict(job_id))?;
        match change {
            JobChange::Running { investigation_id, graph_arn } => {
                if job.status != JobStatus::Starting {
                    return Err(conflict(job_id));
                }
                job.status = JobStatus::Running;
                job.investigation_id = Some(investigation_id.clone());
                job.graph_arn = Some(graph_arn.clone());
            }
            JobChange::Retry { attempts, next_attempt_at } => {
                job.status = JobStatus::Pending;
                job.attempts = *attempts;
                job.next_attempt_at = *next_attempt_at;
                job.investigation_id = None;
            }
            JobChange::Released => {
                if job.status != JobStatus::Starting {
                    return Err(conflict(job_id));
                }
                job.status = JobStatus::Pending;
            }
            JobChange::Complete { .. } => job.status = JobStatus::Complete,
            JobChange::Failed { .. } => job.status = JobStatus::Failed,
            JobChange::NotCovered { .. } => job.status = JobStatus::NotCovered,
        }
        Ok(())
    }

    async fn absorb(&self, lead: &str, job: &Job, _now: i64) -> Result<bool, JobError> {
        let mut jobs = self.jobs.lock().unwrap();
        let lead_job = jobs.get_mut(lead).ok_or_else(|| conflict(lead))?;
        lead_job.priority = lead_job.priority.max(job.priority);
        for finding in &job.findings {
            if !lead_job.findings.contains(finding) {
                lead_job.findings.push(finding.clone());
            }
        }
        match jobs.get_mut(&job.job_id) {
            Some(follower) if follower.status == JobStatus::Pending => {
                follower.status = JobStatus::Joined;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
