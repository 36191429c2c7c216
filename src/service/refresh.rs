//! One run of the `refresher`: accounts queued for refresh first (their metadata changed, so
//! their findings are stale), then the pass over every active finding from its checkpoint, so
//! that findings older than the deployment and findings left `Partial` are completed without
//! waiting for Security Hub to send an event for them.

use std::sync::Arc;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::time::now_epoch_seconds;
use crate::ports::sweep_state::{Checkpoint, SweepState};
use crate::service::sweep::{SweepReport, Sweeper};
use crate::telemetry::{Metric, Report};

/// GetFindings takes at most 20 values per filter field: queued accounts go 20 at a time.
pub const ACCOUNTS_PER_SWEEP: usize = 20;

pub struct Refresher {
    pub sweeper: Sweeper,
    pub state: Arc<dyn SweepState>,
}

/// What a run did: which kind of sweep, and its report.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// Accounts queued as the run began.
    pub queued: usize,
    /// The accounts this run refreshed (empty: the pass over every finding).
    pub accounts: Vec<String>,
    pub sweep: SweepReport,
    /// The pass over every finding reached its end in this run.
    pub pass_complete: bool,
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
            let accounts: Vec<String> = queued.iter().take(ACCOUNTS_PER_SWEEP).cloned().collect();
            let sweep = self.sweeper.run(&accounts, None, deadline, progress).await;
            let mut state_error = None;
            // Off the queue once every finding of theirs was read. A finding whose write failed
            // is still stale (its fingerprint is the old one), so the pass over every finding
            // picks it up: an account that keeps failing never holds the queue.
            if sweep.complete()
                && let Err(error) = self.state.dequeue(&accounts).await
            {
                state_error = Some(error_chain(&error));
            }
            return RefreshReport { queued: queued.len(), accounts, sweep, pass_complete: false, state_error };
        }
        let checkpoint = match self.state.checkpoint().await {
            Ok(checkpoint) => checkpoint,
            Err(error) => return self.failed_state(error_chain(&error)),
        };
        let pass_started_at = checkpoint.as_ref().map_or_else(now_epoch_seconds, |c| c.pass_started_at);
        let sweep = self.sweeper.run(&[], checkpoint.map(|c| c.next_token), deadline, progress).await;
        let next = sweep.resume_token.clone().map(|next_token| Checkpoint { next_token, pass_started_at });
        // A pass that reached its end starts again from the first page next time.
        let pass_complete = next.is_none() && sweep.complete();
        let state_error = match self.state.save_checkpoint(next.as_ref()).await {
            Ok(()) => None,
            Err(error) => Some(error_chain(&error)),
        };
        RefreshReport { queued: 0, accounts: Vec::new(), sweep, pass_complete, state_error }
    }

    fn failed_state(&self, error: String) -> RefreshReport {
        tracing::error!(error = %error, "the sweep's state in the cache table could not be read");
        RefreshReport {
            queued: 0,
            accounts: Vec::new(),
            sweep: SweepReport::default(),
            pass_complete: false,
            state_error: Some(error),
        }
    }
}

impl Report for RefreshReport {
    fn log(&self) {
        if let Some(error) = &self.state_error {
            tracing::error!(error = %error, "the sweep's state was not updated; the next run repeats this work");
        }
        tracing::info!(
            queued = self.queued,
            accounts = self.accounts.len(),
            pass_complete = self.pass_complete,
            resumes = self.sweep.resume_token.is_some(),
            "refresher run: {}",
            if self.accounts.is_empty() { "pass over every active finding" } else { "queued accounts" }
        );
        self.sweep.log();
    }

    fn record_metrics(&self) {
        Metric::RefreshQueueDepth.observe(self.queued as f64);
        self.sweep.record_metrics();
    }
}
