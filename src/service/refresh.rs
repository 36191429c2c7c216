//! One run of the `refresher`: accounts queued for refresh first (their metadata changed, so
//! their findings are stale), then the pass over every active finding from its checkpoint, so
//! that findings older than the deployment and findings left `Partial` are completed without
//! waiting for Security Hub to send an event for them. Beside the pass, the directory is
//! warmed from the walk of the OU tree, so a cold organization costs about 2 Organizations
//! calls per account, and passes follow one another while the warm-up completes accounts.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::posture::{CompletedPass, DEFAULT_TOP_OWNERS, PassProgress, PostureCounts};
use crate::core::time::now_epoch_seconds;
use crate::ports::metadata::{LookupError, OrganizationWalk, WalkedAccount};
use crate::ports::posture::PostureStore;
use crate::ports::sweep_state::{Checkpoint, SweepState};
use crate::service::directory::{WarmReport, WarmScope};
use crate::service::pending::{Coalescer, DRAIN_PER_RUN, PendingStats};
use crate::service::pipeline::WriteStats;
use crate::service::sweep::{SweepReport, Sweeper};
use crate::telemetry::{Metric, Report};

/// GetFindings takes at most 20 values per filter field: queued accounts go 20 at a time.
pub const ACCOUNTS_PER_SWEEP: usize = 20;

pub struct Refresher {
    pub sweeper: Sweeper,
    pub state: Arc<dyn SweepState>,
    /// A new pass over every finding begins this long after the last one reached its end with
    /// nothing left `Partial` (`REFRESH_INTERVAL_MINUTES`); runs between passes only take the
    /// queue. Zero: every run passes.
    pass_interval: Duration,
    /// How passes follow one another within a run.
    pacing: Pacing,
    /// This environment's name on the run lease.
    holder: String,
    /// The walk of the OU tree: names and OU paths in about (OUs + accounts ÷ 20) calls, then
    /// 2 per uncached account, instead of about 4 per account looked up on its own. `None`: the
    /// sweep's own per-page lookups alone.
    walk: Option<Arc<dyn OrganizationWalk>>,
    /// The last walk, kept while this environment lives (at most `WALK_REUSE`), so runs that
    /// follow one another do not walk the tree again.
    walked: tokio::sync::Mutex<Option<LastWalk>>,
    /// Where each pass over every finding keeps its posture counts (`None`: not kept), and how
    /// many owners they name (`POSTURE_TOP_OWNERS`).
    posture: Option<Arc<dyn PostureStore>>,
    top_owners: usize,
    /// The pending-writes store's drainer of last resort (`service::pending`): each run drains
    /// it beside its sweeps, so findings held by the stream are written within the delay even
    /// when the stream goes quiet. `None`: coalescing is off (`PENDING_WRITE_DELAY_SECONDS=0`).
    pending: Option<Coalescer>,
}

/// When the last walk ran, and what it found (`None`: it failed).
type LastWalk = (Instant, Option<Arc<Vec<WalkedAccount>>>);

/// How long one walk of the OU tree (or its failure) serves later runs of the same environment.
/// An account moved meanwhile is queued by account-events and looked up afresh (queued accounts
/// come first, and the warm-up skips what is cached), so this bounds new accounts' wait for a
/// walk, not the freshness of moved ones.
pub const WALK_REUSE: Duration = Duration::from_secs(3600);

/// A queue of more accounts than this is served by the pass over every finding (see
/// `run_leased`): five sweeps of 20.
pub const QUEUE_SWEEP_LIMIT: usize = 5 * ACCOUNTS_PER_SWEEP;

/// How passes follow one another within a run.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Another pass begins in the same run only with at least this much time left.
    pub min_time_for_a_pass: Duration,
    /// Between passes while the warm-up is still completing accounts.
    pub pause: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing { min_time_for_a_pass: Duration::from_secs(60), pause: Duration::from_secs(30) }
    }
}

