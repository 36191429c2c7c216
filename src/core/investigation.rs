//! Investigation jobs, as the enricher asks for them and the investigator moves them along:
//! one job per (entity, scope window), whatever the number of findings, duplicates, replays
//! and retries.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::enrich::{FIELD_VALUE_MAX_CHARS, NOTE_MAX_CHARS, keys, truncate_chars};
use crate::core::finding::FindingId;

/// Findings a job remembers; more are counted, not stored. One BatchUpdateFindings' worth.
pub const MAX_FINDINGS_PER_JOB: usize = 100;

/// The `investigate` value of a finding whose account is outside the behavior graph.
pub const NOT_COVERED: &str = "not-covered";

/// Detective's limit on an investigation's scope window. Not stated in the API reference we
/// could read: 30 days is the lookback this project already allows
/// (`INVESTIGATION_LOOKBACK_HOURS` ≤ 720), and windows are kept within it, so either answer
/// is safe as long as Detective accepts at least that.
pub const MAX_SCOPE_SECONDS: i64 = 30 * 24 * 3600;

/// A request to investigate an entity over a window, on behalf of some findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub entity_arn: String,
    /// Seconds since the epoch: the lookback before the findings' first observation, by hour.
    pub scope_start: i64,
    pub findings: BTreeSet<FindingId>,
    /// Who goes first when the Detective quota is short: explicit requests, then severity
    /// (`select::priority`). A job keeps the highest priority any of its findings asked for.
    pub priority: u8,
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
    /// The entity's account is not a member of the behavior graph: ended without a call.
    NotCovered,
    /// Its findings went to an earlier pending job of the same entity, whose window covers it.
    Joined,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Starting => "STARTING",
            JobStatus::Running => "RUNNING",
            JobStatus::Complete => "COMPLETE",
            JobStatus::Failed => "FAILED",
            JobStatus::NotCovered => "NOT_COVERED",
            JobStatus::Joined => "JOINED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => JobStatus::Pending,
            "STARTING" => JobStatus::Starting,
            "RUNNING" => JobStatus::Running,
            "COMPLETE" => JobStatus::Complete,
            "FAILED" => JobStatus::Failed,
            "NOT_COVERED" => JobStatus::NotCovered,
            "JOINED" => JobStatus::Joined,
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
    /// The highest priority any finding of the job asked for.
    pub priority: u8,
    /// When the first finding asked for it (None in jobs written before it was kept).
    pub created_at: Option<i64>,
}

/// How long a job is expected to take from its first request to its verdict: a few passes
/// and an investigation (Detective's take minutes). Past this, the pass report names what the
/// job waits for.
pub const EXPECTED_JOB_SECONDS: i64 = 30 * 60;

/// What an active job waits for when a pass leaves it active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Wait {
    /// A transient failure was retried: the next attempt (`attempts` so far) is due at `at`.
    NextAttempt { at: i64, attempts: u32 },
    /// Due, but the pass's Detective quota went to jobs of higher priority (or the pass ran
    /// out of time): the next pass.
    Quota,
    /// Its scope window has not ended yet (Detective investigates windows in the past): due at `at`.
    ScopeWindow { at: i64 },
    /// Detective is running the investigation.
    Investigation,
    /// Another runner claimed it at `since`; if it has not started by `since` + 600 s it fails
    /// rather than start twice.
    Claim { since: i64 },
    /// The pass's step failed (logged with its cause); the next pass tries again.
    NextPass,
}

impl Wait {
    /// The earliest time the job can move on, when that is known to be later than the next pass.
    pub fn due_at(self) -> Option<i64> {
        match self {
            Wait::NextAttempt { at, .. } | Wait::ScopeWindow { at } => Some(at),
            Wait::Claim { since } => Some(since + STALE_CLAIM_SECONDS),
            Wait::Quota | Wait::Investigation | Wait::NextPass => None,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Wait::NextAttempt { .. } => "next_attempt",
            Wait::Quota => "quota",
            Wait::ScopeWindow { .. } => "scope_window",
            Wait::Investigation => "investigation",
            Wait::Claim { .. } => "claim",
            Wait::NextPass => "next_pass",
        }
    }
}

/// A claim older than this, without an investigation id, may or may not have started one:
/// it is failed rather than started twice.
pub const STALE_CLAIM_SECONDS: i64 = 600;

/// Detective wants the window to end in the past: a window ends at least this long ago.
pub const SCOPE_END_LAG_SECONDS: i64 = 300;

/// The shortest window a job asks for: an hour from its start.
pub const MIN_SCOPE_SECONDS: i64 = 3600;

impl Job {
    /// When the job's shortest window (an hour) has ended long enough ago to be investigated.
    pub fn window_closes_at(&self) -> i64 {
        self.scope_start + MIN_SCOPE_SECONDS + SCOPE_END_LAG_SECONDS
    }

    /// The 12-digit account of the job's entity (the fifth field of its IAM ARN).
    pub fn entity_account(&self) -> Option<&str> {
        self.entity_arn.split(':').nth(4).filter(|a| crate::core::finding::is_account_id(a))
    }
}

