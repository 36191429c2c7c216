//! The sweep: every ACTIVE finding that needs work (never enriched, `Partial`, or enriched from
//! metadata that has since changed) enriched through the same core as the stream. GetFindings
//! pages come in account order, so one account's findings are grouped together across pages
//! and the writes stay at Σ⌈n/100⌉ over the whole sweep. Used by `enricher-admin sweep` and the
//! `refresher` Lambda, which keeps a checkpoint so a sweep of a million findings spans runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::enrich::{EnrichmentPayload, TagFilter, account_enrichments};
use crate::core::error::error_chain;
use crate::core::event::{Candidate, EventKind};
use crate::core::finding::{Finding, is_account_id};
use crate::core::outcome::{FindingOutcome, SkipReason};
use crate::core::plan::{self, minimum_requests};
use crate::limits::{Limiter, backoff};
use crate::ports::findings::{FindingsPage, FindingsReader, WriteError};
use crate::service::batch_report::WriteStats;
use crate::service::directory::{Directory, Resolution};
use crate::service::updater::Updater;
use crate::telemetry::{Metric, Report};

/// An account's findings are written in pieces of at most this many, so that memory stays
/// bounded for an account with a million findings; each piece is 100 full requests.
const FLUSH_AT: usize = 10_000;
/// Tries of one GetFindings page before the sweep stops (and resumes there next run).
const READ_ATTEMPTS: u32 = 6;
/// The sweep stops taking pages this long before its deadline, to write what it holds.
pub const WRITE_MARGIN: Duration = Duration::from_secs(20);

pub struct Sweeper {
    pub reader: Arc<dyn FindingsReader>,
    pub directory: Directory,
    pub updater: Updater,
    pub tag_filter: TagFilter,
    /// GetFindings: 3 requests/s (burst 6) per account and Region, shared with the investigator.
    pub read_limit: Limiter,
    /// Time kept before the deadline for writing what was read (`WRITE_MARGIN`).
    pub write_margin: Duration,
}

/// What one sweep run did. Every examined finding is counted once: current, enriched
/// (complete or partial), skipped with a reason, or failed for the next run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    pub examined: usize,
    /// Already carried the account's current metadata, complete: not written.
    pub current: usize,
    pub enriched_complete: usize,
    /// Written `Partial` or left `Partial` (Organizations did not answer in time).
    pub still_partial: usize,
    pub skipped: BTreeMap<String, usize>,
    pub failed: BTreeMap<String, usize>,
    pub get_findings_calls: usize,
    pub writes: WriteStats,
    /// Where the next run goes on; `None` when the sweep reached the last page.
    pub resume_token: Option<String>,
    /// Why it stopped before the end, if it did.
    pub stopped: Option<String>,
    pub duration_ms: u128,
}

impl SweepReport {
    pub fn balances(&self) -> bool {
        self.examined
            == self.current
                + self.enriched_complete
                + self.still_partial
                + self.skipped.values().sum::<usize>()
                + self.failed.values().sum::<usize>()
    }

    /// Findings this run left short of complete: written or left `Partial`, or waiting for the
    /// warm-up.
    pub fn incomplete(&self) -> usize {
        self.still_partial + self.skipped.get(SkipReason::AwaitingWarmUp.as_label()).copied().unwrap_or(0)
    }

    pub fn complete(&self) -> bool {
        self.resume_token.is_none() && self.stopped.is_none()
    }

    fn count(&mut self, outcome: &FindingOutcome) {
        match outcome {
            FindingOutcome::Enriched { partial: false } => self.enriched_complete += 1,
            FindingOutcome::Enriched { partial: true } => self.still_partial += 1,
            FindingOutcome::Skipped(reason) => *self.skipped.entry(reason.as_label().to_owned()).or_default() += 1,
            FindingOutcome::Failed(reason) => *self.failed.entry(reason.as_label().to_owned()).or_default() += 1,
        }
    }
}

impl std::ops::AddAssign for SweepReport {
    /// Adds a later run's figures (a sweep of several account chunks); where it stopped is the
    /// later run's.
    fn add_assign(&mut self, later: SweepReport) {
        self.examined += later.examined;
        self.current += later.current;
        self.enriched_complete += later.enriched_complete;
        self.still_partial += later.still_partial;
        for (k, n) in later.skipped {
            *self.skipped.entry(k).or_default() += n;
        }
        for (k, n) in later.failed {
            *self.failed.entry(k).or_default() += n;
        }
        self.get_findings_calls += later.get_findings_calls;
        self.writes += later.writes;
        self.resume_token = later.resume_token;
        self.stopped = later.stopped;
        self.duration_ms += later.duration_ms;
    }
}