/// What a run's passes go over.
enum Scope<'a> {
    /// Every finding, from the refresher's checkpoint, which the passes move on; the warm-up
    /// completes the `queued` accounts (those with findings waiting) before the others.
    Organization { checkpoint: Option<Checkpoint>, queued: &'a [String] },
    /// Every finding, from the start, the checkpoint left alone (the operator's sweep).
    Everything,
    /// These accounts' findings (at most 20), the checkpoint left alone.
    Accounts(&'a [String]),
}

/// What a run did: which kind of sweep, and its report.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// Accounts queued as the run began.
    pub queued: usize,
    /// The accounts this run refreshed (empty: the pass over every finding).
    pub accounts: Vec<String>,
    /// What warming the directory from the walk of the OU tree did beside the pass.
    pub warm: Option<WarmReport>,
    /// Why the walk failed (the sweep went on with its own lookups).
    pub warm_error: Option<String>,
    /// Why this run did nothing: another run holds the lease, or no pass is due and the queue
    /// is empty.
    pub idle: Option<&'static str>,
    pub sweep: SweepReport,
    /// The (last) pass over every finding reached its end in this run.
    pub pass_complete: bool,
    /// Passes after the first that this run began because findings were left `Partial`.
    pub extra_passes: usize,
    /// Findings the last pass of this run left short of complete.
    pub last_pass_incomplete: usize,
    /// A state read or write failed; the next run does this work again.
    pub state_error: Option<String>,
    /// The posture counts of the last pass over every finding this run completed.
    #[serde(skip)]
    pub posture: Option<CompletedPass>,
    /// Storing or reading the posture counts failed (the sweep itself went on).
    pub posture_error: Option<String>,
    /// What the drain of the pending-writes store beside the run wrote, and what the store's
    /// requests cost (nothing is held here).
    pub pending: PendingStats,
    /// The drain's writes (the sweeps' are in `sweep`).
    pub pending_writes: WriteStats,
}

impl RefreshReport {
    /// A run that has done nothing yet, with `queued` accounts waiting as it began.
    fn nothing_yet(queued: usize) -> Self {
        RefreshReport {
            queued,
            accounts: Vec::new(),
            warm: None,
            warm_error: None,
            idle: None,
            sweep: SweepReport::default(),
            pass_complete: false,
            extra_passes: 0,
            last_pass_incomplete: 0,
            state_error: None,
            posture: None,
            posture_error: None,
            pending: PendingStats::default(),
            pending_writes: WriteStats::default(),
        }
    }
}

impl Refresher {
    pub fn new(sweeper: Sweeper, state: Arc<dyn SweepState>, walk: Option<Arc<dyn OrganizationWalk>>) -> Self {
        let holder = format!("{:016x}", rand::random::<u64>());
        Refresher {
            sweeper,
            state,
            pass_interval: Duration::ZERO,
            pacing: Pacing::default(),
            holder,
            walk,
            walked: tokio::sync::Mutex::new(None),
            posture: None,
            top_owners: DEFAULT_TOP_OWNERS,
            pending: None,
        }
    }

    /// Drains the pending-writes store beside each run (see `pending`).
    pub fn with_pending(mut self, coalescer: Coalescer) -> Self {
        self.pending = Some(coalescer);
        self
    }

    /// Paces passes otherwise than a deployment does (the simulator runs its clock faster).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Keeps each pass's posture counts in `store`, naming the `top_owners` owners with the
    /// most open findings (the rest are `other`).
    pub fn with_posture(mut self, store: Arc<dyn PostureStore>, top_owners: usize) -> Self {
        self.posture = Some(store);
        self.top_owners = top_owners;
        self
    }

    /// Begins a new pass over every finding only this long after the last one finished.
    pub fn with_pass_interval(mut self, interval: Duration) -> Self {
        self.pass_interval = interval;
        self
    }

    /// One scheduled run, under the run lease: the schedule fires every minute, so that the
    /// queue (accounts the stream could not resolve, accounts that changed) is taken within a
    /// minute or two, and a run that ends at Lambda's timeout is followed at once; the lease
    /// keeps two runs from ever overlapping.
    ///
    /// Beside it, for at most `DRAIN_PER_RUN` (a little over the minute between runs), the
    /// findings waiting in the pending-writes store, through the sweep's directory and pipeline
    /// (background work on the quota). The drain runs even when the sweeps have nothing to do.
    pub async fn run(&self, deadline: Instant, progress: &(dyn Fn(&SweepReport) + Sync)) -> RefreshReport {
        let drain_until = deadline.min(Instant::now() + DRAIN_PER_RUN);
        let (mut report, (pending, writes)) =
            tokio::join!(self.run_sweeps(deadline, progress), self.drain_pending(drain_until));
        report.pending = pending;
        report.pending_writes = writes;
        report
    }

