//! The one enrichment pipeline: what every path (the stream, the sweep of the refresher and of
//! `enricher-admin`, the investigator's write-back) does with findings whose accounts it has
//! resolved: render for either hub, decide current or stale, group into the fewest requests,
//! publish, and write. Built in `wiring` from the configuration by one function, so no path
//! renders, decides "current", writes or publishes with code of its own.

use std::collections::HashMap;
use std::ops::AddAssign;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::account::{AccountMetadata, AccountRecord};
use crate::core::enrich::{AccountEnrichment, Addendum, Completeness, Rendering};
use crate::core::enriched_event::{EventEntry, event_for};
use crate::core::event::Candidate;
use crate::core::outcome::{FailReason, FindingOutcome, SkipReason};
use crate::core::plan;
use crate::service::publisher::{PublishStats, Publisher};
use crate::service::updater::{UpdateStats, Updater};
use crate::telemetry::Metric;

/// What writing findings back did, summed over a batch's or a sweep's writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    pub updates: UpdateStats,
    /// Σ ⌈findings per distinct payload / 100⌉: the fewest calls any writer could make.
    pub minimum_calls: usize,
    /// BatchUpdateFindingsV2 (OCSF findings of the new hub).
    pub updates_v2: UpdateStats,
    /// Σ ⌈findings per distinct comment / 100⌉.
    pub minimum_calls_v2: usize,
    /// Enriched-finding events (PutEvents).
    pub events: PublishStats,
    pub fields_dropped: usize,
    pub tags_dropped: usize,
}

impl AddAssign for WriteStats {
    fn add_assign(&mut self, later: WriteStats) {
        self.updates += later.updates;
        self.minimum_calls += later.minimum_calls;
        self.updates_v2 += later.updates_v2;
        self.minimum_calls_v2 += later.minimum_calls_v2;
        self.events += later.events;
        self.fields_dropped += later.fields_dropped;
        self.tags_dropped += later.tags_dropped;
    }
}

impl WriteStats {
    /// The writes' metrics, the same for every path that writes (the stream's batches, the
    /// sweeps, the pending-writes store's drains).
    pub fn record_metrics(&self) {
        Metric::UpdateCalls.count(self.updates.findings_per_call.len());
        Metric::UpdateFindings.count(self.updates.findings_per_call.iter().sum());
        Metric::UpdateCallsMinimum.count(self.minimum_calls);
        Metric::UpdateV2Calls.count(self.updates_v2.findings_per_call.len());
        Metric::UpdateV2Findings.count(self.updates_v2.findings_per_call.iter().sum());
        Metric::PutEventsCalls.count(self.events.calls);
        Metric::EventsPublished.count(self.events.published);
        Metric::EventsFailed.count(self.events.failed);
    }
}

/// One outcome per finding served, keyed as the caller keyed it, and what the writes did.
#[derive(Debug, Default)]
pub struct Served {
    pub outcomes: Vec<(usize, FindingOutcome)>,
    pub stats: WriteStats,
}

pub struct Pipeline {
    /// `TAG_KEYS`, `ROUTING_POLICY`, `OWNER_TAG_KEY`.
    pub rendering: Rendering,
    /// Both hubs' writes, at this path's share of the BatchUpdateFindings quota.
    pub updater: Updater,
    /// Enriched-finding events; `None` when `ENRICHED_EVENTS_BUS` is not set.
    pub publisher: Option<Publisher>,
}

