//! One batch, start to finish: decode every record, screen and dedup findings, prefetch their
//! accounts once, send the fewest updates, queue investigations, and answer with the records to
//! retry. The rules live in `core`; this file only puts them in order around the ports.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::event::{Candidate, Decoded, IncomingBatch, batch_response, decode_batch};
use crate::core::outcome::{FailReason, FindingOutcome, settle};
use crate::core::plan;
use crate::core::select::may_investigate;
use crate::core::time::since_epoch;
use crate::ports::sweep_state::SweepState;
use crate::service::batch_report::BatchReport;
use crate::service::directory::{Directory, Resolution};
use crate::service::fanout::{Fanout, FanoutStats};
use crate::service::pending::{Coalescer, PendingStats};
use crate::service::pipeline::{Pipeline, WriteStats};

pub struct Enricher {
    pub directory: Directory,
    /// Accounts the batch could not resolve in time are queued here, so the refresher (which
    /// runs every minute) completes their findings without waiting for another event.
    pub refresh_queue: Option<Arc<dyn SweepState>>,
    /// Rendering, currency, writes and events: the same pipeline as the sweep's.
    pub pipeline: Pipeline,
    /// Work stops this long before the invocation's deadline, so the response always goes out.
    pub deadline_margin: Duration,
    /// Detective fan-out; `None` when `JOBS_TABLE` is not set.
    pub fanout: Option<Fanout>,
    /// Coalescing across batches (`service::pending`); `None` when `PENDING_WRITE_DELAY_SECONDS` is 0.
    pub pending: Option<Coalescer>,
}

impl Enricher {
    pub async fn handle(&self, batch: IncomingBatch, deadline: Instant) -> BatchReport {
        let started = Instant::now();
        let work_deadline = deadline.checked_sub(self.deadline_margin).unwrap_or(started);

        let Decoded { mut tally, records, candidates, record_ages } = decode_batch(batch, since_epoch().as_secs_f64());
        let mut outcomes: Vec<Option<FindingOutcome>> = vec![None; candidates.len()];
        let plan::Triage { kept, skipped, asks } = plan::triage(&candidates);
        for (i, reason) in skipped {
            outcomes[i] = Some(FindingOutcome::Skipped(reason));
        }
        // The quota saturated: accounts with a few findings here wait for their later ones.
        let held = match &self.pending {
            Some(coalescer) => Some(coalescer.hold(&candidates, &kept).await),
            None => None,
        };
        let kept = held.as_ref().map_or(kept, |h| h.now.clone());
        for &i in held.iter().flat_map(|h| &h.held) {
            outcomes[i] = Some(FindingOutcome::Pending);
        }

        // Accounts the cache knows are written at once, while the others are looked up, so the
        // BatchUpdateFindings quota does not sit idle behind a slow Organizations.
        let accounts: Vec<String> = kept
            .iter()
            .map(|&i| candidates[i].finding.aws_account_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let cache = self.directory.from_cache(&accounts).await;
        let (ready, waiting): (Vec<usize>, Vec<usize>) =
            kept.iter().partition(|&&i| cache.resolved.contains_key(&candidates[i].finding.aws_account_id));
        let ((first, mut writes), (looked_up, lookup_stats)) = tokio::join!(
            self.write(&candidates, &ready, &cache.resolved, work_deadline),
            self.directory.look_up(cache.pending, work_deadline),
        );
        let unresolved: Vec<String> = looked_up
            .iter()
            .filter(|(_, resolution)| !matches!(resolution, Resolution::Fresh(_)))
            .map(|(account, _)| account.clone())
            .collect();
        let (second, second_writes) = self.write(&candidates, &waiting, &looked_up, work_deadline).await;
        let queued_for_refresh = self.queue_for_refresh(unresolved).await;
        writes += second_writes;
        let mut pending = PendingStats::default();
        if let (Some(coalescer), Some(held)) = (&self.pending, held) {
            let (drained, drain_writes) =
                coalescer.drain_after_batch(&held, &self.directory, &self.pipeline, work_deadline).await;
            writes += drain_writes;
            pending = held.stats;
            pending.drained = drained;
        }
        let mut prefetch = cache.stats;
        prefetch += lookup_stats;
        for (member, outcome) in first.into_iter().chain(second) {
            outcomes[member] = Some(outcome);
        }

        let mut investigations = FanoutStats::default();
        if let Some(fanout) = &self.fanout {
            let eligible: Vec<usize> =
                (0..candidates.len()).filter(|&i| outcomes[i].as_ref().is_none_or(may_investigate)).collect();
            let (stats, failed) = fanout.queue(&candidates, &eligible, &asks, work_deadline).await;
            for i in failed {
                outcomes[i] = Some(FindingOutcome::Failed(FailReason::Transient));
            }
            investigations = stats;
        }

        let failed = settle(&mut tally, records, outcomes);
        BatchReport {
            response: batch_response(failed.iter().map(String::as_str)),
            tally,
            prefetch,
            writes,
            investigations,
            queued_for_refresh,
            pending,
            record_ages,
            duration_ms: started.elapsed().as_millis(),
        }
    }

    /// Queues accounts this batch could not resolve (written `Partial`, or from a stale entry):
    /// the refresher rewrites their findings once their lookup lands. A failed queue write is
    /// logged, not failed: the refresher's pass over every finding reaches them anyway.
    async fn queue_for_refresh(&self, accounts: Vec<String>) -> usize {
        let Some(queue) = &self.refresh_queue else { return 0 };
        if accounts.is_empty() {
            return 0;
        }
        match queue.enqueue(&accounts).await {
            Ok(()) => accounts.len(),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), accounts = accounts.len(), "unresolved accounts not queued for refresh");
                0
            }
        }
    }

    /// Serves these findings, whose accounts are resolved, through the pipeline.
    async fn write(
        &self,
        candidates: &[Candidate],
        members: &[usize],
        resolutions: &HashMap<String, Resolution>,
        deadline: Instant,
    ) -> (Vec<(usize, FindingOutcome)>, WriteStats) {
        let known = |account: &str| resolutions.get(account).and_then(Resolution::record);
        let served = self.pipeline.serve(candidates, members, known, None, deadline).await;
        (served.outcomes, served.stats)
    }
}