/// Joins pending jobs of one entity that different batches queued (their windows start on
/// different days): the earliest leads, and its window, ending now, covers the later ones as
/// long as it stays within [`MAX_SCOPE_SECONDS`]. Returns the jobs to advance, leads carrying
/// their followers' findings and priority, and each follower with its lead's id.
pub fn join_pending(jobs: Vec<Job>, now: i64) -> (Vec<Job>, Vec<(String, Job)>) {
    let mut kept: Vec<Job> = Vec::with_capacity(jobs.len());
    let mut followers = Vec::new();
    let mut lead_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut jobs = jobs;
    jobs.sort_by(|a, b| (a.scope_start, &a.job_id).cmp(&(b.scope_start, &b.job_id)));
    for job in jobs {
        let due = job.status == JobStatus::Pending && job.next_attempt_at <= now;
        if !due {
            kept.push(job);
            continue;
        }
        match lead_of.get(&job.entity_arn) {
            Some(&i) if now - kept[i].scope_start <= MAX_SCOPE_SECONDS => {
                let lead = &mut kept[i];
                lead.priority = lead.priority.max(job.priority);
                for finding in &job.findings {
                    if lead.findings.len() >= MAX_FINDINGS_PER_JOB {
                        lead.findings_overflow += 1;
                    } else if !lead.findings.contains(finding) {
                        lead.findings.push(finding.clone());
                    }
                }
                lead.findings_overflow += job.findings_overflow;
                followers.push((lead.job_id.clone(), job));
            }
            _ => {
                lead_of.insert(job.entity_arn.clone(), kept.len());
                kept.push(job);
            }
        }
    }
    (kept, followers)
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
    NotCovered {
        reason: String,
    },
}

/// Separates the account part of a note from the investigation part.
// The Note's two parts are composed where the Note is rendered.
pub use crate::core::enrich::{NOTE_SEPARATOR, account_part_of, compose_note};

/// What a finished job writes to its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Complete {
        investigation_id: String,
        severity: String,
        indicators: BTreeMap<String, usize>,
        graph: String,
    },
    Failed {
        reason: String,
    },
    /// The entity's account is outside the behavior graph (found before calling, or Detective
    /// said so): no investigation can succeed, and none is retried.
    NotCovered {
        reason: String,
    },
}

/// Between the note's lines (severity, each indicator, the link).
pub const NOTE_LINE_SEPARATOR: &str = "; ";

/// Indicators named in a note (one line each); the console has the rest.
pub const NOTE_INDICATORS: usize = 4;

/// Indicator types, most frequent first (ties by name), for the note and the fields.
fn top_indicators(indicators: &BTreeMap<String, usize>) -> Vec<(&str, usize)> {
    let mut top: Vec<(&str, usize)> = indicators.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top
}

/// The console's investigations page in the graph's Region. The AWS references we could read
/// document no console URL for Detective at all, so the link is to the Region's list (which
/// the note's investigation id finds) rather than to a guessed per-investigation path.
pub fn console_link(region: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/detective/home?region={region}#investigations")
}

impl Verdict {
    /// The investigation part of the note: severity, the top indicators one line each, and
    /// the console link, which names the graph's Region (the fourth field of its ARN), or
    /// `region` when the ARN has none. Within 256 characters, so the account part keeps room.
    pub fn note_text(&self, region: &str) -> String {
        match self {
            Verdict::Complete { investigation_id, severity, indicators, graph } => {
                let region = graph.split(':').nth(3).filter(|r| !r.is_empty()).unwrap_or(region);
                let link = console_link(region);
                let head = format!("Detective {investigation_id}: severity {severity}");
                let top = top_indicators(indicators);
                let mut lines = vec![head];
                if top.is_empty() {
                    lines.push("no indicators".to_owned());
                }
                let budget = NOTE_MAX_CHARS / 2 - link.chars().count() - NOTE_LINE_SEPARATOR.len();
                for (kind, n) in top.iter().take(NOTE_INDICATORS) {
                    let line = format!("{kind} x{n}");
                    let used: usize = lines.iter().map(|l| l.chars().count() + NOTE_LINE_SEPARATOR.len()).sum();
                    if used + line.chars().count() > budget {
                        break;
                    }
                    lines.push(line);
                }
                lines.push(link);
                // Not newlines: the Note's documented pattern is `.*\S.*`, and whether
                // Security Hub matches it across lines is not stated; "; " is safe either way.
                lines.join(NOTE_LINE_SEPARATOR)
            }
            Verdict::Failed { reason } => format!("Detective investigation failed: {reason}"),
            Verdict::NotCovered { reason } => format!("Not investigated: {reason}"),
        }
    }

