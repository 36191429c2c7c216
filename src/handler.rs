//! One batch, start to finish: decode every record, screen and dedup findings, prefetch their
//! accounts once, send the fewest updates, and answer with the records to retry.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_lambda_events::streams::KinesisEventResponse;
use serde::Serialize;
use tokio::time::Instant;

use crate::enrich::{AccountEnrichment, Completeness, TagFilter};
use crate::event::{self, IncomingBatch, StreamRecord};
use crate::metadata::{AccountMetadata, AccountRecord, Directory, PrefetchStats, Resolution};
use crate::outcome::{BatchTally, FailReason, FindingOutcome, RecordOutcome, RecordSkip, SkipReason};
use crate::plan::{self, Candidate};
use crate::securityhub::{PlannedUpdate, UpdateStats, Updater};

pub struct Enricher {
    pub directory: Directory,
    pub updater: Updater,
    pub tag_filter: TagFilter,
    /// Work stops this long before the invocation's deadline, so the response always goes out.
    pub deadline_margin: Duration,
    /// Detective fan-out; `None` when `JOBS_TABLE` is not set.
    pub fanout: Option<crate::investigate::fanout::Fanout>,
}

/// Everything a batch did, for the response, the log line, metrics and tests.
#[derive(Debug, Serialize)]
pub struct BatchReport {
    #[serde(skip)]
    pub response: KinesisEventResponse,
    pub tally: BatchTally,
    pub prefetch: PrefetchStats,
    pub updates: UpdateStats,
    /// Σ ⌈findings per distinct payload / 100⌉: the fewest calls any writer could make.
    pub minimum_update_calls: usize,
    pub fields_dropped: usize,
    pub tags_dropped: usize,
    pub investigations: crate::investigate::fanout::FanoutStats,
    /// Seconds between Kinesis accepting each record and this batch starting, when known.
    #[serde(skip)]
    pub record_ages: Vec<f64>,
    pub duration_ms: u128,
}

/// What writing one set of findings did.
#[derive(Default)]
struct WritePhase {
    outcomes: Vec<(usize, FindingOutcome)>,
    updates: UpdateStats,
    minimum_calls: usize,
    fields_dropped: usize,
    tags_dropped: usize,
}

struct RecordSlot {
    identifier: Option<String>,
    outcome: Option<RecordOutcome>,
    candidates: Vec<usize>,
}