    /// The drain of the pending-writes store, until `until` or nothing waits: through the
    /// sweep's directory and pipeline, as background work on the quota. Nothing when
    /// coalescing is off.
    pub async fn drain_pending(&self, until: Instant) -> (PendingStats, WriteStats) {
        let Some(coalescer) = &self.pending else { return Default::default() };
        let before = coalescer.usage();
        let (drained, writes) =
            coalescer.drain_while_waiting(&self.sweeper.directory, &self.sweeper.pipeline, until).await;
        let stats = PendingStats { drained, store: coalescer.usage_since(before), ..PendingStats::default() };
        (stats, writes)
    }

    async fn run_sweeps(&self, deadline: Instant, progress: &(dyn Fn(&SweepReport) + Sync)) -> RefreshReport {
        let now = now_epoch_seconds();
        let until = now + deadline.saturating_duration_since(Instant::now()).as_secs() as i64 + 1;
        match self.state.take_lease(&self.holder, now, until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("another refresher run holds the lease; this one does nothing");
                return RefreshReport { idle: Some("another run holds the lease"), ..RefreshReport::nothing_yet(0) };
            }
            Err(error) => return self.failed_state(error_chain(&error)),
        }
        let report = Box::pin(self.run_leased(deadline, progress)).await;
        if let Err(error) = self.state.release_lease(&self.holder).await {
            // It expires by itself at the run's deadline.
            tracing::warn!(error = %error_chain(&error), "the run lease was not given back");
        }
        report
    }

    async fn run_leased(&self, deadline: Instant, progress: &(dyn Fn(&SweepReport) + Sync)) -> RefreshReport {
        let queued = match self.state.queued().await {
            Ok(queued) => queued,
            Err(error) => return self.failed_state(error_chain(&error)),
        };
        // A queue longer than a few sweeps (a cold start: the stream queued most of the
        // organization) is served by the pass over every finding instead, whose warm-up walks the
        // tree: about 2 Organizations calls an account instead of about 4, and one read of each
        // finding instead of a sweep per 20 accounts. The queue is emptied when that pass ends
        // with nothing left Partial.
        let by_pass = queued.len() > QUEUE_SWEEP_LIMIT;
        if !queued.is_empty() && !by_pass {
            // The whole queue, 20 accounts a sweep, while time lasts (an OU move of a hundred
            // accounts is one run, not five); the pass over every finding waits for an empty queue.
            let (mut accounts, mut sweep, mut state_error) = (Vec::new(), SweepReport::default(), None);
            for chunk in queued.chunks(ACCOUNTS_PER_SWEEP) {
                let chunk_sweep = Box::pin(self.sweeper.run(chunk, None, deadline, progress)).await;
                let complete = chunk_sweep.complete();
                accounts.extend_from_slice(chunk);
                sweep += chunk_sweep;
                if !complete {
                    break;
                }
                // Off the queue once every finding of theirs was read. A finding whose write
                // failed is still stale (its fingerprint is the old one), so the pass over every
                // finding picks it up: an account that keeps failing never holds the queue.
                if let Err(error) = self.state.dequeue(chunk).await {
                    state_error = Some(error_chain(&error));
                    break;
                }
            }
            return RefreshReport { accounts, sweep, state_error, ..RefreshReport::nothing_yet(queued.len()) };
        }
        let checkpoint = match self.state.checkpoint().await {
            Ok(checkpoint) => checkpoint,
            Err(error) => return self.failed_state(error_chain(&error)),
        };
        if checkpoint.is_none() && !by_pass && !self.pass_interval.is_zero() {
            let due = match self.state.last_pass_completed().await {
                Ok(last) => last.is_none_or(|at| now_epoch_seconds() - at >= self.pass_interval.as_secs() as i64),
                Err(error) => return self.failed_state(error_chain(&error)),
            };
            if !due {
                return RefreshReport {
                    idle: Some("no pass is due and the queue is empty"),
                    ..RefreshReport::nothing_yet(0)
                };
            }
        }
        let scope = Scope::Organization { checkpoint, queued: &queued };
        let mut report = Box::pin(self.passes(scope, deadline, progress)).await;
        report.queued = queued.len();
        if by_pass
            && report.pass_complete
            && report.last_pass_incomplete == 0
            && let Err(error) = self.state.dequeue(&queued).await
        {
            report.state_error = Some(error_chain(&error));
        }
        report
    }

    /// The operator's sweep (`enricher-admin sweep`): the same loop as a run (the warm-up from
    /// the walk beside the pass, passes repeated while findings stay `Partial` and progress is
    /// made), over every finding or over these accounts' (20 at a time), until `deadline`. It
    /// neither reads nor moves the refresher's checkpoint, and leaves the queue alone.
    pub async fn complete(
        &self,
        accounts: &[String],
        deadline: Instant,
        progress: &(dyn Fn(&SweepReport) + Sync),
    ) -> RefreshReport {
        if accounts.is_empty() {
            return Box::pin(self.passes(Scope::Everything, deadline, progress)).await;
        }
        let mut total = RefreshReport::nothing_yet(0);
        for chunk in accounts.chunks(ACCOUNTS_PER_SWEEP) {
            let report = Box::pin(self.passes(Scope::Accounts(chunk), deadline, progress)).await;
            let finished = report.pass_complete;
            total.accounts.extend(report.accounts);
            total.sweep += report.sweep;
            total.extra_passes += report.extra_passes;
            total.pass_complete = finished;
            if !finished {
                break;
            }
        }
        total
    }

    /// The pass over every finding from `checkpoint`, and beside it the warm-up: the accounts
    /// the walk found and the cache does not hold are completed (2 calls each) while the pass
    /// runs, and the pass answers those accounts from the cache alone rather than look them up
    /// again (4 calls each). A pass that leaves findings `Partial` is followed by another while
    /// the warm-up goes on, and once more after it; so one run spends its whole time, and the
    /// Organizations budget, on completing them.
    async fn passes(
        &self,
        scope: Scope<'_>,
        deadline: Instant,
        progress: &(dyn Fn(&SweepReport) + Sync),
    ) -> RefreshReport {
        let mut report = RefreshReport::nothing_yet(0);
        // Posture is counted by passes over every finding, not by sweeps of a few accounts.
        let counting = self.posture.is_some() && !matches!(scope, Scope::Accounts(_));
        let (accounts, mut checkpoint, saving, queued) = match scope {
            Scope::Organization { checkpoint, queued } => (&[][..], checkpoint, true, queued),
            Scope::Everything => (&[][..], None, false, &[][..]),
            Scope::Accounts(accounts) => (accounts, None, false, &[][..]),
        };
        report.accounts = accounts.to_vec();
        // The walk warms the whole organization: worth it for a pass over every finding only.
        let walking = accounts.is_empty();
        let walked = match Box::pin(async { if walking { self.walked(deadline).await } else { Ok(None) } }).await {
            Ok(walked) => walked,
            Err(error) => {
                let error = error_chain(&error);
                tracing::warn!(error = %error, "the walk of the OU tree failed; the sweep looks accounts up itself");
                report.warm_error = Some(error);
                None
            }
        };
        let warming = AtomicBool::new(walked.is_some());
        let walked_ids: HashSet<&str> = walked.iter().flat_map(|w| w.iter().map(|a| a.account_id.as_str())).collect();
        let warm = async {
            let (walk, accounts) = (self.walk.as_ref()?, walked.as_ref()?);
            let until = deadline.checked_sub(self.sweeper.write_margin).unwrap_or(deadline);
            // Accounts with findings waiting first (a cold start queues them all): the findings
            // are complete once those are, not once the whole organization is.
            let waiting: HashSet<&str> = queued.iter().map(String::as_str).collect();
            let mut accounts = accounts.to_vec();
            accounts.sort_by_key(|a| !waiting.contains(a.account_id.as_str()));
            let warmed = self.sweeper.directory.warm_walked(walk.as_ref(), accounts, WarmScope::Uncached, until).await;
            // Accounts the warm-up did not reach before the deadline stay left to the next run's
            // warm-up (2 calls each): a last pass that looked them up itself would start lookups
            // of about 4 calls each that outlive the run and compete with that warm-up.
            if warmed.not_reached == 0 {
                warming.store(false, Ordering::Release);
            }
            Some(warmed)
        };
        let defer = |account: &str| warming.load(Ordering::Acquire) && walked_ids.contains(account);
        let mut counted = if counting { self.counted_so_far(checkpoint.as_ref(), &mut report).await } else { None };
        let sweeps = async {
            let mut after_warm = 0;
            loop {
                let pass_started_at = checkpoint.as_ref().map_or_else(now_epoch_seconds, |c| c.pass_started_at);
                let resume = checkpoint.take().map(|c| c.next_token);
                let mut sweep =
                    Box::pin(self.sweeper.run_deferring(accounts, resume, deadline, &defer, progress)).await;
                let next = sweep.resume_token.clone().map(|next_token| Checkpoint { next_token, pass_started_at });
                // A pass that reached its end starts again from the first page next time.
                report.pass_complete = next.is_none() && sweep.complete();
                if saving && let Err(error) = self.state.save_checkpoint(next.as_ref()).await {
                    report.state_error = Some(error_chain(&error));
                }
                if counting {
                    let part = std::mem::take(&mut sweep.posture);
                    self.count(&mut counted, part, pass_started_at, next.is_some(), saving, &mut report).await;
                }
                let (partial, completed) = (sweep.incomplete(), sweep.enriched_complete);
                report.last_pass_incomplete = partial;
                report.sweep += sweep;
                // A pass that reached its end with nothing left short of complete: the next one
                // waits for the interval. One that left findings Partial does not count, so the
                // next run passes again.
                if saving
                    && report.pass_complete
                    && partial == 0
                    && let Err(error) = self.state.record_pass_completed(now_epoch_seconds()).await
                {
                    report.state_error = Some(error_chain(&error));
                }
                let still_warming = warming.load(Ordering::Acquire);
                if !still_warming {
                    after_warm += 1;
                }
                let time_left = deadline.saturating_duration_since(Instant::now());
                // While the warm-up goes on; after it, once more, then only while passes make
                // progress (so an Organizations outage costs one extra pass, not a spin).
                let another = report.pass_complete
                    && report.state_error.is_none()
                    && partial > 0
                    && time_left > self.pacing.min_time_for_a_pass
                    && (still_warming || after_warm <= 1 || completed > 0);
                if !another {
                    break;
                }
                if still_warming {
                    tokio::time::sleep(self.pacing.pause.min(time_left - self.pacing.min_time_for_a_pass)).await;
                }
                report.extra_passes += 1;
            }
        };
        // Boxed: both futures are large, and the two side by side would not fit a 2 MB stack.
        let (warmed, ()) = tokio::join!(Box::pin(warm), Box::pin(sweeps));
        report.warm = warmed;
        report
    }

    /// The walk of the OU tree, reused within `WALK_REUSE`; `None` without a walk, or within
    /// `WALK_REUSE` of a walk that failed. A walk may take half the run: one that cannot finish
    /// in that time (an organization too large for the budget) is not retried every run, which
    /// would spend the whole budget on walks; its accounts are looked up one by one instead.
    async fn walked(&self, deadline: Instant) -> Result<Option<Arc<Vec<WalkedAccount>>>, LookupError> {
        let Some(walk) = &self.walk else { return Ok(None) };
        let mut last = self.walked.lock().await;
        if let Some((at, accounts)) = last.as_ref()
            && at.elapsed() < WALK_REUSE
        {
            return Ok(accounts.clone());
        }
        let now = Instant::now();
        let until = now + deadline.saturating_duration_since(now) / 2;
        match walk.walk(until).await {
            Ok(accounts) => {
                let accounts = Arc::new(accounts);
                *last = Some((Instant::now(), Some(accounts.clone())));
                Ok(Some(accounts))
            }
            Err(error) => {
                *last = Some((Instant::now(), None));
                Err(error)
            }
        }
    }

    /// What the pass from `checkpoint` has counted so far: nothing at the start of a pass; the
    /// stored progress of the same pass when resuming; `None` (not countable) when that is
    /// missing, so counts that miss part of a pass are never stored as the pass's.
    async fn counted_so_far(
        &self,
        checkpoint: Option<&Checkpoint>,
        report: &mut RefreshReport,
    ) -> Option<PostureCounts> {
        let (Some(store), Some(checkpoint)) = (&self.posture, checkpoint) else {
            return Some(PostureCounts::default());
        };
        match store.progress().await {
            Ok(Some(progress)) if progress.started_at == checkpoint.pass_started_at => Some(progress.counts),
            Ok(_) => {
                tracing::warn!("the running pass's posture counts so far are missing; this pass's are not kept");
                None
            }
            Err(error) => {
                report.posture_error = Some(error_chain(&error));
                None
            }
        }
    }

    /// Adds a run's part of the pass to its counts, then keeps them: as the pass's counts
    /// (bounded) when it reached its end, as its progress (`saving`: the refresher's pass) when
    /// it goes on; a pass started over counts from nothing again.
    async fn count(
        &self,
        counted: &mut Option<PostureCounts>,
        part: PostureCounts,
        started_at: i64,
        goes_on: bool,
        saving: bool,
        report: &mut RefreshReport,
    ) {
        let Some(store) = &self.posture else { return };
        let now = now_epoch_seconds();
        let saved = if report.pass_complete {
            let whole = counted.take().map(|mut counts| {
                counts.merge(part);
                CompletedPass { started_at, completed_at: now, counts: counts.bounded(self.top_owners) }
            });
            *counted = Some(PostureCounts::default());
            let mut saved = Ok(());
            if let Some(pass) = whole {
                saved = store.save_pass(&pass).await;
                report.posture = Some(pass);
            }
            match saved {
                Ok(()) if saving => store.save_progress(None).await,
                other => other,
            }
        } else if goes_on {
            let Some(counts) = counted.as_mut() else { return };
            counts.merge(part);
            if !saving {
                return;
            }
            store.save_progress(Some(&PassProgress { started_at, updated_at: now, counts: counts.clone() })).await
        } else {
            // Stopped without a checkpoint to go on from: the next pass starts over.
            *counted = Some(PostureCounts::default());
            if !saving {
                return;
            }
            store.save_progress(None).await
        };
        if let Err(error) = saved {
            let error = error_chain(&error);
            tracing::warn!(error = %error, "the posture counts were not stored");
            report.posture_error = Some(error);
        }
    }

    fn failed_state(&self, error: String) -> RefreshReport {
        tracing::error!(error = %error, "the sweep's state in the cache table could not be read");
        RefreshReport { state_error: Some(error), ..RefreshReport::nothing_yet(0) }
    }
}

