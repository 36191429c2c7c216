//! The investigator's pass over the job table: start what is pending (within the Detective
//! quota), look once at what is running, and write finished verdicts back to the findings.
//! A pass never waits for an investigation; the next pass (every minute, or on a table
//! stream event) looks again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::enrich::Addendum;
use crate::core::error::error_chain;
use crate::core::event::{Candidate, EventKind};
use crate::core::investigation::{
    EXPECTED_JOB_SECONDS, Job, JobChange, JobStatus, MAX_SCOPE_SECONDS, SCOPE_END_LAG_SECONDS, STALE_CLAIM_SECONDS,
    Verdict, Wait, join_pending,
};
use crate::core::outcome::FindingOutcome;
use crate::core::plan::{self, Origin};
use crate::core::time::now_epoch_seconds;
use crate::limits::{DeadlineReached, Limiter};
use crate::ports::detective::{DetectiveError, InvestigationStatus, Investigations};
use crate::ports::findings::{FindingsReader, WriteError};
use crate::ports::jobs::{JobError, JobStore};
use crate::ports::metadata::MetadataStore;
use crate::service::pipeline::Pipeline;
use crate::telemetry::{Metric, Report};

const ACTIVE_JOBS_PER_PASS: usize = 500;
/// StartInvestigation's answers for an entity the graph cannot investigate.
const ENTITY_REJECTED: [&str; 2] = ["ResourceNotFoundException", "ValidationException"];

/// Highest priority first (then oldest window), so a short quota goes to explicit requests
/// and the most severe findings.
fn by_priority(mut jobs: Vec<Job>) -> Vec<Job> {
    jobs.sort_by(|a, b| {
        let key = |j: &Job| (std::cmp::Reverse(j.priority), j.scope_start);
        key(a).cmp(&key(b)).then_with(|| a.job_id.cmp(&b.job_id))
    });
    jobs
}

pub struct Investigator {
    pub jobs: Arc<dyn JobStore>,
    pub detective: Arc<dyn Investigations>,
    pub hub: Arc<dyn FindingsReader>,
    /// The verdict is written through the same pipeline as every enrichment: the account part
    /// rendered with the enricher's settings, the findings left current, and published.
    pub pipeline: Pipeline,
    pub cache: Arc<dyn MetadataStore>,
    /// StartInvestigation (`DETECTIVE_RPS`): the quota that decides how many jobs start.
    pub detective_limit: Limiter,
    /// GetInvestigation and ListIndicators, apart from the starts so that looking at running
    /// investigations never takes a start's place.
    pub detective_read_limit: Limiter,
    /// GetFindings: 3 requests/s per account and region.
    pub read_limit: Limiter,
    pub max_attempts: u32,
    /// A transient failure waits this × 2^(attempts − 1) (at most 64×) before the next try.
    pub retry_base: Duration,
    pub region: String,
    pub deadline_margin: Duration,
    /// Which accounts the graph covers, read once per `COVERAGE_TTL`.
    pub coverage: Coverage,
}

/// How long the graph's member list is trusted. Membership changes when an administrator
/// enables an account, which is rare next to the investigator's minute-by-minute passes.
pub const COVERAGE_TTL: Duration = Duration::from_secs(15 * 60);

/// The graph's covered accounts (ListMembers, every page, ENABLED members and the
/// administrator), cached with an expiry.
pub struct Coverage {
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<CoverageEntry>>,
}

/// When the member list was read, for which graph, and the covered accounts.
type CoverageEntry = (Instant, String, Arc<BTreeSet<String>>);

impl Coverage {
    pub fn new(ttl: Duration) -> Self {
        Coverage { ttl, cached: tokio::sync::Mutex::new(None) }
    }

    /// The covered accounts of `graph`, from the cache while it is fresh. One caller reads
    /// the member list at a time; the others wait for its answer.
    async fn accounts(
        &self,
        detective: &dyn Investigations,
        graph: &str,
    ) -> Result<Arc<BTreeSet<String>>, DetectiveError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, for_graph, accounts)) = cached.as_ref()
            && for_graph == graph
            && at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(accounts));
        }
        let accounts = Arc::new(detective.covered_accounts(graph).await?);
        *cached = Some((Instant::now(), graph.to_owned(), Arc::clone(&accounts)));
        Ok(accounts)
    }
}