impl Pipeline {
    /// Serves `members` (indices into `candidates`, already screened), whose accounts the
    /// caller resolved as far as it could (`known`; `None` for an account not known in time,
    /// which is enriched `Partial` from the finding's own account name).
    ///
    /// Each member ends in exactly one outcome: current (nothing to write), still partial,
    /// unchanged, enriched (complete or partial), rejected, or failed for a retry. Events are
    /// published before the writes, and a finding whose event does not get through is not
    /// written: it stays stale, so every path comes back to it (the stream's record is retried,
    /// the sweep's next pass finds it, the investigator's job is written again), and its event
    /// is published at least once.
    ///
    /// With an `addendum` (the investigator's verdict), every member is written (no finding is
    /// current before its verdict is on it), and a finding whose account `known` cannot answer
    /// keeps what it carries, with the verdict added.
    pub async fn serve<'a>(
        &self,
        candidates: &[Candidate],
        members: &[usize],
        known: impl Fn(&str) -> Option<&'a AccountRecord>,
        addendum: Option<&Addendum>,
        deadline: Instant,
    ) -> Served {
        if members.is_empty() {
            return Served::default();
        }
        let mut enrichments = self.rendering.enrichments(members.iter().map(|&i| &candidates[i].finding), known);
        if addendum.is_some() {
            // Never write a verdict's findings down to `Partial`: keep what they carry instead.
            enrichments.retain(|_, e| e.is_complete());
        }
        let mut outcomes: Vec<(usize, FindingOutcome)> = Vec::with_capacity(members.len());
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        for &i in members {
            let finding = &candidates[i].finding;
            let enrichment = enrichments.get(&finding.aws_account_id);
            if addendum.is_none() && enrichment.is_some_and(|e| plan::is_current(finding, e)) {
                outcomes.push((i, FindingOutcome::Skipped(SkipReason::Current)));
            } else if addendum.is_none() && enrichment.is_some_and(|e| plan::is_still_partial(finding, e)) {
                outcomes.push((i, FindingOutcome::Skipped(SkipReason::StillPartial)));
            } else if finding.ocsf.is_some() {
                v2.push(i);
            } else {
                v1.push(i);
            }
        }
        // Each hub its own requests: ASFF findings by payload, OCSF findings by comment.
        let mut grouped = plan::group_updates(candidates, &v1, &enrichments, addendum);
        let mut comments = plan::group_comments(candidates, &v2, &enrichments);
        for &i in grouped.unchanged.iter().chain(&comments.unchanged) {
            let partial = enrichments.get(&candidates[i].finding.aws_account_id).is_some_and(|e| !e.is_complete());
            let reason = if partial { SkipReason::StillPartial } else { SkipReason::Unchanged };
            outcomes.push((i, FindingOutcome::Skipped(reason)));
        }

        let mut stats = WriteStats {
            minimum_calls: grouped.minimum_calls,
            minimum_calls_v2: comments.minimum_calls,
            fields_dropped: grouped.fields_dropped,
            tags_dropped: enrichments.values().map(|e| e.tags_dropped).sum(),
            ..Default::default()
        };
        if let Some(publisher) = &self.publisher {
            let to_write: Vec<usize> = grouped
                .requests
                .iter()
                .flat_map(|r| r.members())
                .chain(comments.requests.iter().flat_map(|r| r.members()))
                .collect();
            let (unpublished, events) =
                Box::pin(self.publish(publisher, candidates, &to_write, &enrichments, deadline)).await;
            stats.events = events;
            if !unpublished.is_empty() {
                for &i in &unpublished {
                    outcomes.push((i, FindingOutcome::Failed(FailReason::Transient)));
                }
                let held = |i: &usize| unpublished.binary_search(i).is_ok();
                for request in &mut grouped.requests {
                    request.findings.retain(|(i, _)| !held(i));
                }
                for request in &mut comments.requests {
                    request.findings.retain(|(i, _)| !held(i));
                }
                grouped.requests.retain(|r| !r.findings.is_empty());
                comments.requests.retain(|r| !r.findings.is_empty());
            }
        }
        // One after the other: both draw on the one BatchUpdateFindings quota share.
        let (sent, updates) = Box::pin(self.updater.run(&grouped.requests, deadline)).await;
        outcomes.extend(sent);
        let (sent_v2, updates_v2) = Box::pin(self.updater.run_v2(&comments.requests, deadline)).await;
        outcomes.extend(sent_v2);
        stats.updates = updates;
        stats.updates_v2 = updates_v2;
        Served { outcomes, stats }
    }

    /// One event per finding about to be written; answers the members whose event did not get
    /// through (sorted). An event too large to ever publish is counted and logged, and its
    /// finding still written: retrying cannot make it fit.
    async fn publish(
        &self,
        publisher: &Publisher,
        candidates: &[Candidate],
        members: &[usize],
        enrichments: &HashMap<String, AccountEnrichment>,
        deadline: Instant,
    ) -> (Vec<usize>, PublishStats) {
        // A verdict's finding whose account could not be rendered is published with what the
        // finding itself says of its account, marked partial.
        let mut fallbacks: HashMap<&str, AccountEnrichment> = HashMap::new();
        let mut entries: Vec<(usize, EventEntry)> = Vec::with_capacity(members.len());
        let mut unpublishable = 0;
        for &i in members {
            let finding = &candidates[i].finding;
            let account = finding.aws_account_id.as_str();
            let enrichment = match enrichments.get(account) {
                Some(e) => e,
                None => fallbacks.entry(account).or_insert_with(|| {
                    let meta = AccountMetadata::from_finding_name(account, finding.aws_account_name.as_deref());
                    self.rendering.account(&meta, Completeness::Partial)
                }),
            };
            match event_for(finding, enrichment) {
                Some(entry) => entries.push((i, entry)),
                None => {
                    unpublishable += 1;
                    tracing::warn!(finding_id = %finding.id, "enriched-finding event exceeds 256 KB even without tags; not published");
                }
            }
        }
        let (failed, mut stats) = publisher.publish(entries, deadline).await;
        stats.failed += unpublishable;
        (failed, stats)
    }
}
