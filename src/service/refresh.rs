//! One run of the `refresher`: accounts queued for refresh first (their metadata changed, so
//! their findings are stale), then the pass over every active finding from its checkpoint, so
//! that findings older than the deployment and findings left `Partial` are completed without
//! waiting for Security Hub to send an event for them.

use std::sync::Arc;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::time::now_epoch_seconds;
use crate::ports::metadata::{OrganizationWalk, WalkedAccount};
use crate::ports::sweep_state::{Checkpoint, SweepState};
use crate::service::directory::{WarmReport, WarmScope};
use crate::service::sweep::{SweepReport, Sweeper};
use crate::telemetry::{Metric, Report};

/// GetFindings takes at most 20 values per filter field: queued accounts go 20 at a time.
pub const ACCOUNTS_PER_SWEEP: usize = 20;

pub struct Refresher {
    pub sweeper: Sweeper,
    pub state: Arc<dyn SweepState>,
    /// Walks the OU tree as a pass begins, so the pass finds the directory warm at about
    /// (OUs + accounts ÷ 20) + 2 per uncached account Organizations calls instead of about 4
    /// per account. `None`: the sweep's own per-page lookups alone.
    pub walk: Option<Arc<dyn OrganizationWalk>>,
}

/// Of the time a run has left as a pass begins, the share the warm-up may take; the rest is
/// the sweep's. A warm-up cut short is not repeated: the pass goes on from its checkpoint and
/// the sweep looks up what the walk did not reach.
const WARM_SHARE: f64 = 0.5;

/// Another pass begins in the same run only with at least this much time left.
const MIN_TIME_FOR_A_PASS: std::time::Duration = std::time::Duration::from_secs(60);

/// What a run did: which kind of sweep, and its report.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// Accounts queued as the run began.
    pub queued: usize,
    /// The accounts this run refreshed (empty: the pass over every finding).
    pub accounts: Vec<String>,
    /// What warming the directory from the walk of the OU tree did, when this run began a pass.
    pub warm: Option<WarmReport>,
    /// Why the walk failed (the sweep went on with its own lookups).
    pub warm_error: Option<String>,
    pub sweep: SweepReport,
    /// The (last) pass over every finding reached its end in this run.
    pub pass_complete: bool,
    /// Passes after the first that this run began because findings were left `Partial`.
    pub extra_passes: usize,
    /// A state read or write failed; the next run does this work again.
    pub state_error: Option<String>,
}

