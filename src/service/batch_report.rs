//! The enricher's per-batch report: everything a batch did, for the response, the one log line
//! (whose counts prove every record and finding ended in exactly one outcome), the metrics and
//! the tests.

use aws_lambda_events::streams::KinesisEventResponse;
use serde::Serialize;

use crate::core::outcome::BatchTally;
use crate::service::directory::PrefetchStats;
use crate::service::fanout::FanoutStats;
use crate::service::pending::PendingStats;
// Kept importable from here: the batch report is where most readers look for it.
pub use crate::service::pipeline::WriteStats;
use crate::telemetry::{Metric, Report, label};

/// Everything a batch did.
#[derive(Debug, Serialize)]
pub struct BatchReport {
    #[serde(skip)]
    pub response: KinesisEventResponse,
    pub tally: BatchTally,
    pub prefetch: PrefetchStats,
    pub writes: WriteStats,
    pub investigations: FanoutStats,
    /// Accounts not resolved in time (unknown, or known only from a stale entry), queued for the
    /// refresher; the findings of the unknown ones are deferred to it.
    pub queued_for_refresh: usize,
    /// The pending-writes store: findings held, and waiting ones this batch wrote.
    pub pending: PendingStats,
    /// Seconds between Kinesis accepting each record and this batch starting, when known.
    #[serde(skip)]
    pub record_ages: Vec<f64>,
    pub duration_ms: u128,
}

impl Report for BatchReport {
    fn log(&self) {
        let t = &self.tally;
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
            findings_deferred = t.findings_deferred,
            findings_pending = t.findings_pending,
            findings_skipped = ?t.findings_skipped,
            findings_failed = ?t.findings_failed,
            balanced = t.balances(),
            update_calls = self.writes.updates.calls,
            minimum_update_calls = self.writes.minimum_calls,
            update_throttles = self.writes.updates.throttled,
            update_v2_calls = self.writes.updates_v2.calls,
            minimum_update_v2_calls = self.writes.minimum_calls_v2,
            put_events_calls = self.writes.events.calls,
            events_published = self.writes.events.published,
            events_failed = self.writes.events.failed,
            // The environments sharing BatchUpdateFindings' quota as of the last claim (absent
            // on a fixed or fallback share).
            quota_holders = self.writes.updates.quota_holders,
            accounts = self.prefetch.accounts,
            memory_hits = self.prefetch.memory_hits,
            store_hits = self.prefetch.store_hits,
            lookups = self.prefetch.lookups,
            queued_for_refresh = self.queued_for_refresh,
            pending_held = self.pending.held,
            pending_written = self.pending.drained.written,
            pending_accounts_drained = self.pending.drained.accounts,
            pending_store_write_units = self.pending.store.map(|s| s.write_units),
            pending_store_read_units = self.pending.store.map(|s| s.read_units),
            investigation_jobs_created = self.investigations.jobs_created,
            investigation_jobs_joined = self.investigations.jobs_joined,
            investigation_findings_joined = self.investigations.findings_joined,
            investigation_explicit_requests = self.investigations.explicit_requests,
            duration_ms = self.duration_ms as u64,
            "batch done: {t}"
        );
    }

    /// Counters once per batch, low-cardinality labels only.
    fn record_metrics(&self) {
        let t = &self.tally;
        Metric::RecordsIn.count(t.records_in);
        Metric::RecordsProcessed.count(t.records_processed);
        Metric::RecordsSkipped.count(t.records_skipped);
        Metric::RecordsPoison.count(t.records_poison);
        Metric::RecordsFailed.count(t.records_failed);
        Metric::FindingsIn.count(t.findings_in);
        Metric::FindingsEnriched.count(t.findings_enriched);
        Metric::FindingsEnrichedPartial.count(t.findings_enriched_partial);
        Metric::FindingsDeferred.count(t.findings_deferred);
        Metric::FindingsPending.count(t.findings_pending);
        self.pending.record_metrics();
        for (reason, n) in t.findings_skipped.iter().filter(|(_, n)| **n > 0) {
            Metric::FindingsSkipped.count_with(&[(label::REASON, reason.clone())], *n as u64);
        }
        for (reason, n) in t.findings_failed.iter().filter(|(_, n)| **n > 0) {
            Metric::FindingsFailed.count_with(&[(label::REASON, reason.clone())], *n as u64);
        }
        self.writes.record_metrics();
        let p = &self.prefetch;
        Metric::CacheHits.count_with(&[(label::TIER, "memory".into())], p.memory_hits as u64);
        Metric::CacheHits.count_with(&[(label::TIER, "table".into())], p.store_hits as u64);
        Metric::CacheMisses.count(p.lookups);
        Metric::StaleServed.count(p.stale_served);
        Metric::LookupFailures.count(p.lookup_failures);
        Metric::LookupsOutOfBudget.count(p.lookups_out_of_budget);
        Metric::InvestigationsQueued.count(self.investigations.jobs_created);
        Metric::InvestigationsJoined.count(self.investigations.findings_joined);
        Metric::BatchDuration.observe(self.duration_ms as f64);
        if let Some(oldest) = self.record_ages.iter().copied().reduce(f64::max) {
            Metric::RecordAgeSeconds.observe(oldest);
        }
    }
}