/// The findings of one account collected so far, and the payload sizes written for it, so the
/// bound is Σ⌈n/100⌉ over the account's whole sweep, not per piece.
#[derive(Default)]
struct Pending {
    account: Option<String>,
    findings: Vec<Finding>,
    written: HashMap<Arc<EnrichmentPayload>, usize>,
    /// The page token from which this account's findings can all be read again.
    resume_from: Option<String>,
    /// What the directory said of the accounts of the pages read, asked once per page.
    resolutions: HashMap<String, Resolution>,
    /// Deferred accounts the cache could not answer: their findings wait for the next pass.
    awaiting: std::collections::HashSet<String>,
}

impl Sweeper {
    /// Sweeps the active findings of `accounts` (every account when empty), from `resume`
    /// (a page token of an earlier run) or the start, until the last page or `deadline`.
    pub async fn run(
        &self,
        accounts: &[String],
        resume: Option<String>,
        deadline: Instant,
        progress: &(dyn Fn(&SweepReport) + Sync),
    ) -> SweepReport {
        self.run_deferring(accounts, resume, deadline, &|_| false, progress).await
    }

    /// `run`, but accounts for which `defer` is true are answered from the cache tiers alone:
    /// no lookup, no wait. The refresher defers the accounts its warm-up is completing at the
    /// same time (2 Organizations calls each), rather than spend 4 on each of them here.
    pub async fn run_deferring(
        &self,
        accounts: &[String],
        resume: Option<String>,
        deadline: Instant,
        defer: &(dyn Fn(&str) -> bool + Sync),
        progress: &(dyn Fn(&SweepReport) + Sync),
    ) -> SweepReport {
        let started = Instant::now();
        let mut report = SweepReport::default();
        let mut pending = Pending { resume_from: resume.clone(), ..Default::default() };
        let mut token = resume;
        let stop_reading = deadline.checked_sub(self.write_margin).unwrap_or(started);
        loop {
            if Instant::now() >= stop_reading || self.read_limit.acquire(stop_reading).await.is_err() {
                report.stopped = Some("time is up".into());
                break;
            }
            report.get_findings_calls += 1;
            let page = match self.read_page(accounts, token.clone(), stop_reading).await {
                Ok(page) => page,
                // A checkpoint's token can expire; the pass then starts over rather than stall.
                Err(WriteError::Rejected { code, .. }) if token.is_some() && report.get_findings_calls == 1 => {
                    tracing::warn!(code = %code, "the checkpoint's NextToken was refused; the pass starts over");
                    report.stopped = Some(format!("the checkpoint's NextToken was refused ({code}); starting over"));
                    report.duration_ms = started.elapsed().as_millis();
                    return report;
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "GetFindings failed; the sweep stops here");
                    report.stopped = Some(format!("GetFindings failed: {error}"));
                    break;
                }
            };
            // One directory pass per page for the accounts it brings, not one per account: a
            // page of a cold organization costs at most one lookup budget.
            let new: Vec<String> = page
                .findings
                .iter()
                .map(|f| f.aws_account_id.clone())
                .filter(|a| !pending.resolutions.contains_key(a))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let (deferred, new): (Vec<String>, Vec<String>) = new.into_iter().partition(|a| defer(a));
            if !deferred.is_empty() {
                for (account, resolution) in self.directory.cached_only(&deferred).await {
                    if matches!(resolution, Resolution::Unavailable) {
                        pending.awaiting.insert(account.clone());
                    }
                    pending.resolutions.insert(account, resolution);
                }
            }
            if !new.is_empty() {
                let (resolved, _) = self.directory.prefetch(&new, deadline).await;
                pending.resolutions.extend(resolved);
            }
            for finding in page.findings {
                report.examined += 1;
                if pending.account.as_deref() != Some(finding.aws_account_id.as_str()) {
                    self.flush(&mut pending, &mut report, deadline, true).await;
                    pending.account = Some(finding.aws_account_id.clone());
                    pending.resume_from = token.clone();
                }
                pending.findings.push(finding);
                if pending.findings.len() >= FLUSH_AT {
                    self.flush(&mut pending, &mut report, deadline, false).await;
                    pending.resume_from = token.clone();
                }
            }
            progress(&report);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let failed_before: usize = report.failed.values().sum();
        self.flush(&mut pending, &mut report, deadline, true).await;
        let flush_failed = report.failed.values().sum::<usize>() > failed_before;
        // Stopped early: everything read is written, so the next run goes on from the next page;
        // but if writing the last account failed, from where that account began (what was
        // written comes back current and costs no write), so nothing is skipped.
        report.resume_token = match report.stopped {
            None => None,
            Some(_) if flush_failed => pending.resume_from.or(token),
            Some(_) => token,
        };
        report.duration_ms = started.elapsed().as_millis();
        progress(&report);
        report
    }