/// Detective's transient failures are retried after a minute, then longer.
pub const RETRY_BASE: Duration = Duration::from_secs(60);

/// What a pass did to the active jobs: each ends in exactly one of the counts after `active`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub active: usize,
    pub started: usize,
    /// Due, but the pass's Detective quota went to jobs of higher priority: they wait.
    pub waiting: usize,
    /// Ended without a StartInvestigation call: the entity's account is outside the graph.
    pub not_covered: usize,
    /// Pending jobs whose findings went to an earlier pending job of the same entity.
    pub joined: usize,
    pub still_running: usize,
    pub completed: usize,
    pub failed: usize,
    pub retried: usize,
    pub not_due: usize,
    pub claims_lost: usize,
    pub errors: usize,
    /// What the jobs the pass left active wait for, by kind (`Wait::kind`): the quota, their
    /// next attempt, their scope window, a running investigation, another runner's claim, the
    /// next pass.
    pub waits: BTreeMap<&'static str, usize>,
    /// The earliest time a job waiting on a clock (next attempt, scope window, claim) can move.
    pub next_due_at: Option<i64>,
    /// Jobs active longer than `EXPECTED_JOB_SECONDS`, with what each waits for (the first
    /// `OVERDUE_LISTED`; `overdue_total` counts them all).
    pub overdue: Vec<OverdueJob>,
    pub overdue_total: usize,
}

/// Overdue jobs named in a pass report; the rest are counted.
pub const OVERDUE_LISTED: usize = 10;

/// A job active past its expected time, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverdueJob {
    pub job_id: String,
    pub status: &'static str,
    pub age_seconds: i64,
    pub waiting_for: Wait,
}

impl PassReport {
    /// True when every job still active waits on a clock (its next attempt, its window, a
    /// claim) due later than `horizon`: nothing can finish before then.
    pub fn nothing_due_before(&self, horizon: i64) -> bool {
        let clocked = self.waits.get("next_attempt").copied().unwrap_or(0)
            + self.waits.get("scope_window").copied().unwrap_or(0)
            + self.waits.get("claim").copied().unwrap_or(0);
        let left = self.waits.values().sum::<usize>();
        // Jobs started this pass are running now: they can finish soon.
        self.started == 0 && left > 0 && clocked == left && self.next_due_at.is_some_and(|at| at > horizon)
    }

    /// One phrase per wait kind: "3 next attempt, 1 quota".
    pub fn waits_text(&self) -> String {
        let parts: Vec<String> = self.waits.iter().map(|(k, n)| format!("{n} {}", k.replace('_', " "))).collect();
        if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
    }

    fn note(&mut self, job: &JobSeen, wait: Wait, now: i64) {
        *self.waits.entry(wait.kind()).or_default() += 1;
        if let Some(at) = wait.due_at() {
            self.next_due_at = Some(self.next_due_at.map_or(at, |t| t.min(at)));
        }
        let Some(age) = job.created_at.map(|t| now - t) else { return };
        if age > EXPECTED_JOB_SECONDS {
            self.overdue_total += 1;
            if self.overdue.len() < OVERDUE_LISTED {
                self.overdue.push(OverdueJob {
                    job_id: job.job_id.clone(),
                    status: job.status.as_str(),
                    age_seconds: age,
                    waiting_for: wait,
                });
            }
        }
    }
}

/// A job the pass advanced, and its step.
type Advanced = (JobSeen, Step);

/// What a pass remembers of a job it advanced.
struct JobSeen {
    job_id: String,
    status: JobStatus,
    created_at: Option<i64>,
}

impl PassReport {
    /// True when every active job is counted once.
    pub fn balances(&self) -> bool {
        self.active
            == self.started
                + self.waiting
                + self.not_covered
                + self.joined
                + self.still_running
                + self.completed
                + self.failed
                + self.retried
                + self.not_due
                + self.claims_lost
                + self.errors
    }
}