impl Refresher {
    pub async fn run(&self, deadline: Instant, progress: &(dyn Fn(&SweepReport) + Sync)) -> RefreshReport {
        let queued = match self.state.queued().await {
            Ok(queued) => queued,
            Err(error) => return self.failed_state(error_chain(&error)),
        };
        if !queued.is_empty() {
            // The whole queue, 20 accounts a sweep, while time lasts (an OU move of a hundred
            // accounts is one run, not five); the pass over every finding waits for an empty queue.
            let (mut accounts, mut sweep, mut state_error) = (Vec::new(), SweepReport::default(), None);
            for chunk in queued.chunks(ACCOUNTS_PER_SWEEP) {
                let chunk_sweep = self.sweeper.run(chunk, None, deadline, progress).await;
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
            return RefreshReport {
                queued: queued.len(),
                accounts,
                warm: None,
                warm_error: None,
                sweep,
                pass_complete: false,
                extra_passes: 0,
                state_error,
            };
        }
        let checkpoint = match self.state.checkpoint().await {
            Ok(checkpoint) => checkpoint,
            Err(error) => return self.failed_state(error_chain(&error)),
        };
        self.passes(checkpoint, deadline, progress).await
    }

    /// The pass over every finding from `checkpoint`. A pass begins with the walk of the OU
    /// tree; a pass that ends with findings still `Partial` while Organizations is answering is
    /// followed by another one in the same run, so the run spends its whole time (and the
    /// Organizations budget) on completing them rather than idling until the next schedule.
    async fn passes(
        &self,
        mut checkpoint: Option<Checkpoint>,
        deadline: Instant,
        progress: &(dyn Fn(&SweepReport) + Sync),
    ) -> RefreshReport {
        let mut report = RefreshReport {
            queued: 0,
            accounts: Vec::new(),
            warm: None,
            warm_error: None,
            sweep: SweepReport::default(),
            pass_complete: false,
            extra_passes: 0,
            state_error: None,
        };
        // The walk's accounts, walked once per run however many passes it holds.
        let mut walked: Option<Vec<WalkedAccount>> = None;
        loop {
            let mut warmed_now = 0;
            if checkpoint.is_none()
                && report.warm_error.is_none()
                && let Some(walk) = &self.walk
            {
                let now = Instant::now();
                let warm_until = now + deadline.saturating_duration_since(now).mul_f64(WARM_SHARE);
                if walked.is_none() {
                    match walk.walk(warm_until).await {
                        Ok(accounts) => walked = Some(accounts),
                        Err(error) => {
                            let error = error_chain(&error);
                            tracing::warn!(error = %error, "the walk of the OU tree failed; the sweep looks accounts up itself");
                            report.warm_error = Some(error);
                        }
                    }
                }
                if let Some(accounts) = &walked {
                    let round = self
                        .sweeper
                        .directory
                        .warm_walked(walk.as_ref(), accounts.clone(), WarmScope::Uncached, warm_until)
                        .await;
                    warmed_now = round.cached;
                    report.warm = Some(match report.warm.take() {
                        None => round,
                        // The same walk: what was cached to begin with is the first round's;
                        // what is still not reached, the last round's.
                        Some(first) => WarmReport {
                            cached: first.cached + round.cached,
                            failed: first.failed + round.failed,
                            not_reached: round.not_reached,
                            ..first
                        },
                    });
                }
            }
            let pass_started_at = checkpoint.as_ref().map_or_else(now_epoch_seconds, |c| c.pass_started_at);
            let sweep = self.sweeper.run(&[], checkpoint.map(|c| c.next_token), deadline, progress).await;
            let next = sweep.resume_token.clone().map(|next_token| Checkpoint { next_token, pass_started_at });
            // A pass that reached its end starts again from the first page next time.
            report.pass_complete = next.is_none() && sweep.complete();
            if let Err(error) = self.state.save_checkpoint(next.as_ref()).await {
                report.state_error = Some(error_chain(&error));
            }
            let (partial, completed) = (sweep.still_partial, sweep.enriched_complete);
            report.sweep += sweep;
            let time_left = deadline.saturating_duration_since(Instant::now());
            let another = report.pass_complete
                && report.state_error.is_none()
                && partial > 0
                // Once more in any case (lookups the pass began may have landed since); after
                // that only while passes make progress, so an outage costs one extra pass.
                && (report.extra_passes == 0 || completed > 0 || warmed_now > 0)
                && time_left > MIN_TIME_FOR_A_PASS;
            if !another {
                return report;
            }
            report.extra_passes += 1;
            checkpoint = None;
        }
    }

    fn failed_state(&self, error: String) -> RefreshReport {
        tracing::error!(error = %error, "the sweep's state in the cache table could not be read");
        RefreshReport {
            queued: 0,
            accounts: Vec::new(),
            warm: None,
            warm_error: None,
            sweep: SweepReport::default(),
            pass_complete: false,
            extra_passes: 0,
            state_error: Some(error),
        }
    }
}

impl Report for RefreshReport {
    fn log(&self) {
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
    }

    fn record_metrics(&self) {
        Metric::RefreshQueueDepth.observe(self.queued as f64);
        Metric::AccountsWarmed.count(self.warm.as_ref().map_or(0, |w| w.cached));
        self.sweep.record_metrics();
    }
}