impl Report for RefreshReport {
    fn log(&self) {
        let drained = &self.pending.drained;
        if drained.accounts > 0 || drained.store_errors > 0 {
            tracing::info!(
                accounts = drained.accounts,
                written = drained.written,
                failed = drained.failed,
                claimed_elsewhere = drained.claimed_elsewhere,
                store_errors = drained.store_errors,
                update_calls = self.pending_writes.updates.calls,
                minimum_update_calls = self.pending_writes.minimum_calls,
                store_write_units = self.pending.store.map(|s| s.write_units),
                store_read_units = self.pending.store.map(|s| s.read_units),
                "pending writes drained"
            );
        }
        if let Some(idle) = self.idle {
            tracing::info!(queued = self.queued, "refresher run: nothing to do ({idle})");
            return;
        }
        if let Some(error) = &self.state_error {
            tracing::error!(error = %error, "the sweep's state was not updated; the next run repeats this work");
        }
        if let Some(warm) = &self.warm {
            tracing::info!(
                accounts = warm.accounts,
                already_cached = warm.already_cached,
                cached = warm.cached,
                failed = warm.failed,
                not_reached = warm.not_reached,
                "directory warmed from the OU tree as the pass began"
            );
        }
        tracing::info!(
            queued = self.queued,
            accounts = self.accounts.len(),
            pass_complete = self.pass_complete,
            extra_passes = self.extra_passes,
            resumes = self.sweep.resume_token.is_some(),
            "refresher run: {}",
            if self.accounts.is_empty() { "pass over every active finding" } else { "queued accounts" }
        );
        self.sweep.log();
        if let Some(pass) = &self.posture {
            use crate::core::posture::Severity;
            let c = &pass.counts;
            tracing::info!(
                findings = c.total,
                complete = c.complete,
                partial = c.partial,
                stale = c.stale,
                open_critical = c.open(Severity::Critical),
                open_high = c.open(Severity::High),
                unowned = c.unowned(),
                owners = c.by_owner.len(),
                "pass posture counted and kept for enricher-admin report"
            );
        }
    }

    fn record_metrics(&self) {
        Metric::RefreshQueueDepth.observe(self.queued as f64);
        Metric::RefreshRunsCompleted.count(usize::from(self.state_error.is_none()));
        Metric::AccountsWarmed.count(self.warm.as_ref().map_or(0, |w| w.cached));
        self.sweep.record_metrics();
        self.pending.record_metrics();
        self.pending_writes.record_metrics();
    }
}
