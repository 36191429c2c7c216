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
use crate::service::refresh::QUEUE_SWEEP_LIMIT;

pub struct Enricher {
    pub directory: Directory,
    /// Accounts the batch could not resolve in time are queued here, so the refresher (which
    /// runs every minute) completes their findings without waiting for another event.
    pub refresh_queue: Option<Arc<dyn SweepState>>,
    /// Writes findings of accounts not known in time `Partial` and looks every unknown account
    /// up, instead of deferring them to the refresher. Deployments defer (the README's
    /// "Degraded enrichment" gives the figures); the simulator sets this to measure the other way.
    pub partial_writes: bool,
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
        // The quota saturated: accounts known here with a few findings wait for their later
        // ones in the pending-writes store. Accounts not known yet are looked up or deferred to
        // the refresher (below), never held: the store waits for the quota, not for metadata.
        let store_before = self.pending.as_ref().and_then(Coalescer::usage);
        let held = match &self.pending {
            Some(coalescer) => Some(coalescer.hold(&candidates, &ready).await),
            None => None,
        };
        let ready = held.as_ref().map_or(ready, |h| h.now.clone());
        for &i in held.iter().flat_map(|h| &h.held) {
            outcomes[i] = Some(FindingOutcome::Pending);
        }
        // A cold start: more accounts unknown than a few sweeps' worth. Looked up here (about 4
        // Organizations calls each) they would compete with the refresher's walk of the OU
        // tree (about 2 each) for the one Organizations budget; they are queued for it instead.
        let cold = self.defers() && cache.pending.accounts.len() > QUEUE_SWEEP_LIMIT;
        let resolve_the_rest = async {
            if cold {
                self.directory.without_lookups(cache.pending)
            } else {
                self.directory.look_up(cache.pending, work_deadline).await
            }
        };
        let ((first, mut writes), (looked_up, lookup_stats)) =
            tokio::join!(self.write(&candidates, &ready, &cache.resolved, work_deadline), resolve_the_rest);
        let unresolved: Vec<String> = looked_up
            .iter()
            .filter(|(_, resolution)| !matches!(resolution, Resolution::Fresh(_)))
            .map(|(account, _)| account.clone())
            .collect();
        let queued_for_refresh = self.queue_for_refresh(unresolved).await;
        // Findings of an account known in no form are deferred once it is queued: the refresher
        // writes them complete. Without the queue they are written `Partial` now.
        let deferring = queued_for_refresh > 0 && self.defers();
        let (deferred, to_write): (Vec<usize>, Vec<usize>) = waiting.iter().partition(|&&i| {
            deferring && matches!(looked_up.get(&candidates[i].finding.aws_account_id), Some(Resolution::Unavailable))
        });
        let (second, second_writes) = self.write(&candidates, &to_write, &looked_up, work_deadline).await;
        writes += second_writes;
        let mut pending = PendingStats::default();
        if let (Some(coalescer), Some(held)) = (&self.pending, held) {
            let (drained, drain_writes) =
                coalescer.drain_after_batch(&held, &self.directory, &self.pipeline, work_deadline).await;
            writes += drain_writes;
            coalescer.note_writes(&writes.updates);
            pending = held.stats;
            pending.drained = drained;
            pending.store = coalescer.usage_since(store_before);
        }
        let mut prefetch = cache.stats;
        prefetch += lookup_stats;
        for (member, outcome) in first.into_iter().chain(second) {
            outcomes[member] = Some(outcome);
        }
        for i in deferred {
            outcomes[i] = Some(FindingOutcome::Deferred);
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

    /// Queues accounts this batch could not resolve (unknown, or known only from a stale entry):
    /// the refresher writes their findings once they are known. A failed queue write is logged,
    /// not failed: the batch then writes those findings `Partial`, and the refresher's pass over
    /// every finding reaches them anyway.
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

    /// Unknown accounts' findings are left to the refresher rather than written `Partial`: only
    /// with a queue to hand them to, and unless `partial_writes` asks for the other way.
    fn defers(&self) -> bool {
        self.refresh_queue.is_some() && !self.partial_writes
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
