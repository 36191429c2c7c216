//! What became of each record and each finding of a batch, and the tally that proves every one
//! ended in exactly one outcome.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Why a finding needed no update. Skips are final: the record is not retried for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// `findingEnriched` = `True`: our own update coming back (the loop guard).
    AlreadyEnriched,
    /// RecordState ARCHIVED: Security Hub no longer shows it.
    Archived,
    /// The same (ProductArn, Id) came later in the batch with a newer UpdatedAt.
    Superseded,
    /// The update would write what the finding already has.
    Unchanged,
    /// The finding already carries its account's current enrichment, complete (read from the
    /// hub, or asked for again by an analyst): nothing to write.
    Current,
    /// The finding already carries the `Partial` enrichment we would write again: its account
    /// is not resolved yet, and writing it again would change nothing (the loop guard for
    /// partial enrichment). A later pass or event completes it.
    StillPartial,
    /// Not a finding we can read (missing Id, ProductArn or AwsAccountId, wrong types).
    MalformedFinding,
    /// AwsAccountId is not a 12-digit account id.
    InvalidAccountId,
    /// Security Hub refused the update for good (FindingNotFound, InvalidInput, ...).
    Rejected(String),
    /// An OCSF finding whose `comment` is someone else's (an analyst's, another tool's): the
    /// new hub has one comment per finding and we never overwrite text that is not ours.
    ForeignComment,
    /// A sweep left it for the pass after: the refresher's warm-up is completing its account
    /// (2 Organizations calls) right now, so neither a lookup of its own (4) nor a `Partial`
    /// write that would only be written again.
    AwaitingWarmUp,
}

impl SkipReason {
    pub fn as_label(&self) -> &str {
        match self {
            SkipReason::AlreadyEnriched => "already_enriched",
            SkipReason::Archived => "archived",
            SkipReason::Superseded => "superseded",
            SkipReason::Unchanged => "unchanged",
            SkipReason::Current => "current",
            SkipReason::StillPartial => "still_partial",
            SkipReason::MalformedFinding => "malformed_finding",
            SkipReason::InvalidAccountId => "invalid_account_id",
            SkipReason::Rejected(code) => code.as_str(),
            SkipReason::ForeignComment => "foreign_comment",
            SkipReason::AwaitingWarmUp => "awaiting_warm_up",
        }
    }
}

/// Why a finding's update did not happen this time but can succeed on retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailReason {
    /// Throttled or a transient error after every retry this invocation could afford.
    Transient,
    /// The invocation's deadline came before the update could be sent.
    Deadline,
}

impl FailReason {
    pub fn as_label(&self) -> &'static str {
        match self {
            FailReason::Transient => "transient",
            FailReason::Deadline => "deadline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingOutcome {
    Enriched {
        partial: bool,
    },
    /// Not written: its account is not known yet and is queued for the refresher, which
    /// writes the finding complete once the account is (instead of a `Partial` write now that
    /// completion would only repeat). The record is acknowledged: the queue holds the account,
    /// and the refresher's pass over every finding is the backstop.
    Deferred,
    /// Held in the pending-writes store, durably, to be written with later findings of its
    /// account (the quota was saturated): final for its record, which is acknowledged.
    Pending,
    Skipped(SkipReason),
    Failed(FailReason),
}

/// Why a record carried no finding for us. Final: never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordSkip {
    /// Another source or detail-type.
    UnsupportedEvent,
    /// A Security Hub event with an empty findings list.
    NoFindings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Every finding in it was enriched or skipped.
    Processed,
    Skipped(RecordSkip),
    /// Can never be processed: logged and counted, never reported as failed.
    Poison,
    /// At least one finding failed transiently: reported in batchItemFailures.
    Failed,
}

/// One record of a batch: its outcome when decoding already decided it (poison, not ours, no
/// findings), else the indices of its findings, whose outcomes decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSlot {
    /// The identifier the record is reported by if it fails; `None` for poison records.
    pub identifier: Option<String>,
    pub outcome: Option<RecordOutcome>,
    pub findings: Vec<usize>,
}