impl Enricher {
    pub async fn handle(&self, batch: IncomingBatch, deadline: Instant) -> BatchReport {
        let started = Instant::now();
        let work_deadline = deadline.checked_sub(self.deadline_margin).unwrap_or(started);
        let now_epoch = crate::since_epoch().as_secs_f64();

        let Decoded { mut tally, mut slots, candidates, record_ages } = decode_batch(batch, now_epoch);

        let mut outcomes: Vec<Option<FindingOutcome>> = vec![None; candidates.len()];
        let mut eligible = Vec::with_capacity(candidates.len());
        for (i, candidate) in candidates.iter().enumerate() {
            match plan::screen(&candidate.finding) {
                Some(reason) => outcomes[i] = Some(FindingOutcome::Skipped(reason)),
                None => eligible.push(i),
            }
        }
        let (kept, superseded) = plan::dedup(&candidates, eligible);
        for i in superseded {
            outcomes[i] = Some(FindingOutcome::Skipped(SkipReason::Superseded));
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
        let (first, (looked_up, lookup_stats)) = tokio::join!(
            self.write(&candidates, &ready, &cache.resolved, work_deadline),
            self.directory.look_up(cache.pending, work_deadline),
        );
        let second = self.write(&candidates, &waiting, &looked_up, work_deadline).await;
        let prefetch = cache.stats.merge(lookup_stats);
        let mut updates = first.updates;
        updates.absorb(second.updates);
        let minimum_update_calls = first.minimum_calls + second.minimum_calls;
        let fields_dropped = first.fields_dropped + second.fields_dropped;
        let tags_dropped = first.tags_dropped + second.tags_dropped;
        for (member, outcome) in first.outcomes.into_iter().chain(second.outcomes) {
            outcomes[member] = Some(outcome);
        }

        // Investigations: findings whose enrichment was skipped as already done may still ask for
        // one (an automation rule or a custom action); superseded, archived and unreadable ones
        // do not.
        let mut investigations = crate::investigate::fanout::FanoutStats::default();
        if let Some(fanout) = &self.fanout {
            let eligible: Vec<usize> = (0..candidates.len())
                .filter(|&i| match &outcomes[i] {
                    Some(FindingOutcome::Skipped(reason)) => {
                        *reason == SkipReason::AlreadyEnriched || *reason == SkipReason::Unchanged
                    }
                    _ => true,
                })
                .collect();
            let (stats, failed) = fanout.queue(&candidates, &eligible, work_deadline).await;
            for i in failed {
                outcomes[i] = Some(FindingOutcome::Failed(FailReason::Transient));
            }
            investigations = stats;
        }

        let mut failed_identifiers = Vec::new();
        for slot in &mut slots {
            if slot.outcome.is_none() {
                let mut failed = false;
                for &c in &slot.candidates {
                    // Every candidate has an outcome by now; a gap would be a bug, and losing
                    // the finding silently is worse than retrying it.
                    let outcome = outcomes[c].take().unwrap_or_else(|| {
                        tracing::error!(finding_index = c, "finding left without an outcome; retrying its record");
                        FindingOutcome::Failed(FailReason::Transient)
                    });
                    failed |= matches!(outcome, FindingOutcome::Failed(_));
                    tally.count_finding(&outcome);
                }
                slot.outcome = Some(if failed { RecordOutcome::Failed } else { RecordOutcome::Processed });
            }
            let outcome = slot.outcome.as_ref().expect("set above");
            tally.count_record(outcome);
            if *outcome == RecordOutcome::Failed
                && let Some(identifier) = &slot.identifier
            {
                failed_identifiers.push(identifier.as_str());
            }
        }
        let response = event::batch_response(failed_identifiers);

        let report = BatchReport {
            response,
            tally,
            prefetch,
            updates,
            minimum_update_calls,
            fields_dropped,
            tags_dropped,
            investigations,
            record_ages,
            duration_ms: started.elapsed().as_millis(),
        };
        log_batch(&report);
        report
    }

    /// Renders, groups and sends the updates of these findings, whose accounts are resolved.
    async fn write(
        &self,
        candidates: &[Candidate],
        members: &[usize],
        resolutions: &HashMap<String, Resolution>,
        deadline: Instant,
    ) -> WritePhase {
        if members.is_empty() {
            return WritePhase::default();
        }
        let enrichments = self.enrichments(candidates, members, resolutions);
        let grouped = plan::group_updates(candidates, members, &enrichments);
        let mut outcomes: Vec<(usize, FindingOutcome)> =
            grouped.unchanged.iter().map(|&i| (i, FindingOutcome::Skipped(SkipReason::Unchanged))).collect();
        let requests: Vec<PlannedUpdate> = grouped
            .requests
            .iter()
            .map(|r| PlannedUpdate {
                ids: r.members.iter().map(|&i| candidates[i].finding.identifier()).collect(),
                payload: r.payload.clone(),
            })
            .collect();
        let mut payload_sizes: HashMap<&crate::enrich::EnrichmentPayload, usize> = HashMap::new();
        for r in &grouped.requests {
            *payload_sizes.entry(&r.payload).or_default() += r.members.len();
        }
        let minimum_calls = plan::minimum_requests(payload_sizes.values().copied());
        let (results, updates) = self.updater.run(&requests, deadline).await;
        for (request, results) in grouped.requests.iter().zip(results) {
            for (&member, outcome) in request.members.iter().zip(results) {
                let partial = enrichments
                    .get(&candidates[member].finding.aws_account_id)
                    .is_some_and(|e| e.completeness == Completeness::Partial);
                outcomes.push((
                    member,
                    match outcome {
                        FindingOutcome::Enriched { .. } => FindingOutcome::Enriched { partial },
                        other => other,
                    },
                ));
            }
        }
        WritePhase {
            outcomes,
            updates,
            minimum_calls,
            fields_dropped: grouped.fields_dropped,
            tags_dropped: enrichments.values().map(|e| e.tags_dropped).sum(),
        }
    }

    /// The per-account part of the payload, once per account. Unknown accounts are enriched
    /// partially from the finding's own `AwsAccountName`.
    fn enrichments(
        &self,
        candidates: &[Candidate],
        kept: &[usize],
        resolutions: &HashMap<String, Resolution>,
    ) -> HashMap<String, AccountEnrichment> {
        let mut fallback_names: HashMap<&str, Option<&str>> = HashMap::new();
        for &i in kept {
            let f = &candidates[i].finding;
            let name = fallback_names.entry(f.aws_account_id.as_str()).or_insert(None);
            if name.is_none() {
                *name = f.aws_account_name.as_deref();
            }
        }
        fallback_names
            .into_iter()
            .map(|(account_id, fallback_name)| {
                let from_finding = || AccountMetadata::from_finding_name(account_id, fallback_name);
                let (metadata, completeness) = match resolutions.get(account_id).and_then(Resolution::record) {
                    Some(AccountRecord::Found(meta)) => (meta.clone(), Completeness::Complete),
                    // Not in this organization: the finding's name is all there is to know.
                    Some(AccountRecord::NotFound) => (from_finding(), Completeness::Complete),
                    None => (from_finding(), Completeness::Partial),
                };
                (account_id.to_owned(), AccountEnrichment::new(&metadata, completeness, &self.tag_filter))
            })
            .collect()
    }
}

/// A batch decoded: one slot per record (its outcome when already decided, else the indices of
/// its findings), the findings, and the records' ages.
pub struct Decoded {
    pub tally: BatchTally,
    slots: Vec<RecordSlot>,
    pub candidates: Vec<Candidate>,
    pub record_ages: Vec<f64>,
}

/// Decodes every record and every finding, deciding the outcome of the records that can never be
/// processed (poison, other events, no findings) and of unreadable findings. No I/O: the handler
/// and the pure-path benchmark run the same code.
///
/// Takes the batch by value and frees each raw record once decoded, so a 6 MB batch is not held
/// twice (raw and decoded) at its peak.
pub fn decode_batch(batch: IncomingBatch, now_epoch: f64) -> Decoded {
    let mut tally = BatchTally { records_in: batch.records.len(), ..Default::default() };
    let mut slots = Vec::with_capacity(batch.records.len());
    let shape = batch.shape;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut record_ages = Vec::new();

    for (index, raw) in batch.records.into_iter().enumerate() {
        let record = match StreamRecord::decode(shape, &raw) {
            Ok(record) => record,
            Err(error) => {
                let event_id = event::raw_record_id(&raw);
                tracing::warn!(record = index, event_id = event_id.as_deref(), error = %error, "poison record: counted, not retried");
                slots.push(RecordSlot { identifier: None, outcome: Some(RecordOutcome::Poison), candidates: vec![] });
                continue;
            }
        };
        if let Some(arrival) = record.approximate_arrival {
            record_ages.push((now_epoch - arrival).max(0.0));
        }
        let mut slot =
            RecordSlot { identifier: Some(record.item_identifier.clone()), outcome: None, candidates: vec![] };
        match event::decode_event(&record.data) {
            Err(error) => {
                tracing::warn!(item_identifier = %record.item_identifier, error = %error, "poison record: counted, not retried");
                slot.outcome = Some(RecordOutcome::Poison);
            }
            Ok(Err(event::NotOurs::UnsupportedEvent { source, detail_type })) => {
                tracing::info!(item_identifier = %record.item_identifier, %source, %detail_type, "record skipped: not a Security Hub findings event");
                slot.outcome = Some(RecordOutcome::Skipped(RecordSkip::UnsupportedEvent));
            }
            Ok(Ok(event)) => {
                if event.findings.is_empty() {
                    slot.outcome = Some(RecordOutcome::Skipped(RecordSkip::NoFindings));
                }
                let kind = event.kind;
                for finding in event.findings {
                    tally.findings_in += 1;
                    match finding {
                        Ok(finding) => {
                            slot.candidates.push(candidates.len());
                            candidates.push(Candidate { record: index, finding, kind: kind.clone() });
                        }
                        Err(error) => {
                            tracing::warn!(item_identifier = %record.item_identifier, error = %error, "finding skipped: malformed");
                            tally.count_finding(&FindingOutcome::Skipped(SkipReason::MalformedFinding));
                        }
                    }
                }
            }
        }
        slots.push(slot);
    }
    Decoded { tally, slots, candidates, record_ages }
}

fn log_batch(report: &BatchReport) {
    let t = &report.tally;
    if !t.balances() {
        tracing::error!(tally = %t, "batch tally does not balance");
    }
    tracing::info!(
        records_in = t.records_in,
        records_processed = t.records_processed,
        records_skipped = t.records_skipped,
        records_poison = t.records_poison,
        records_failed = t.records_failed,
        findings_in = t.findings_in,
        findings_enriched = t.findings_enriched,
        findings_enriched_partial = t.findings_enriched_partial,
        findings_skipped = ?t.findings_skipped,
        findings_failed = ?t.findings_failed,
        balanced = t.balances(),
        update_calls = report.updates.calls,
        minimum_update_calls = report.minimum_update_calls,
        update_throttles = report.updates.throttled,
        // The environments sharing BatchUpdateFindings' quota as of the last claim (absent on a
        // fixed or fallback share).
        quota_holders = report.updates.quota_holders,
        accounts = report.prefetch.accounts,
        memory_hits = report.prefetch.memory_hits,
        store_hits = report.prefetch.store_hits,
        lookups = report.prefetch.lookups,
        duration_ms = report.duration_ms as u64,
        "batch done: {t}"
    );
}
