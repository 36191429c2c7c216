//! `enricher-admin report`: the last completed pass's posture counts, and how far a running
//! pass is, read from the cache table alone (no Security Hub request), printed as a table, CSV
//! or JSON: grouped by owner, environment, criticality or OU path (cut at a depth), most
//! critical first, with the age of the oldest open critical and high finding.

use std::fmt::Write as _;

use serde::Serialize;

use crate::core::posture::{CompletedPass, Grouping, PassProgress, Tally};
use crate::ports::metadata::StoreError;
use crate::ports::posture::PostureStore;

/// What the cache table holds: the last completed pass and the running one, each if any.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub last: Option<CompletedPass>,
    pub running: Option<PassProgress>,
}

/// Two GetItems of the cache table.
pub async fn load(store: &dyn PostureStore) -> Result<Snapshot, StoreError> {
    Ok(Snapshot { last: store.last_pass().await?, running: store.progress().await? })
}

/// One group's row: its open findings by severity and the ages of its oldest critical and high.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub group: String,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub informational: u64,
    pub unknown: u64,
    pub total: u64,
    pub oldest_critical_age_seconds: Option<i64>,
    pub oldest_high_age_seconds: Option<i64>,
}

/// The report as JSON prints it; the table and CSV show the same figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub by: &'static str,
    /// The OU path depth (`--by ou`); `None`: whole paths.
    pub depth: Option<usize>,
    pub pass: Option<PassSummary>,
    pub running: Option<RunningSummary>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassSummary {
    pub started_at: i64,
    pub completed_at: i64,
    /// How old the counts are: seconds since the pass ended.
    pub age_seconds: i64,
    pub findings: u64,
    pub complete: u64,
    pub partial: u64,
    pub stale: u64,
    pub not_enriched: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningSummary {
    pub started_at: i64,
    /// When its counts were last stored (at the end of each refresher run).
    pub updated_at: i64,
    pub counted: u64,
    /// `counted` against the last completed pass's findings, capped at 99: an estimate.
    pub percent_of_last_pass: Option<u64>,
}

pub fn grouping_name(by: Grouping) -> &'static str {
    match by {
        Grouping::Owner => "owner",
        Grouping::Environment => "environment",
        Grouping::Criticality => "criticality",
        Grouping::Ou => "ou",
    }
}

fn row(group: String, tally: &Tally, now: i64) -> Row {
    let age = |at: Option<i64>| at.map(|at| (now - at).max(0));
    Row {
        group,
        critical: tally.critical,
        high: tally.high,
        medium: tally.medium,
        low: tally.low,
        informational: tally.informational,
        unknown: tally.unknown,
        total: tally.total(),
        oldest_critical_age_seconds: age(tally.oldest_critical),
        oldest_high_age_seconds: age(tally.oldest_high),
    }
}

/// The report of `snapshot` at `now` (epoch seconds).
pub fn report(snapshot: &Snapshot, by: Grouping, depth: Option<usize>, now: i64) -> Report {
    let pass = snapshot.last.as_ref().map(|p| PassSummary {
        started_at: p.started_at,
        completed_at: p.completed_at,
        age_seconds: (now - p.completed_at).max(0),
        findings: p.counts.total,
        complete: p.counts.complete,
        partial: p.counts.partial,
        stale: p.counts.stale,
        not_enriched: p.counts.not_enriched,
    });
    let running = snapshot.running.as_ref().map(|r| RunningSummary {
        started_at: r.started_at,
        updated_at: r.updated_at,
        counted: r.counts.total,
        percent_of_last_pass: pass
            .as_ref()
            .filter(|p| p.findings > 0)
            .map(|p| (r.counts.total * 100 / p.findings).min(99)),
    });
    let rows = snapshot
        .last
        .as_ref()
        .map(|p| p.counts.rows(by, depth).into_iter().map(|(group, tally)| row(group, &tally, now)).collect())
        .unwrap_or_default();
    Report { by: grouping_name(by), depth: depth.filter(|_| by == Grouping::Ou), pass, running, rows }
}

