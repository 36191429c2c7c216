//! One batch, start to finish: decode every record, screen and dedup findings, prefetch their
//! accounts once, send the fewest updates, queue investigations, and answer with the records to
//! retry. The rules live in `core`; this file only puts them in order around the ports.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::enrich::{TagFilter, routed_account_enrichments};
use crate::core::enriched_event::event_for;
use crate::core::event::{Candidate, Decoded, IncomingBatch, batch_response, decode_batch};
use crate::core::outcome::{FailReason, FindingOutcome, SkipReason, settle};
use crate::core::plan;
use crate::core::routing::RoutingRules;
use crate::core::select::may_investigate;
use crate::core::time::since_epoch;
use crate::service::batch_report::{BatchReport, WriteStats};
use crate::service::directory::{Directory, Resolution};
use crate::service::fanout::{Fanout, FanoutStats};
use crate::service::publisher::Publisher;
use crate::service::updater::Updater;

pub struct Enricher {
    pub directory: Directory,
    pub updater: Updater,
    pub tag_filter: TagFilter,
    /// Work stops this long before the invocation's deadline, so the response always goes out.
    pub deadline_margin: Duration,
    /// Detective fan-out; `None` when `JOBS_TABLE` is not set.
    pub fanout: Option<Fanout>,
    /// `ROUTING_POLICY` and `OWNER_TAG_KEY`: owner, environment and criticality per account.
    pub routing: RoutingRules,
    /// Enriched-finding events; `None` when `ENRICHED_EVENTS_BUS` is not set.
    pub publisher: Option<Publisher>,
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
        let ((first, mut writes), (looked_up, lookup_stats)) = tokio::join!(
            self.write(&candidates, &ready, &cache.resolved, work_deadline),
            self.directory.look_up(cache.pending, work_deadline),
        );
        let (second, second_writes) = self.write(&candidates, &waiting, &looked_up, work_deadline).await;
        writes += second_writes;
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
            record_ages,
            duration_ms: started.elapsed().as_millis(),
        }
    }

    /// Renders, groups and sends the updates of these findings, whose accounts are resolved.
    async fn write(
        &self,
        candidates: &[Candidate],
        members: &[usize],
        resolutions: &HashMap<String, Resolution>,
        deadline: Instant,
    ) -> (Vec<(usize, FindingOutcome)>, WriteStats) {
        if members.is_empty() {
            return (Vec::new(), WriteStats::default());
        }
        let enrichments = routed_account_enrichments(
            members.iter().map(|&i| &candidates[i].finding),
            |account| resolutions.get(account).and_then(Resolution::record),
            &self.tag_filter,
            &self.routing,
        );
        // Each hub its own requests: ASFF findings by payload, OCSF findings by comment.
        let (v1, v2): (Vec<usize>, Vec<usize>) = members.iter().partition(|&&i| candidates[i].finding.ocsf.is_none());
        let grouped = plan::group_updates(candidates, &v1, &enrichments);
        let comments = plan::group_comments(candidates, &v2, &enrichments);
        let mut outcomes: Vec<(usize, FindingOutcome)> = grouped
            .unchanged
            .iter()
            .chain(&comments.unchanged)
            .map(|&i| (i, FindingOutcome::Skipped(SkipReason::Unchanged)))
            .collect();
        // One after the other: both draw on the one BatchUpdateFindings quota share.
        let (sent, updates) = self.updater.run(&grouped.requests, deadline).await;
        outcomes.extend(sent);
        let (sent_v2, updates_v2) = self.updater.run_v2(&comments.requests, deadline).await;
        outcomes.extend(sent_v2);
        let events = match &self.publisher {
            Some(publisher) => self.publish(publisher, candidates, &mut outcomes, &enrichments, deadline).await,
            None => Default::default(),
        };
        let stats = WriteStats {
            updates,
            minimum_calls: grouped.minimum_calls,
            updates_v2,
            minimum_calls_v2: comments.minimum_calls,
            events,
            fields_dropped: grouped.fields_dropped,
            tags_dropped: enrichments.values().map(|e| e.tags_dropped).sum(),
        };
        (outcomes, stats)
    }

    /// Publishes one event per enriched finding. A finding whose event did not get through
    /// after the publisher's retries fails its record, so the record comes back, is written
    /// again (the same payload, harmless) and its events published again: at least once, never
    /// lost. An event too large to ever publish is counted and logged, not retried.
    async fn publish(
        &self,
        publisher: &Publisher,
        candidates: &[Candidate],
        outcomes: &mut [(usize, FindingOutcome)],
        enrichments: &HashMap<String, crate::core::enrich::AccountEnrichment>,
        deadline: Instant,
    ) -> crate::service::publisher::PublishStats {
        let mut entries = Vec::new();
        let mut unpublishable = 0;
        for (slot, (member, outcome)) in outcomes.iter().enumerate() {
            if !matches!(outcome, FindingOutcome::Enriched { .. }) {
                continue;
            }
            let finding = &candidates[*member].finding;
            let Some(enrichment) = enrichments.get(&finding.aws_account_id) else { continue };
            match event_for(finding, enrichment) {
                Some(entry) => entries.push((slot, entry)),
                None => {
                    unpublishable += 1;
                    tracing::warn!(finding_id = %finding.id, "enriched-finding event exceeds 256 KB even without tags; not published");
                }
            }
        }
        let (failed, mut stats) = publisher.publish(entries, deadline).await;
        for slot in failed {
            outcomes[slot].1 = FindingOutcome::Failed(FailReason::Transient);
        }
        stats.failed += unpublishable;
        stats
    }
}
