//! The sweep: every active finding of both hubs that needs work (never enriched, `Partial`, or
//! enriched from metadata that has since changed) served through the same pipeline as the
//! stream. Security Hub CSPM's findings (GetFindings), then the new hub's (GetFindingsV2), each
//! paged in account order, so one account's findings are grouped together across pages and the
//! writes stay at Σ⌈n/100⌉. Used by `enricher-admin sweep` and the `refresher` Lambda, which keeps
//! a checkpoint so a sweep of a million findings spans runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::event::{Candidate, EventKind};
use crate::core::finding::{Finding, Hub};
use crate::core::outcome::{FindingOutcome, SkipReason};
use crate::core::plan::{self, Origin};
use crate::core::posture::{Placement, PostureCounts, Standing};
use crate::limits::{Limiter, backoff};
use crate::ports::findings::{FindingsPage, FindingsReader, WriteError};
use crate::service::directory::{Directory, Resolution};
use crate::service::pipeline::{Pipeline, WriteStats};
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
    /// Rendering, currency, writes and events: the same pipeline as the stream's.
    pub pipeline: Pipeline,
    /// GetFindings and GetFindingsV2: this sweep's share of the read quota (see `quotas`).
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
    /// GetFindings and GetFindingsV2 calls (pages read).
    pub get_findings_calls: usize,
    /// Of `examined`, the new hub's (OCSF) findings.
    pub examined_v2: usize,
    pub writes: WriteStats,
    /// Where the next run goes on; `None` when the sweep reached the last page.
    pub resume_token: Option<String>,
    /// Why it stopped before the end, if it did.
    pub stopped: Option<String>,
    pub duration_ms: u128,
    /// Every examined finding counted by owner, environment, criticality and OU path as its
    /// account's rendering places it, and by where the run left it (`core::posture`).
    #[serde(skip)]
    pub posture: PostureCounts,
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
            FindingOutcome::Enriched { partial: true }
            | FindingOutcome::Skipped(SkipReason::StillPartial)
            | FindingOutcome::Deferred => self.still_partial += 1,
            FindingOutcome::Skipped(SkipReason::Current) => self.current += 1,
            // Only the stream holds findings back; a sweep writes what it reads.
            FindingOutcome::Pending => *self.skipped.entry("pending".to_owned()).or_default() += 1,
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
        self.examined_v2 += later.examined_v2;
        self.writes += later.writes;
        self.resume_token = later.resume_token;
        self.stopped = later.stopped;
        self.duration_ms += later.duration_ms;
        self.posture.merge(later.posture);
    }
}

/// Where a sweep stands: which hub's findings it is reading, and the page token there.
/// Security Hub CSPM's findings come first, then the new hub's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub hub: Hub,
    pub token: Option<String>,
}

/// Marks a position in the new hub's findings in a checkpoint's token; a token without it is
/// Security Hub CSPM's (as checkpoints written before the sweep read both hubs are).
const V2_MARK: &str = "v2:";

impl Position {
    pub const START: Position = Position { hub: Hub::Cspm, token: None };

    /// The position a resume token (`SweepReport::resume_token`, a checkpoint) names.
    pub fn parse(token: Option<String>) -> Position {
        match token {
            None => Position::START,
            Some(t) => match t.strip_prefix(V2_MARK) {
                Some(rest) => Position { hub: Hub::V2, token: (!rest.is_empty()).then(|| rest.to_owned()) },
                None => Position { hub: Hub::Cspm, token: Some(t) },
            },
        }
    }

    /// The resume token for this position; `None` only for the very start.
    pub fn encode(&self) -> Option<String> {
        match (self.hub, &self.token) {
            (Hub::Cspm, token) => token.clone(),
            (Hub::V2, token) => Some(format!("{V2_MARK}{}", token.as_deref().unwrap_or_default())),
        }
    }

    /// The position after a page whose next token is `next`: the hub's next page, the new
    /// hub's first after CSPM's last, `None` after the new hub's last.
    fn after(&self, next: Option<String>) -> Option<Position> {
        match (self.hub, next) {
            (hub, Some(token)) => Some(Position { hub, token: Some(token) }),
            (Hub::Cspm, None) => Some(Position { hub: Hub::V2, token: None }),
            (Hub::V2, None) => None,
        }
    }
}

/// The findings of one account collected so far.
#[derive(Default)]
struct Pending {
    account: Option<(Hub, String)>,
    findings: Vec<Finding>,
    /// The position from which this account's findings can all be read again.
    resume_from: Option<Position>,
    /// What the directory said of the accounts of the pages read, asked once per page, kept
    /// for the run: an account's findings on the new hub are resolved as its CSPM ones were.
    /// (One entry per account of the organization at most.)
    resolutions: HashMap<String, Resolution>,
    /// Deferred accounts the cache could not answer: their findings wait for the next pass.
    awaiting: HashSet<String>,
}