/// "42 s", "17 min", "5 h", "65 d".
pub fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn utc(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map_or_else(|| epoch.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// What the counts are and how old: the header lines of the table (and of CSV on stderr).
pub fn describe(report: &Report, now: i64) -> String {
    let mut out = String::new();
    match &report.pass {
        Some(p) => {
            let _ = writeln!(
                out,
                "Last completed pass: ended {} ({} ago), took {}; {} active findings on both hubs: {} complete, {} Partial, {} stale, {} not ours to enrich.",
                utc(p.completed_at),
                human_age(p.age_seconds),
                human_age((p.completed_at - p.started_at).max(0)),
                p.findings,
                p.complete,
                p.partial,
                p.stale,
                p.not_enriched
            );
        }
        None => out.push_str("No pass over every finding has completed yet: no counts to report.\n"),
    }
    if let Some(r) = &report.running {
        let share =
            r.percent_of_last_pass.map(|p| format!(" (about {p}% of the last pass's findings)")).unwrap_or_default();
        let _ = writeln!(
            out,
            "A pass is running: started {} ago, {} findings counted so far{share}, as of {} ago.",
            human_age((now - r.started_at).max(0)),
            r.counted,
            human_age((now - r.updated_at).max(0)),
        );
    }
    out
}

fn counts(row: &Row) -> [u64; 6] {
    [row.critical, row.high, row.medium, row.low, row.informational, row.unknown]
}

/// The table for a terminal: the header lines, then one line per group.
pub fn table(report: &Report, now: i64) -> String {
    let mut out = describe(report, now);
    if report.rows.is_empty() {
        return out;
    }
    let title = match report.depth {
        Some(depth) => format!("ou (depth {depth})"),
        None => report.by.to_owned(),
    };
    let width = report.rows.iter().map(|r| r.group.chars().count()).max().unwrap_or(0).max(title.len());
    let age = |a: Option<i64>| a.map_or_else(|| "-".to_owned(), human_age);
    let _ = write!(out, "\n{title:<width$}");
    for heading in ["critical", "high", "medium", "low", "info", "unknown"] {
        let _ = write!(out, " {heading:>8}");
    }
    let _ = writeln!(out, " {:>8} {:>16} {:>12}", "total", "oldest critical", "oldest high");
    for row in &report.rows {
        let _ = write!(out, "{:<width$}", row.group);
        for n in counts(row) {
            let _ = write!(out, " {n:>8}");
        }
        let _ = writeln!(
            out,
            " {:>8} {:>16} {:>12}",
            row.total,
            age(row.oldest_critical_age_seconds),
            age(row.oldest_high_age_seconds)
        );
    }
    out
}

/// RFC 4180 quoting of one field. Hand-written: one rule (quote a field holding a comma, quote
/// or line break, doubling its quotes), not worth a dependency.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// CSV for automation: one header line, one line per group; how old the counts are is in
/// every line (`pass_completed_at`, epoch seconds), so a line stands on its own.
pub fn csv(report: &Report) -> String {
    let mut out = format!(
        "{},critical,high,medium,low,informational,unknown,total,oldest_critical_age_seconds,oldest_high_age_seconds,pass_completed_at\n",
        report.by
    );
    let completed = report.pass.as_ref().map(|p| p.completed_at.to_string()).unwrap_or_default();
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for row in &report.rows {
        let _ = write!(out, "{}", csv_field(&row.group));
        for n in counts(row) {
            let _ = write!(out, ",{n}");
        }
        let _ = writeln!(
            out,
            ",{},{},{},{completed}",
            row.total,
            opt(row.oldest_critical_age_seconds),
            opt(row.oldest_high_age_seconds)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::posture::{OTHER, PostureCounts, UNOWNED};

    fn snapshot() -> Snapshot {
        let tally =
            |critical, high, oldest_critical| Tally { critical, high, low: 1, oldest_critical, ..Default::default() };
        let mut counts = PostureCounts { total: 16, complete: 14, partial: 1, stale: 1, ..Default::default() };
        counts.by_owner.insert("blue, inc.".into(), tally(1, 9, Some(1_000)));
        counts.by_owner.insert("red".into(), tally(3, 0, Some(5_000)));
        counts.by_owner.insert(UNOWNED.into(), tally(0, 0, None));
        counts.by_ou_path.insert("Root/Workloads/Prod".into(), tally(3, 0, None));
        counts.by_ou_path.insert("Root/Workloads/Dev".into(), tally(1, 9, None));
        counts.by_ou_path.insert(OTHER.into(), tally(0, 0, None));
        Snapshot {
            last: Some(CompletedPass { started_at: 0, completed_at: 86_400, counts }),
            running: Some(PassProgress {
                started_at: 90_000,
                updated_at: 90_060,
                counts: PostureCounts { total: 8, ..Default::default() },
            }),
        }
    }

    #[test]
    fn rows_come_most_critical_first_with_their_ages_and_how_old_the_counts_are() {
        let now = 86_400 + 7200;
        let report = report(&snapshot(), Grouping::Owner, Some(2), now);
        let groups: Vec<&str> = report.rows.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(groups, ["red", "blue, inc.", UNOWNED]);
        assert_eq!(report.rows[0].oldest_critical_age_seconds, Some(now - 5_000));
        assert_eq!(report.depth, None, "a depth only for --by ou");
        assert_eq!(report.running.as_ref().unwrap().percent_of_last_pass, Some(50));
        let text = table(&report, now);
        assert!(text.contains("ended 1970-01-02 00:00 UTC (2 h ago)"), "{text}");
        assert!(text.contains("8 findings counted so far (about 50% of the last pass's findings)"), "{text}");
        assert!(text.lines().nth(4).unwrap().starts_with("red "), "{text}");
        let csv = csv(&report);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("owner,critical,high,"));
        assert_eq!(lines[2], "\"blue, inc.\",1,9,0,1,0,0,11,92600,,86400");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn by_ou_cuts_the_paths_at_the_depth() {
        let report = report(&snapshot(), Grouping::Ou, Some(2), 86_400);
        let groups: Vec<(&str, u64)> = report.rows.iter().map(|r| (r.group.as_str(), r.total)).collect();
        assert_eq!(groups, [("Root/Workloads", 15), (OTHER, 1)]);
        assert!(table(&report, 86_400).contains("ou (depth 2)"));
    }

    #[test]
    fn without_a_completed_pass_it_says_so() {
        let report = report(&Snapshot::default(), Grouping::Owner, None, 0);
        assert!(report.rows.is_empty());
        assert!(describe(&report, 0).starts_with("No pass over every finding has completed yet"));
    }
}