    /// The UserDefinedFields a verdict sets.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Verdict::Complete { investigation_id, severity, indicators, .. } => {
                let kinds: Vec<&str> = top_indicators(indicators).into_iter().map(|(k, _)| k).collect();
                vec![
                    (keys::INVESTIGATE, "complete".into()),
                    (keys::INVESTIGATION_SEVERITY, severity.clone()),
                    (keys::INVESTIGATION_ID, investigation_id.clone()),
                    (keys::INVESTIGATION_INDICATORS, truncate_chars(&kinds.join(","), FIELD_VALUE_MAX_CHARS)),
                ]
            }
            Verdict::Failed { .. } => vec![(keys::INVESTIGATE, "failed".into())],
            Verdict::NotCovered { .. } => vec![(keys::INVESTIGATE, NOT_COVERED.into())],
        }
    }

    /// The job's final state.
    pub fn job_change(&self) -> JobChange {
        match self {
            Verdict::Complete { severity, .. } => JobChange::Complete { severity: severity.clone() },
            Verdict::Failed { reason } => JobChange::Failed { reason: reason.clone() },
            Verdict::NotCovered { reason } => JobChange::NotCovered { reason: reason.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(id: &str, entity: &str, start: i64, status: JobStatus, findings: &[&str], priority: u8) -> Job {
        Job {
            job_id: id.into(),
            entity_arn: entity.into(),
            scope_start: start,
            status,
            findings: findings.iter().map(|f| FindingId { id: (*f).into(), product_arn: "p".into() }).collect(),
            findings_overflow: 0,
            attempts: 0,
            next_attempt_at: 0,
            claimed_at: None,
            investigation_id: None,
            graph_arn: None,
            priority,
            created_at: None,
        }
    }

    #[test]
    fn pending_jobs_of_one_entity_join_the_earliest_within_the_scope_limit() {
        let day = 86_400;
        let now = 40 * day;
        let jobs = vec![
            job("a2", "alice", 35 * day, JobStatus::Pending, &["f2", "f3"], 12),
            job("a1", "alice", 34 * day, JobStatus::Pending, &["f1"], 3),
            job("a0", "alice", 5 * day, JobStatus::Pending, &["f0"], 3),
            job("b1", "bob", 36 * day, JobStatus::Pending, &["g1"], 3),
            job("b0", "bob", 35 * day, JobStatus::Running, &["g0"], 3),
        ];
        let (kept, followers) = join_pending(jobs, now);
        let ids: Vec<&str> = kept.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, ["a0", "a1", "b0", "b1"], "too old to lead, and a running job leads nothing");
        assert_eq!(followers.len(), 1);
        assert_eq!((followers[0].0.as_str(), followers[0].1.job_id.as_str()), ("a1", "a2"));
        let lead = &kept[1];
        assert_eq!(lead.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["f1", "f2", "f3"]);
        assert_eq!(lead.priority, 12);
    }

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
        assert!(text.starts_with("Detective i-1: severity HIGH; TTP_OBSERVED x2; "), "{text}");
        assert!(text.contains("https://eu-west-1.console.aws.amazon.com/detective/home?region=eu-west-1"), "{text}");
        assert_eq!(verdict.fields()[0], (keys::INVESTIGATE, "complete".to_owned()));
    }

    #[test]
    fn the_top_indicators_one_line_each_within_half_a_note() {
        let indicators: BTreeMap<String, usize> = [
            ("TTP_OBSERVED", 5),
            ("IMPOSSIBLE_TRAVEL", 1),
            ("NEW_GEOLOCATION", 3),
            ("FLAGGED_IP_ADDRESS", 3),
            ("NEW_USER_AGENT", 2),
            ("RELATED_FINDING", 9),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        let verdict = Verdict::Complete {
            investigation_id: "000000000000000000001".into(),
            severity: "CRITICAL".into(),
            indicators,
            graph: "arn:aws:detective:us-east-1:111122223333:graph:abc".into(),
        };
        let text = verdict.note_text("us-east-1");
        let lines: Vec<&str> = text.split(NOTE_LINE_SEPARATOR).collect();
        assert_eq!(
            &lines[1..5],
            ["RELATED_FINDING x9", "TTP_OBSERVED x5", "FLAGGED_IP_ADDRESS x3", "NEW_GEOLOCATION x3"]
        );
        assert!(lines[5].starts_with("https://us-east-1.console.aws.amazon.com/detective/"));
        assert!(text.chars().count() <= NOTE_MAX_CHARS / 2, "{}", text.chars().count());
        let note = compose_note(&"a".repeat(600), &text);
        assert!(note.chars().count() <= NOTE_MAX_CHARS && note.ends_with("#investigations"));
        let fields: BTreeMap<_, _> = verdict.fields().into_iter().collect();
        assert_eq!(fields[keys::INVESTIGATION_SEVERITY], "CRITICAL");
        assert_eq!(
            fields[keys::INVESTIGATION_INDICATORS],
            "RELATED_FINDING,TTP_OBSERVED,FLAGGED_IP_ADDRESS,NEW_GEOLOCATION,NEW_USER_AGENT,IMPOSSIBLE_TRAVEL"
        );
        let outside = Verdict::NotCovered { reason: "account 1 is not a member".into() };
        assert_eq!(outside.fields(), vec![(keys::INVESTIGATE, "not-covered".to_owned())]);
        assert_eq!(outside.job_change(), JobChange::NotCovered { reason: "account 1 is not a member".into() });
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