    /// One page, retrying throttles (GetFindings' quota is shared with the investigator and
    /// the operator) and transient failures with backoff until `stop_reading`.
    async fn read_page(
        &self,
        accounts: &[String],
        token: Option<String>,
        stop_reading: Instant,
    ) -> Result<FindingsPage, WriteError> {
        let mut attempt = 0;
        loop {
            match self.reader.active_findings(accounts, token.clone()).await {
                Err(WriteError::Throttled { .. } | WriteError::Transient { .. }) if attempt < READ_ATTEMPTS => {
                    attempt += 1;
                    let pause = backoff(Duration::from_millis(200), attempt);
                    if Instant::now() + pause >= stop_reading {
                        return self.reader.active_findings(accounts, token).await;
                    }
                    tokio::time::sleep(pause).await;
                }
                answer => return answer,
            }
        }
    }

    /// Writes what the pending account needs; with `account_done`, adds its bound.
    async fn flush(&self, pending: &mut Pending, report: &mut SweepReport, deadline: Instant, account_done: bool) {
        let findings = std::mem::take(&mut pending.findings);
        if !findings.is_empty() {
            self.write(findings, pending, report, deadline).await;
        }
        if account_done {
            report.writes.minimum_calls += minimum_requests(pending.written.values().copied());
            pending.written.clear();
            if let Some(account) = pending.account.take() {
                pending.resolutions.remove(&account);
                pending.awaiting.remove(&account);
            }
        }
    }

    async fn write(&self, findings: Vec<Finding>, pending: &mut Pending, report: &mut SweepReport, deadline: Instant) {
        let candidates: Vec<Candidate> = findings
            .into_iter()
            .enumerate()
            .map(|(record, finding)| Candidate { record, finding, kind: EventKind::Imported })
            .collect();
        let mut eligible = Vec::with_capacity(candidates.len());
        for (i, c) in candidates.iter().enumerate() {
            if c.finding.is_archived() {
                report.count(&FindingOutcome::Skipped(SkipReason::Archived));
            } else if !is_account_id(&c.finding.aws_account_id) {
                report.count(&FindingOutcome::Skipped(SkipReason::InvalidAccountId));
            } else if pending.awaiting.contains(&c.finding.aws_account_id) {
                report.count(&FindingOutcome::Skipped(SkipReason::AwaitingWarmUp));
            } else {
                eligible.push(i);
            }
        }
        let resolutions = &pending.resolutions;
        let enrichments = account_enrichments(
            eligible.iter().map(|&i| &candidates[i].finding),
            |account| resolutions.get(account).and_then(Resolution::record),
            &self.tag_filter,
        );
        let mut to_write = Vec::with_capacity(eligible.len());
        for i in eligible {
            let f = &candidates[i].finding;
            if enrichments.get(&f.aws_account_id).is_some_and(|e| e.is_current_on(&f.user_defined_fields)) {
                report.current += 1;
            } else {
                to_write.push(i);
            }
        }
        let grouped = plan::group_updates(&candidates, &to_write, &enrichments);
        for &i in &grouped.unchanged {
            // Unchanged but not current: left `Partial` while Organizations cannot answer.
            let partial = enrichments.get(&candidates[i].finding.aws_account_id).is_some_and(|e| !e.is_complete());
            report.count(&if partial {
                FindingOutcome::Enriched { partial: true }
            } else {
                FindingOutcome::Skipped(SkipReason::Unchanged)
            });
        }
        for request in &grouped.requests {
            *pending.written.entry(Arc::clone(&request.payload)).or_default() += request.findings.len();
        }
        let (outcomes, updates) = self.updater.run(&grouped.requests, deadline).await;
        for (_, outcome) in &outcomes {
            report.count(outcome);
        }
        report.writes += WriteStats {
            updates,
            minimum_calls: 0,
            fields_dropped: grouped.fields_dropped,
            tags_dropped: enrichments.values().map(|e| e.tags_dropped).sum(),
            ..Default::default()
        };
    }
}

impl Report for SweepReport {
    fn log(&self) {
        if !self.balances() {
            tracing::error!(report = ?self, "sweep counts do not balance");
        }
        tracing::info!(
            examined = self.examined,
            current = self.current,
            enriched_complete = self.enriched_complete,
            still_partial = self.still_partial,
            skipped = ?self.skipped,
            failed = ?self.failed,
            balanced = self.balances(),
            get_findings_calls = self.get_findings_calls,
            update_calls = self.writes.updates.calls,
            minimum_update_calls = self.writes.minimum_calls,
            complete = self.complete(),
            duration_ms = self.duration_ms as u64,
            "sweep done: findings {} = current {} + enriched {} + partial {} + skipped {} + failed {}",
            self.examined,
            self.current,
            self.enriched_complete,
            self.still_partial,
            self.skipped.values().sum::<usize>(),
            self.failed.values().sum::<usize>()
        );
    }

    fn record_metrics(&self) {
        Metric::SweepFindingsExamined.count(self.examined);
        Metric::FindingsEnriched.count(self.enriched_complete + self.still_partial);
        Metric::FindingsEnrichedPartial.count(self.still_partial);
        Metric::UpdateCalls.count(self.writes.updates.findings_per_call.len());
        Metric::UpdateCallsMinimum.count(self.writes.minimum_calls);
    }
}