impl Report for PassReport {
    fn log(&self) {
        if !self.balances() {
            tracing::error!(report = ?self, "investigator pass does not balance");
        }
        tracing::info!(
            active = self.active,
            started = self.started,
            waiting = self.waiting,
            not_covered = self.not_covered,
            joined = self.joined,
            still_running = self.still_running,
            completed = self.completed,
            failed = self.failed,
            retried = self.retried,
            not_due = self.not_due,
            claims_lost = self.claims_lost,
            errors = self.errors,
            waits = %self.waits_text(),
            next_due_at = self.next_due_at,
            overdue = self.overdue_total,
            balanced = self.balances(),
            "investigator pass done: jobs {} = started {} + waiting {} + not covered {} + joined {} + running {} + completed {} + failed {} + retried {} + not due {} + claims lost {} + errors {}",
            self.active,
            self.started,
            self.waiting,
            self.not_covered,
            self.joined,
            self.still_running,
            self.completed,
            self.failed,
            self.retried,
            self.not_due,
            self.claims_lost,
            self.errors
        );
        if self.overdue_total > 0 {
            tracing::warn!(
                overdue = self.overdue_total,
                jobs = ?self.overdue,
                "investigation jobs active past their expected {} s: each names what it waits for",
                EXPECTED_JOB_SECONDS
            );
        }
    }

    fn record_metrics(&self) {
        Metric::InvestigationsStarted.count(self.started);
        Metric::InvestigationsPending.count(self.waiting);
        Metric::InvestigationsNotCovered.count(self.not_covered);
        Metric::InvestigationsJoined.count(self.joined);
        Metric::InvestigationsCompleted.count(self.completed);
        Metric::InvestigationsFailed.count(self.failed);
        Metric::InvestigationsRunning.count(self.still_running);
        Metric::InvestigationsRetried.count(self.retried);
        Metric::InvestigationsNotDue.count(self.not_due);
        Metric::InvestigationsClaimsLost.count(self.claims_lost);
        Metric::InvestigationErrors.count(self.errors);
        Metric::InvestigationsOverdue.count(self.overdue_total);
    }
}

