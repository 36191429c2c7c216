//! Investigation jobs, as the enricher asks for them and the investigator moves them along:
//! one job per (entity, scope window), whatever the number of findings, duplicates, replays
//! and retries.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::enrich::{NOTE_MAX_CHARS, keys, truncate_chars};
use crate::core::finding::FindingId;

/// Findings a job remembers; more are counted, not stored. One BatchUpdateFindings' worth.
pub const MAX_FINDINGS_PER_JOB: usize = 100;

/// A request to investigate an entity over a window, on behalf of some findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub entity_arn: String,
    /// Seconds since the epoch: the lookback before the findings' first observation, by hour.
    pub scope_start: i64,
    pub findings: BTreeSet<FindingId>,
}

impl JobRequest {
    /// Readable and deterministic, so an operator can find a job by entity.
    pub fn job_id(&self) -> String {
        format!("{}|{}", self.entity_arn, self.scope_start)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Starting,
    Running,
    Complete,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Starting => "STARTING",
            JobStatus::Running => "RUNNING",
            JobStatus::Complete => "COMPLETE",
            JobStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => JobStatus::Pending,
            "STARTING" => JobStatus::Starting,
            "RUNNING" => JobStatus::Running,
            "COMPLETE" => JobStatus::Complete,
            "FAILED" => JobStatus::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: String,
    pub entity_arn: String,
    pub scope_start: i64,
    pub status: JobStatus,
    pub findings: Vec<FindingId>,
    pub findings_overflow: u64,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub claimed_at: Option<i64>,
    pub investigation_id: Option<String>,
    pub graph_arn: Option<String>,
}

/// What enqueueing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created,
    Joined,
    /// The job already remembers its maximum of findings; these were counted instead.
    Overflow(usize),
}

/// A state change, each guarded by the state it must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    Running {
        investigation_id: String,
        graph_arn: String,
    },
    /// Back to PENDING, to be started again at `next_attempt_at`.
    Retry {
        attempts: u32,
        next_attempt_at: i64,
    },
    /// The claim is given back without having called Detective.
    Released,
    Complete {
        severity: String,
    },
    Failed {
        reason: String,
    },
}

/// Separates the account part of a note from the investigation part.
pub const NOTE_SEPARATOR: &str = " | ";

/// One note from the account part and the investigation part, within 512 characters. The
/// investigation part is the newer news, so the account part gives way first.
pub fn compose_note(account_part: &str, investigation_part: &str) -> String {
    let account_part = account_part.trim();
    if account_part.is_empty() {
        return truncate_chars(investigation_part, NOTE_MAX_CHARS);
    }
    let investigation = truncate_chars(investigation_part, NOTE_MAX_CHARS / 2);
    let room = NOTE_MAX_CHARS - investigation.chars().count() - NOTE_SEPARATOR.chars().count();
    format!("{}{NOTE_SEPARATOR}{investigation}", truncate_chars(account_part, room))
}

/// The account part of a note we wrote earlier (everything before an investigation part).
pub fn account_part_of(note: &str) -> &str {
    note.split(NOTE_SEPARATOR).next().unwrap_or(note)
}

/// What a finished job writes to its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Complete { investigation_id: String, severity: String, indicators: BTreeMap<String, usize>, graph: String },
    Failed { reason: String },
}

impl Verdict {
    /// The investigation part of the note. The console link names the graph's Region (the
    /// fourth field of its ARN), or `region` when the ARN has none.
    pub fn note_text(&self, region: &str) -> String {
        match self {
            Verdict::Complete { investigation_id, severity, indicators, graph } => {
                let found = if indicators.is_empty() {
                    "no indicators".to_owned()
                } else {
                    indicators.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
                };
                let region = graph.split(':').nth(3).filter(|r| !r.is_empty()).unwrap_or(region);
                format!(
                    "Detective investigation {investigation_id}: severity {severity}; {found}. https://{region}.console.aws.amazon.com/detective/home?region={region}#investigations"
                )
            }
            Verdict::Failed { reason } => format!("Detective investigation failed: {reason}"),
        }
    }

    /// The UserDefinedFields a verdict sets.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Verdict::Complete { investigation_id, severity, .. } => vec![
                (keys::INVESTIGATE, "complete".into()),
                (keys::INVESTIGATION_SEVERITY, severity.clone()),
                (keys::INVESTIGATION_ID, investigation_id.clone()),
            ],
            Verdict::Failed { .. } => vec![(keys::INVESTIGATE, "failed".into())],
        }
    }

    /// The job's final state.
    pub fn job_change(&self) -> JobChange {
        match self {
            Verdict::Complete { severity, .. } => JobChange::Complete { severity: severity.clone() },
            Verdict::Failed { reason } => JobChange::Failed { reason: reason.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn account_part_survives_a_round_trip() {
        let note = compose_note("Account a (1).", "Detective investigation i: severity HIGH.");
        assert_eq!(note, "Account a (1). | Detective investigation i: severity HIGH.");
        assert_eq!(account_part_of(&note), "Account a (1).");
    }

    #[test]
    fn a_verdict_links_to_its_graphs_region() {
        let verdict = Verdict::Complete {
            investigation_id: "i-1".into(),
            severity: "HIGH".into(),
            indicators: BTreeMap::from([("TTP_OBSERVED".into(), 2)]),
            graph: "arn:aws:detective:eu-west-1:111122223333:graph:abc".into(),
        };
        let text = verdict.note_text("us-east-1");
        assert!(text.contains("severity HIGH; TTP_OBSERVED 2"), "{text}");
        assert!(text.contains("https://eu-west-1.console.aws.amazon.com/detective/home?region=eu-west-1"), "{text}");
        assert_eq!(verdict.fields()[0], (keys::INVESTIGATE, "complete".to_owned()));
    }

    proptest! {
        #[test]
        fn composed_notes_fit(account in "\\PC{0,700}", investigation in "\\PC{1,700}") {
            let note = compose_note(&account, &investigation);
            prop_assert!(note.chars().count() <= NOTE_MAX_CHARS);
            prop_assert!(!note.is_empty());
        }
    }
}