impl Sweeper {
    /// Sweeps the active findings of `accounts` (every account when empty) on both hubs, from
    /// `resume` (a resume token of an earlier run) or the start, until the last page or
    /// `deadline`.
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
        let resuming = resume.is_some();
        let mut position = Some(Position::parse(resume));
        let mut pending = Pending { resume_from: position.clone(), ..Default::default() };
        let stop_reading = deadline.checked_sub(self.write_margin).unwrap_or(started);
        while let Some(at) = position.clone() {
            if Instant::now() >= stop_reading || self.read_limit.acquire(stop_reading).await.is_err() {
                report.stopped = Some("time is up".into());
                break;
            }
            report.get_findings_calls += 1;
            let page = match self.read_page(&at, accounts, stop_reading).await {
                Ok(page) => page,
                // A checkpoint's token can expire; the pass then starts over rather than stall.
                Err(WriteError::Rejected { code, .. }) if resuming && report.get_findings_calls == 1 => {
                    tracing::warn!(code = %code, "the checkpoint's NextToken was refused; the pass starts over");
                    report.stopped = Some(format!("the checkpoint's NextToken was refused ({code}); starting over"));
                    report.duration_ms = started.elapsed().as_millis();
                    return report;
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), hub = ?at.hub, "reading findings failed; the sweep stops here");
                    report.stopped = Some(format!("reading findings failed: {error}"));
                    break;
                }
            };
            Box::pin(self.resolve_page(&page.findings, &mut pending, deadline, defer)).await;
            for finding in page.findings {
                report.examined += 1;
                if at.hub == Hub::V2 {
                    report.examined_v2 += 1;
                }
                let key = (at.hub, finding.aws_account_id.clone());
                if pending.account.as_ref() != Some(&key) {
                    self.flush(&mut pending, &mut report, deadline).await;
                    pending.account = Some(key);
                    pending.resume_from = Some(at.clone());
                }
                pending.findings.push(finding);
                if pending.findings.len() >= FLUSH_AT {
                    self.flush(&mut pending, &mut report, deadline).await;
                    pending.resume_from = Some(at.clone());
                }
            }
            progress(&report);
            position = at.after(page.next_token);
        }
        let failed_before: usize = report.failed.values().sum();
        self.flush(&mut pending, &mut report, deadline).await;
        let flush_failed = report.failed.values().sum::<usize>() > failed_before;
        // Stopped early: everything read is written, so the next run goes on from the next page;
        // but if writing the last account failed, from where that account began (what was
        // written comes back current and costs no write), so nothing is skipped.
        let resume_at = match report.stopped {
            None => None,
            Some(_) if flush_failed => pending.resume_from.or(position),
            Some(_) => position,
        };
        report.resume_token = resume_at.and_then(|p| p.encode());
        report.duration_ms = started.elapsed().as_millis();
        progress(&report);
        report
    }

    /// Asks the directory once per page for the accounts it brings, not once per account: a
    /// page of a cold organization costs at most one lookup wait.
    async fn resolve_page(
        &self,
        findings: &[Finding],
        pending: &mut Pending,
        deadline: Instant,
        defer: &(dyn Fn(&str) -> bool + Sync),
    ) {
        let new: Vec<String> = findings
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
    }

    /// One page, retrying throttles (the read quota is shared with the investigator and the
    /// operator) and transient failures with backoff until `stop_reading`.
    async fn read_page(
        &self,
        at: &Position,
        accounts: &[String],
        stop_reading: Instant,
    ) -> Result<FindingsPage, WriteError> {
        let mut attempt = 0;
        loop {
            match self.reader.active_findings(at.hub, accounts, at.token.clone()).await {
                Err(WriteError::Throttled { .. } | WriteError::Transient { .. }) if attempt < READ_ATTEMPTS => {
                    attempt += 1;
                    let pause = backoff(Duration::from_millis(200), attempt);
                    if Instant::now() + pause >= stop_reading {
                        return self.reader.active_findings(at.hub, accounts, at.token.clone()).await;
                    }
                    tokio::time::sleep(pause).await;
                }
                answer => return answer,
            }
        }
    }

    /// Writes what the pending account needs.
    async fn flush(&self, pending: &mut Pending, report: &mut SweepReport, deadline: Instant) {
        let findings = std::mem::take(&mut pending.findings);
        if !findings.is_empty() {
            self.write(findings, pending, report, deadline).await;
        }
    }

    /// Screens the findings as read from the hub and serves the others through the pipeline.
    async fn write(&self, findings: Vec<Finding>, pending: &mut Pending, report: &mut SweepReport, deadline: Instant) {
        let candidates: Vec<Candidate> = findings
            .into_iter()
            .enumerate()
            .map(|(record, finding)| Candidate { record, finding, kind: EventKind::Imported })
            .collect();
        let mut eligible = Vec::with_capacity(candidates.len());
        let mut standings: Vec<Option<Standing>> = vec![None; candidates.len()];
        for (i, c) in candidates.iter().enumerate() {
            let screened = match plan::screen(&c.finding, Origin::Hub) {
                Some(reason) => Some(FindingOutcome::Skipped(reason)),
                None if pending.awaiting.contains(&c.finding.aws_account_id) => {
                    Some(FindingOutcome::Skipped(SkipReason::AwaitingWarmUp))
                }
                None => None,
            };
            match screened {
                Some(outcome) => {
                    standings[i] = Some(Standing::of(&outcome));
                    report.count(&outcome);
                }
                None => eligible.push(i),
            }
        }
        let resolutions = &pending.resolutions;
        let known = |account: &str| resolutions.get(account).and_then(Resolution::record);
        // Boxed: the pipeline's future is large, and a sweep's stack is deep already.
        let served = Box::pin(self.pipeline.serve(&candidates, &eligible, known, None, deadline)).await;
        for (i, outcome) in &served.outcomes {
            standings[*i] = Some(Standing::of(outcome));
            report.count(outcome);
        }
        report.writes += served.stats;
        // Posture: each finding where the account's rendering places it (the same rendering,
        // from the same resolutions, as the pipeline wrote; no request), whatever its outcome.
        let enrichments = self.pipeline.rendering.enrichments(candidates.iter().map(|c| &c.finding), known);
        for (c, standing) in candidates.iter().zip(standings) {
            let place = enrichments.get(&c.finding.aws_account_id).map(Placement::of).unwrap_or_default();
            report.posture.count(&c.finding, &place, standing.unwrap_or(Standing::Stale));
        }
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
        self.writes.record_metrics();
    }
}