/// Why a job's step could not finish this pass (the next pass tries again). Each keeps its
/// source, so the log line carries the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("the jobs table failed")]
    Jobs(#[from] JobError),
    #[error("Detective failed")]
    Detective(#[from] DetectiveError),
    #[error("reading the job's findings failed")]
    ReadFindings(#[source] WriteError),
    #[error("the pass ran out of time")]
    Deadline(#[from] DeadlineReached),
    #[error("a running job has no graph or investigation id")]
    Inconsistent,
    #[error("{failed} findings were not updated")]
    NotWritten { failed: usize },
}

enum Step {
    Started,
    Waiting,
    NotCovered,
    StillRunning,
    Completed,
    Failed,
    Retried { next_attempt_at: i64, attempts: u32 },
    NotDue(Wait),
    ClaimLost,
    Error,
}

impl Step {
    /// What the job waits for when this step leaves it active.
    fn wait(&self) -> Option<Wait> {
        match *self {
            Step::Waiting => Some(Wait::Quota),
            Step::StillRunning => Some(Wait::Investigation),
            Step::Retried { next_attempt_at, attempts } => Some(Wait::NextAttempt { at: next_attempt_at, attempts }),
            Step::NotDue(wait) => Some(wait),
            Step::ClaimLost | Step::Error => Some(Wait::NextPass),
            Step::Started | Step::NotCovered | Step::Completed | Step::Failed => None,
        }
    }
}

impl Investigator {
    pub async fn run_pass(&self, deadline: Instant) -> PassReport {
        let deadline = deadline.checked_sub(self.deadline_margin).unwrap_or_else(Instant::now);
        let mut report = PassReport::default();
        let jobs = match self.jobs.active(ACTIVE_JOBS_PER_PASS).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "could not read the jobs table");
                report.errors += 1;
                return report;
            }
        };
        report.active = jobs.len();
        let (jobs, followers) = join_pending(jobs, now_epoch_seconds());
        for (lead, follower) in &followers {
            match self.jobs.absorb(lead, follower, now_epoch_seconds()).await {
                Ok(true) => report.joined += 1,
                Ok(false) => report.claims_lost += 1,
                Err(e) => {
                    // The lead still writes its verdict to the follower's findings; the
                    // follower stays pending and the next pass joins it again.
                    tracing::warn!(job_id = %follower.job_id, error = %error_chain(&e), "could not join a job to its lead");
                    report.errors += 1;
                }
            }
        }
        let (pending, others): (Vec<Job>, Vec<Job>) =
            by_priority(jobs).into_iter().partition(|j| j.status == JobStatus::Pending);
        // Pending jobs start one after the other, in priority order, so the Detective quota
        // goes to the first ones (starting is paced by DETECTIVE_RPS anyway); the running
        // ones are looked at meanwhile.
        let (started, looked_at): (Vec<Advanced>, Vec<Advanced>) = tokio::join!(
            futures::stream::iter(pending).then(|job| self.advance(job, deadline)).collect(),
            futures::stream::iter(others).map(|job| self.advance(job, deadline)).buffer_unordered(4).collect(),
        );
        let now = now_epoch_seconds();
        for (job, step) in started.into_iter().chain(looked_at) {
            if let Some(wait) = step.wait() {
                report.note(&job, wait, now);
            }
            match step {
                Step::Started => report.started += 1,
                Step::Waiting => report.waiting += 1,
                Step::NotCovered => report.not_covered += 1,
                Step::StillRunning => report.still_running += 1,
                Step::Completed => report.completed += 1,
                Step::Failed => report.failed += 1,
                Step::Retried { .. } => report.retried += 1,
                Step::NotDue(_) => report.not_due += 1,
                Step::ClaimLost => report.claims_lost += 1,
                Step::Error => report.errors += 1,
            }
        }
        report
    }

    async fn advance(&self, job: Job, deadline: Instant) -> Advanced {
        let step = self.step(&job, deadline).await;
        (JobSeen { job_id: job.job_id, status: job.status, created_at: job.created_at }, step)
    }

    async fn step(&self, job: &Job, deadline: Instant) -> Step {
        let now = now_epoch_seconds();
        let next_attempt = Wait::NextAttempt { at: job.next_attempt_at, attempts: job.attempts };
        if Instant::now() >= deadline {
            // A due job the pass had no time (no quota) left for waits for the next pass.
            return match job.status {
                JobStatus::Pending if job.next_attempt_at > now => Step::NotDue(next_attempt),
                JobStatus::Pending => Step::Waiting,
                JobStatus::Running => Step::NotDue(Wait::Investigation),
                _ => Step::NotDue(Wait::NextPass),
            };
        }
        let result = match job.status {
            JobStatus::Pending if job.next_attempt_at > now => return Step::NotDue(next_attempt),
            JobStatus::Pending if job.window_closes_at() > now => {
                return Step::NotDue(Wait::ScopeWindow { at: job.window_closes_at() });
            }
            JobStatus::Pending => self.start(job, now, deadline).await,
            JobStatus::Starting if job.claimed_at.is_some_and(|t| now - t > STALE_CLAIM_SECONDS) => {
                let reason = "the start of this investigation was interrupted; not retried, to never start it twice";
                self.finish(job, Verdict::Failed { reason: reason.into() }, deadline).await.map(|_| Step::Failed)
            }
            JobStatus::Starting => return Step::NotDue(Wait::Claim { since: job.claimed_at.unwrap_or(now) }),
            JobStatus::Running => self.poll(job, deadline).await,
            JobStatus::Complete | JobStatus::Failed | JobStatus::NotCovered | JobStatus::Joined => {
                return Step::NotDue(Wait::NextPass);
            }
        };
        result.unwrap_or_else(|error| {
            tracing::warn!(job_id = %job.job_id, error = %error_chain(&error), "investigation job step failed; next pass retries");
            Step::Error
        })
    }

    /// The wait before attempt `attempts` + 1: `retry_base` after the first failure, doubling
    /// after each further one (at most 64×). (It was 2× from the first failure on, so the first
    /// retry came after two minutes rather than the one RETRY_BASE says.)
    fn backoff(&self, attempts: u32) -> i64 {
        self.retry_base.as_secs() as i64 * 2i64.pow(attempts.saturating_sub(1).min(6))
    }

    async fn start(&self, job: &Job, now: i64, deadline: Instant) -> Result<Step, StepError> {
        if !self.jobs.claim(&job.job_id, now).await? {
            return Ok(Step::ClaimLost);
        }
        let release = || async {
            if let Err(e) = self.jobs.update(&job.job_id, &JobChange::Released, now_epoch_seconds()).await {
                tracing::warn!(job_id = %job.job_id, error = %error_chain(&e), "could not release a claim");
            }
        };
        let graph = match self.detective.graph().await {
            Ok(graph) => graph,
            Err(e) => {
                release().await;
                return Err(e.into());
            }
        };
        let covered = match self.coverage.accounts(self.detective.as_ref(), &graph).await {
            Ok(covered) => covered,
            Err(e) => {
                release().await;
                return Err(e.into());
            }
        };
        if !job.entity_account().is_some_and(|a| covered.contains(a)) {
            let account = job.entity_account().unwrap_or("unknown");
            let reason = format!("account {account} is not a member of Detective graph {graph}");
            self.finish(job, Verdict::NotCovered { reason }, deadline).await?;
            return Ok(Step::NotCovered);
        }
        if self.detective_limit.acquire(deadline).await.is_err() {
            release().await;
            return Ok(Step::Waiting);
        }
        let scope_end =
            (now - SCOPE_END_LAG_SECONDS).max(job.scope_start + 3600).min(job.scope_start + MAX_SCOPE_SECONDS);
        match self.detective.start(&graph, &job.entity_arn, job.scope_start, scope_end).await {
            Ok(investigation_id) => {
                tracing::info!(job_id = %job.job_id, %investigation_id, "investigation started");
                let change = JobChange::Running { investigation_id, graph_arn: graph };
                self.jobs.update(&job.job_id, &change, now_epoch_seconds()).await?;
                Ok(Step::Started)
            }
            // Throttling says nothing about the job: the claim goes back and the next pass
            // tries again, without spending an attempt.
            Err(DetectiveError::Throttled { .. }) => {
                release().await;
                Ok(Step::NotDue(Wait::Quota))
            }
            Err(e @ DetectiveError::Transient { .. }) => self.retry_or_fail(job, &error_chain(&e), deadline).await,
            // The graph does not know the entity (its account left, or was never enabled):
            // as final as a job found uncovered before calling, and never retried.
            Err(DetectiveError::Refused { code, .. }) if ENTITY_REJECTED.contains(&code.as_str()) => {
                let reason = format!("Detective graph {graph} rejected the entity ({code})");
                self.finish(job, Verdict::NotCovered { reason }, deadline).await?;
                Ok(Step::NotCovered)
            }
            Err(e) => {
                let reason = error_chain(&e);
                self.finish(job, Verdict::Failed { reason }, deadline).await?;
                Ok(Step::Failed)
            }
        }
    }

    async fn retry_or_fail(&self, job: &Job, reason: &str, deadline: Instant) -> Result<Step, StepError> {
        let attempts = job.attempts + 1;
        if attempts >= self.max_attempts {
            let reason = format!("gave up after {attempts} attempts: {reason}");
            self.finish(job, Verdict::Failed { reason }, deadline).await?;
            return Ok(Step::Failed);
        }
        let next_attempt_at = now_epoch_seconds() + self.backoff(attempts);
        let change = JobChange::Retry { attempts, next_attempt_at };
        self.jobs.update(&job.job_id, &change, now_epoch_seconds()).await?;
        tracing::info!(job_id = %job.job_id, attempts, next_attempt_at, reason, "investigation retried later");
        Ok(Step::Retried { next_attempt_at, attempts })
    }

    async fn poll(&self, job: &Job, deadline: Instant) -> Result<Step, StepError> {
        let (Some(graph), Some(id)) = (&job.graph_arn, &job.investigation_id) else {
            return Err(StepError::Inconsistent);
        };
        self.detective_read_limit.acquire(deadline).await?;
        match self.detective.status(graph, id).await? {
            InvestigationStatus::Running => Ok(Step::StillRunning),
            InvestigationStatus::Failed => {
                self.retry_or_fail(job, "Detective reported the investigation FAILED", deadline).await
            }
            InvestigationStatus::Successful { severity } => {
                self.detective_read_limit.acquire(deadline).await?;
                let indicators = self.detective.indicators(graph, id).await?;
                let verdict =
                    Verdict::Complete { investigation_id: id.clone(), severity, indicators, graph: graph.clone() };
                self.finish(job, verdict, deadline).await?;
                Ok(Step::Completed)
            }
        }
    }

    /// Writes the verdict to the job's findings, then closes the job. If the write fails the
    /// job stays as it was and the next pass writes again (the write is idempotent).
    async fn finish(&self, job: &Job, verdict: Verdict, deadline: Instant) -> Result<(), StepError> {
        self.write_back(job, &verdict, deadline).await?;
        self.jobs.update(&job.job_id, &verdict.job_change(), now_epoch_seconds()).await?;
        Ok(())
    }

    async fn write_back(&self, job: &Job, verdict: &Verdict, deadline: Instant) -> Result<(), StepError> {
        if job.findings.is_empty() {
            return Ok(());
        }
        let mut current = Vec::new();
        for chunk in job.findings.chunks(20) {
            self.read_limit.acquire(deadline).await?;
            current.extend(self.hub.current(chunk).await.map_err(StepError::ReadFindings)?);
        }
        let accounts: Vec<String> =
            current.iter().map(|f| f.aws_account_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        // The account part of the note is rendered from the cache; without an entry, the
        // finding keeps what it carries (the investigator never asks Organizations).
        let cached = self.cache.get_many(&accounts).await.unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "cache unreadable; keeping the notes' account part");
            HashMap::new()
        });
        let addendum = Addendum { note: verdict.note_text(&self.region), fields: verdict.fields() };
        let candidates: Vec<Candidate> = current
            .into_iter()
            .enumerate()
            .map(|(record, finding)| Candidate { record, finding, kind: EventKind::Imported })
            .collect();
        let members: Vec<usize> =
            (0..candidates.len()).filter(|&i| plan::screen(&candidates[i].finding, Origin::Hub).is_none()).collect();
        let known = |account: &str| cached.get(account).map(|entry| &entry.record);
        let served = self.pipeline.serve(&candidates, &members, known, Some(&addendum), deadline).await;
        let failed = served.outcomes.iter().filter(|(_, o)| matches!(o, FindingOutcome::Failed(_))).count();
        if failed > 0 {
            return Err(StepError::NotWritten { failed });
        }
        tracing::info!(job_id = %job.job_id, findings = candidates.len(), "investigation verdict written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(created_at: Option<i64>) -> JobSeen {
        JobSeen { job_id: "arn:aws:iam::111122223333:user/alice|0".into(), status: JobStatus::Pending, created_at }
    }

    #[test]
    fn a_pass_says_what_its_jobs_wait_for_and_names_the_overdue_ones() {
        let now = 10_000;
        let mut report = PassReport::default();
        report.note(&seen(Some(now - 60)), Wait::NextAttempt { at: now + 120, attempts: 1 }, now);
        report.note(&seen(Some(now - EXPECTED_JOB_SECONDS - 1)), Wait::ScopeWindow { at: now + 90 }, now);
        assert_eq!(report.waits_text(), "1 next attempt, 1 scope window");
        assert_eq!(report.next_due_at, Some(now + 90));
        assert!(report.nothing_due_before(now + 30), "only clocks further away than the horizon");
        assert!(!report.nothing_due_before(now + 100));
        let started = PassReport { started: 1, ..report.clone() };
        assert!(!started.nothing_due_before(now + 30), "a job started this pass can finish soon");
        assert_eq!(report.overdue_total, 1);
        assert_eq!(report.overdue[0].waiting_for, Wait::ScopeWindow { at: now + 90 });
        assert_eq!(report.overdue[0].age_seconds, EXPECTED_JOB_SECONDS + 1);
        // A job waiting for the quota or a running investigation can finish at the next pass.
        report.note(&seen(None), Wait::Quota, now);
        assert!(!report.nothing_due_before(now + 30));
        assert_eq!(serde_json::to_value(Wait::NextAttempt { at: 5, attempts: 2 }).unwrap()["for"], "next_attempt");
    }

    #[test]
    fn every_step_that_leaves_a_job_active_says_why() {
        assert_eq!(Step::Waiting.wait(), Some(Wait::Quota));
        assert_eq!(Step::StillRunning.wait(), Some(Wait::Investigation));
        assert_eq!(
            Step::Retried { next_attempt_at: 7, attempts: 2 }.wait(),
            Some(Wait::NextAttempt { at: 7, attempts: 2 })
        );
        assert_eq!(Step::ClaimLost.wait(), Some(Wait::NextPass));
        assert_eq!(Step::Error.wait(), Some(Wait::NextPass));
        for done in [Step::Started, Step::NotCovered, Step::Completed, Step::Failed] {
            assert_eq!(done.wait(), None);
        }
    }
}