/// Closes a batch's books: gives every record its outcome (failed when any of its findings
/// failed), counts every record and finding once, and returns the identifiers to retry.
/// A finding left without an outcome would be a bug; losing it silently is worse than
/// retrying its record, so it counts as failed.
pub fn settle(
    tally: &mut BatchTally,
    records: Vec<RecordSlot>,
    mut findings: Vec<Option<FindingOutcome>>,
) -> Vec<String> {
    let mut failed_identifiers = Vec::new();
    for slot in records {
        let outcome = slot.outcome.unwrap_or_else(|| {
            let mut failed = false;
            for &f in &slot.findings {
                let outcome = findings[f].take().unwrap_or_else(|| {
                    tracing::error!(finding_index = f, "finding left without an outcome; retrying its record");
                    FindingOutcome::Failed(FailReason::Transient)
                });
                failed |= matches!(outcome, FindingOutcome::Failed(_));
                tally.count_finding(&outcome);
            }
            if failed { RecordOutcome::Failed } else { RecordOutcome::Processed }
        });
        tally.count_record(&outcome);
        if outcome == RecordOutcome::Failed
            && let Some(identifier) = slot.identifier
        {
            failed_identifiers.push(identifier);
        }
    }
    failed_identifiers
}

/// Counts for one batch. `records_in` and `findings_in` must equal the sums of their outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchTally {
    pub records_in: usize,
    pub records_processed: usize,
    pub records_skipped: usize,
    pub records_poison: usize,
    pub records_failed: usize,
    pub findings_in: usize,
    pub findings_enriched: usize,
    pub findings_enriched_partial: usize,
    pub findings_deferred: usize,
    /// Held in the pending-writes store (see `FindingOutcome::Pending`).
    pub findings_pending: usize,
    pub findings_skipped: BTreeMap<String, usize>,
    pub findings_failed: BTreeMap<String, usize>,
}

impl BatchTally {
    pub fn count_record(&mut self, outcome: &RecordOutcome) {
        match outcome {
            RecordOutcome::Processed => self.records_processed += 1,
            RecordOutcome::Skipped(_) => self.records_skipped += 1,
            RecordOutcome::Poison => self.records_poison += 1,
            RecordOutcome::Failed => self.records_failed += 1,
        }
    }

    pub fn count_finding(&mut self, outcome: &FindingOutcome) {
        match outcome {
            FindingOutcome::Enriched { partial } => {
                self.findings_enriched += 1;
                if *partial {
                    self.findings_enriched_partial += 1;
                }
            }
            FindingOutcome::Deferred => self.findings_deferred += 1,
            FindingOutcome::Pending => self.findings_pending += 1,
            FindingOutcome::Skipped(reason) => {
                *self.findings_skipped.entry(reason.as_label().to_owned()).or_default() += 1
            }
            FindingOutcome::Failed(reason) => {
                *self.findings_failed.entry(reason.as_label().to_owned()).or_default() += 1
            }
        }
    }

    pub fn findings_skipped_total(&self) -> usize {
        self.findings_skipped.values().sum()
    }

    pub fn findings_failed_total(&self) -> usize {
        self.findings_failed.values().sum()
    }

    /// True when every record and every finding is accounted for exactly once.
    pub fn balances(&self) -> bool {
        self.records_in == self.records_processed + self.records_skipped + self.records_poison + self.records_failed
            && self.findings_in
                == self.findings_enriched
                    + self.findings_deferred
                    + self.findings_pending
                    + self.findings_skipped_total()
                    + self.findings_failed_total()
    }
}

impl fmt::Display for BatchTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "records {} = processed {} + skipped {} + poison {} + failed {}; findings {} = enriched {} + deferred {} + pending {} + skipped {} + failed {}",
            self.records_in,
            self.records_processed,
            self.records_skipped,
            self.records_poison,
            self.records_failed,
            self.findings_in,
            self.findings_enriched,
            self.findings_deferred,
            self.findings_pending,
            self.findings_skipped_total(),
            self.findings_failed_total()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_fails_when_one_of_its_findings_fails_and_gaps_fail_safe() {
        let slot = |id: &str, findings: Vec<usize>| RecordSlot { identifier: Some(id.into()), outcome: None, findings };
        let records = vec![
            slot("a", vec![0, 1]),
            slot("b", vec![2]),
            slot("c", vec![3]),
            slot("d", vec![4]),
            RecordSlot { identifier: None, outcome: Some(RecordOutcome::Poison), findings: vec![] },
        ];
        let findings = vec![
            Some(FindingOutcome::Enriched { partial: false }),
            Some(FindingOutcome::Failed(FailReason::Deadline)),
            Some(FindingOutcome::Skipped(SkipReason::Archived)),
            None,
            Some(FindingOutcome::Deferred),
        ];
        let mut tally = BatchTally { records_in: 5, findings_in: 5, ..Default::default() };
        assert_eq!(settle(&mut tally, records, findings), ["a", "c"]);
        assert!(tally.balances(), "{tally}");
        assert_eq!((tally.records_failed, tally.records_processed, tally.records_poison), (2, 2, 1));
        assert_eq!(tally.findings_deferred, 1, "a deferred finding's record is acknowledged");
    }
}
