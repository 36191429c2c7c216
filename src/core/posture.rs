//! Posture counts: who holds the open findings. A pass of the sweep counts every finding it
//! examines, on both hubs, by the owner, environment, criticality and OU path its account's
//! rendering gave it (the values the findings carry, never routed again here) and by severity
//! on one scale; plus how many the pass left complete, `Partial` or stale. Bounded before it is
//! stored or published: the top N owners and `other`; a finding without an owner is `unowned`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::enrich::AccountEnrichment;
use crate::core::finding::Finding;
use crate::core::outcome::{FindingOutcome, SkipReason};
use crate::core::time::parse_timestamp_millis;

/// The owner of findings whose account routing gave no owner.
pub const UNOWNED: &str = "unowned";
/// The owners beyond the top N, together (and OU paths beyond `MAX_OU_PATHS`).
pub const OTHER: &str = "other";
/// An environment or criticality that routing left unset.
pub const UNSET: &str = "unset";
/// Findings whose account has no OU path (not resolved, or not in the organization).
pub const NO_OU_PATH: &str = "unknown";
/// The default of `POSTURE_TOP_OWNERS`.
pub const DEFAULT_TOP_OWNERS: usize = 20;
/// OU paths kept in a stored pass: the largest, the rest counted as `other`. Keeps the item
/// far below DynamoDB's 400 KB whatever the organization's shape.
pub const MAX_OU_PATHS: usize = 1000;

/// One severity scale for both hubs: ASFF `Severity.Label`, OCSF `severity` (or `severity_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    /// No label, or OCSF's `Unknown` (0) and `Other` (99).
    Unknown,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Unknown,
    ];

    /// ASFF's labels (`CRITICAL` … `INFORMATIONAL`) and OCSF's captions (`Critical`, `Fatal`,
    /// `Informational`, …), in any case.
    pub fn from_label(label: &str) -> Severity {
        match label.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" | "FATAL" => Severity::Critical,
            "HIGH" => Severity::High,
            "MEDIUM" => Severity::Medium,
            "LOW" => Severity::Low,
            "INFORMATIONAL" | "INFO" => Severity::Informational,
            _ => Severity::Unknown,
        }
    }

    /// OCSF `severity_id`: 1 Informational … 5 Critical, 6 Fatal; 0 Unknown, 99 Other.
    pub fn from_ocsf_id(id: i64) -> Severity {
        match id {
            1 => Severity::Informational,
            2 => Severity::Low,
            3 => Severity::Medium,
            4 => Severity::High,
            5 | 6 => Severity::Critical,
            _ => Severity::Unknown,
        }
    }

    pub fn of(finding: &Finding) -> Severity {
        finding.severity.as_ref().and_then(|s| s.label.as_deref()).map_or(Severity::Unknown, Severity::from_label)
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Informational => "informational",
            Severity::Unknown => "unknown",
        }
    }
}

/// Where a pass left a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Carries its account's current metadata, complete.
    Complete,
    /// Carries `Partial` metadata (its account not resolved yet), or waits for the warm-up.
    Partial,
    /// Its write failed: it still carries older metadata; the next pass comes back to it.
    Stale,
    /// Not ours to enrich: archived meanwhile, another's OCSF comment, an invalid account id,
    /// refused by Security Hub.
    NotEnriched,
}

impl Standing {
    pub fn of(outcome: &FindingOutcome) -> Standing {
        match outcome {
            FindingOutcome::Enriched { partial: false }
            | FindingOutcome::Skipped(SkipReason::Current | SkipReason::Unchanged) => Standing::Complete,
            FindingOutcome::Enriched { partial: true }
            | FindingOutcome::Skipped(SkipReason::StillPartial | SkipReason::AwaitingWarmUp)
            // A sweep never defers nor holds; were it to, the finding would not carry its
            // metadata yet.
            | FindingOutcome::Deferred
            | FindingOutcome::Pending => Standing::Partial,
            FindingOutcome::Failed(_) => Standing::Stale,
            FindingOutcome::Skipped(_) => Standing::NotEnriched,
        }
    }
}

/// Open findings of one group, by severity, and when the oldest critical and high were first
/// observed (epoch seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(default)]
    pub critical: u64,
    #[serde(default)]
    pub high: u64,
    #[serde(default)]
    pub medium: u64,
    #[serde(default)]
    pub low: u64,
    #[serde(default)]
    pub informational: u64,
    #[serde(default)]
    pub unknown: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_critical: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_high: Option<i64>,
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Tally {
    pub fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Informational => self.informational,
            Severity::Unknown => self.unknown,
        }
    }

    pub fn total(&self) -> u64 {
        Severity::ALL.iter().map(|&s| self.get(s)).sum()
    }

    fn add(&mut self, severity: Severity, first_seen: Option<i64>) {
        let slot = match severity {
            Severity::Critical => {
                self.oldest_critical = earliest(self.oldest_critical, first_seen);
                &mut self.critical
            }
            Severity::High => {
                self.oldest_high = earliest(self.oldest_high, first_seen);
                &mut self.high
            }
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Informational => &mut self.informational,
            Severity::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    fn merge(&mut self, other: &Tally) {
        self.critical += other.critical;
        self.high += other.high;
        self.medium += other.medium;
        self.low += other.low;
        self.informational += other.informational;
        self.unknown += other.unknown;
        self.oldest_critical = earliest(self.oldest_critical, other.oldest_critical);
        self.oldest_high = earliest(self.oldest_high, other.oldest_high);
    }
}

/// What the account's rendering says of a finding's place: the values its fields carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    pub owner: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub criticality: Option<&'a str>,
    /// "Root/Workloads/Prod".
    pub ou_path: Option<&'a str>,
}

impl<'a> Placement<'a> {
    pub fn of(enrichment: &'a AccountEnrichment) -> Self {
        Placement {
            owner: enrichment.routing.owner.as_deref(),
            environment: enrichment.routing.environment.as_deref(),
            criticality: enrichment.routing.criticality.as_deref(),
            ou_path: enrichment.summary.ou_path.as_deref(),
        }
    }
}

/// How the report groups the counts (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Owner,
    Environment,
    Criticality,
    /// By OU path, cut at a depth.
    Ou,
}

/// The counts of a pass, or of the part of a pass done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureCounts {
    /// Findings examined; each is in every grouping once.
    pub total: u64,
    pub complete: u64,
    pub partial: u64,
    pub stale: u64,
    pub not_enriched: u64,
    pub by_owner: BTreeMap<String, Tally>,
    pub by_environment: BTreeMap<String, Tally>,
    pub by_criticality: BTreeMap<String, Tally>,
    pub by_ou_path: BTreeMap<String, Tally>,
}

/// A finding's first observation (epoch seconds): `FirstObservedAt`, else `CreatedAt` (OCSF:
/// `first_seen_time_dt`, else `created_time_dt`).
fn first_seen(finding: &Finding) -> Option<i64> {
    [&finding.first_observed_at, &finding.created_at]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(parse_timestamp_millis))
        .map(|ms| ms.div_euclid(1000))
}

fn named(value: Option<&str>, absent: &str) -> String {
    value.map(str::trim).filter(|v| !v.is_empty()).unwrap_or(absent).to_owned()
}

impl PostureCounts {
    /// Counts one examined finding.
    pub fn count(&mut self, finding: &Finding, place: &Placement<'_>, standing: Standing) {
        self.total += 1;
        match standing {
            Standing::Complete => self.complete += 1,
            Standing::Partial => self.partial += 1,
            Standing::Stale => self.stale += 1,
            Standing::NotEnriched => self.not_enriched += 1,
        }
        let (severity, seen) = (Severity::of(finding), first_seen(finding));
        for (map, key) in [
            (&mut self.by_owner, named(place.owner, UNOWNED)),
            (&mut self.by_environment, named(place.environment, UNSET)),
            (&mut self.by_criticality, named(place.criticality, UNSET)),
            (&mut self.by_ou_path, named(place.ou_path, NO_OU_PATH)),
        ] {
            map.entry(key).or_default().add(severity, seen);
        }
    }

    /// Adds the counts of a later part of the same pass.
    pub fn merge(&mut self, later: PostureCounts) {
        self.total += later.total;
        self.complete += later.complete;
        self.partial += later.partial;
        self.stale += later.stale;
        self.not_enriched += later.not_enriched;
        for (mine, theirs) in [
            (&mut self.by_owner, later.by_owner),
            (&mut self.by_environment, later.by_environment),
            (&mut self.by_criticality, later.by_criticality),
            (&mut self.by_ou_path, later.by_ou_path),
        ] {
            for (key, tally) in theirs {
                mine.entry(key).or_default().merge(&tally);
            }
        }
    }

    /// The counts as stored and published: the `top_owners` owners with the most open findings
    /// (then the most critical, then by name), `unowned`, and the rest as `other`; the largest
    /// `MAX_OU_PATHS` OU paths and the rest as `other`.
    pub fn bounded(mut self, top_owners: usize) -> PostureCounts {
        let unowned = self.by_owner.remove(UNOWNED);
        self.by_owner = keep_largest(std::mem::take(&mut self.by_owner), top_owners);
        if let Some(unowned) = unowned {
            self.by_owner.insert(UNOWNED.to_owned(), unowned);
        }
        self.by_ou_path = keep_largest(std::mem::take(&mut self.by_ou_path), MAX_OU_PATHS);
        self
    }

    /// Counts by OU path cut at `depth` segments (`2`: `Root/Workloads`); `None`: whole paths.
    pub fn by_ou_depth(&self, depth: Option<usize>) -> BTreeMap<String, Tally> {
        let mut cut: BTreeMap<String, Tally> = BTreeMap::new();
        for (path, tally) in &self.by_ou_path {
            let key = match depth {
                Some(depth) if path != OTHER && path != NO_OU_PATH => {
                    path.split('/').take(depth.max(1)).collect::<Vec<_>>().join("/")
                }
                _ => path.clone(),
            };
            cut.entry(key).or_default().merge(tally);
        }
        cut
    }

    /// One grouping's rows, most critical first, then most high, then most open findings.
    pub fn rows(&self, by: Grouping, depth: Option<usize>) -> Vec<(String, Tally)> {
        let groups = match by {
            Grouping::Owner => self.by_owner.clone(),
            Grouping::Environment => self.by_environment.clone(),
            Grouping::Criticality => self.by_criticality.clone(),
            Grouping::Ou => self.by_ou_depth(depth),
        };
        let mut rows: Vec<(String, Tally)> = groups.into_iter().collect();
        rows.sort_by(|(a, x), (b, y)| {
            (y.critical, y.high, y.total()).cmp(&(x.critical, x.high, x.total())).then_with(|| a.cmp(b))
        });
        rows
    }

    /// Open critical and high findings of the whole organization, and the unowned ones.
    pub fn open(&self, severity: Severity) -> u64 {
        self.by_owner.values().map(|t| t.get(severity)).sum()
    }

    pub fn unowned(&self) -> u64 {
        self.by_owner.get(UNOWNED).map_or(0, Tally::total)
    }
}

/// The `keep` groups with the most findings (ties: most critical, then by name), the others
/// merged into `other` (with an `other` group already there).
fn keep_largest(groups: BTreeMap<String, Tally>, keep: usize) -> BTreeMap<String, Tally> {
    let mut ranked: Vec<(String, Tally)> = groups.into_iter().collect();
    ranked.sort_by(|(a, x), (b, y)| (y.total(), y.critical).cmp(&(x.total(), x.critical)).then_with(|| a.cmp(b)));
    let mut kept = BTreeMap::new();
    let mut rest: Option<Tally> = None;
    for (i, (key, tally)) in ranked.into_iter().enumerate() {
        if i < keep && key != OTHER {
            kept.insert(key, tally);
        } else {
            rest.get_or_insert_with(Tally::default).merge(&tally);
        }
    }
    if let Some(rest) = rest {
        kept.insert(OTHER.to_owned(), rest);
    }
    kept
}

/// The last completed pass's counts, as the cache table keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedPass {
    /// Epoch seconds.
    pub started_at: i64,
    pub completed_at: i64,
    /// Bounded (`PostureCounts::bounded`).
    pub counts: PostureCounts,
}

/// A pass still running: what it has counted so far (not bounded: the top owners are chosen
/// at its end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassProgress {
    pub started_at: i64,
    pub updated_at: i64,
    pub counts: PostureCounts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::finding::Severity as FindingSeverity;
    use crate::core::outcome::FailReason;
    use proptest::prelude::*;

    fn finding(severity: Option<&str>, first_seen: Option<&str>) -> Finding {
        let mut f: Finding =
            serde_json::from_str(r#"{"Id":"f","ProductArn":"p","AwsAccountId":"111122223333"}"#).unwrap();
        f.severity = severity.map(|l| FindingSeverity { label: Some(l.to_owned()) });
        f.first_observed_at = first_seen.map(str::to_owned);
        f
    }

    #[test]
    fn both_hubs_severities_fall_on_one_scale() {
        assert_eq!(Severity::from_label("CRITICAL"), Severity::Critical);
        assert_eq!(Severity::from_label("Fatal"), Severity::Critical);
        assert_eq!(Severity::from_label("Informational"), Severity::Informational);
        assert_eq!(Severity::from_label("Other"), Severity::Unknown);
        assert_eq!(Severity::from_ocsf_id(4), Severity::High);
        assert_eq!(Severity::from_ocsf_id(99), Severity::Unknown);
        assert_eq!(Severity::of(&finding(None, None)), Severity::Unknown);
    }

    #[test]
    fn outcomes_stand_where_the_pass_left_the_finding() {
        assert_eq!(Standing::of(&FindingOutcome::Skipped(SkipReason::Current)), Standing::Complete);
        assert_eq!(Standing::of(&FindingOutcome::Skipped(SkipReason::AwaitingWarmUp)), Standing::Partial);
        assert_eq!(Standing::of(&FindingOutcome::Enriched { partial: true }), Standing::Partial);
        assert_eq!(Standing::of(&FindingOutcome::Failed(FailReason::Transient)), Standing::Stale);
        assert_eq!(Standing::of(&FindingOutcome::Skipped(SkipReason::ForeignComment)), Standing::NotEnriched);
    }

    #[test]
    fn the_oldest_critical_per_owner_and_the_rows_most_critical_first() {
        let mut counts = PostureCounts::default();
        let blue = Placement { owner: Some("blue"), ou_path: Some("Root/Workloads/Prod"), ..Default::default() };
        let red = Placement { owner: Some("red"), ou_path: Some("Root/Workloads/Dev"), ..Default::default() };
        counts.count(&finding(Some("CRITICAL"), Some("2026-01-02T00:00:00Z")), &blue, Standing::Complete);
        counts.count(&finding(Some("CRITICAL"), Some("2026-01-01T00:00:00.5Z")), &blue, Standing::Complete);
        for _ in 0..3 {
            counts.count(&finding(Some("HIGH"), None), &red, Standing::Partial);
        }
        counts.count(&finding(Some("LOW"), None), &Placement::default(), Standing::Stale);
        let rows = counts.rows(Grouping::Owner, None);
        assert_eq!(rows.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["blue", "red", UNOWNED]);
        assert_eq!(rows[0].1.oldest_critical, Some(1_767_225_600));
        assert_eq!(rows[1].1.oldest_high, None);
        let ou = counts.by_ou_depth(Some(2));
        assert_eq!(ou["Root/Workloads"].total(), 5);
        assert_eq!(ou[NO_OU_PATH].total(), 1);
        assert_eq!((counts.complete, counts.partial, counts.stale), (2, 3, 1));
        assert_eq!(counts.by_environment[UNSET].total(), 6);
    }

    #[test]
    fn beyond_the_top_owners_is_other_and_unowned_stays() {
        let mut counts = PostureCounts::default();
        for (owner, n) in [("a", 5), ("b", 4), ("c", 3), ("d", 2)] {
            for _ in 0..n {
                counts.count(
                    &finding(Some("HIGH"), None),
                    &Placement { owner: Some(owner), ..Default::default() },
                    Standing::Complete,
                );
            }
        }
        counts.count(&finding(Some("HIGH"), None), &Placement::default(), Standing::Complete);
        let bounded = counts.bounded(2);
        assert_eq!(bounded.by_owner.keys().collect::<Vec<_>>(), ["a", "b", OTHER, UNOWNED]);
        assert_eq!(bounded.by_owner[OTHER].high, 5);
    }

    /// One generated finding: owner, environment, criticality (indices, `None` unset), OU path
    /// segments, severity, standing, first seen (days).
    type Generated = (Option<u8>, Option<u8>, Option<u8>, Vec<u8>, u8, u8, Option<u16>);

    fn generated() -> impl Strategy<Value = Generated> {
        (
            proptest::option::of(0u8..30),
            proptest::option::of(0u8..3),
            proptest::option::of(0u8..3),
            proptest::collection::vec(0u8..4, 0..5),
            0u8..6,
            0u8..4,
            proptest::option::of(0u16..2000),
        )
    }

    fn count_all(items: &[Generated]) -> PostureCounts {
        let mut counts = PostureCounts::default();
        for (owner, env, crit, path, severity, standing, seen) in items {
            let owner = owner.map(|o| format!("team-{o}"));
            let env = env.map(|e| format!("env-{e}"));
            let crit = crit.map(|c| format!("crit-{c}"));
            let path = (!path.is_empty()).then(|| {
                std::iter::once("Root".to_owned())
                    .chain(path.iter().map(|s| format!("ou{s}")))
                    .collect::<Vec<_>>()
                    .join("/")
            });
            let label = ["CRITICAL", "High", "MEDIUM", "low", "INFORMATIONAL", "Other"][*severity as usize];
            let seen = seen.map(|d| {
                chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(d) * 86_400, 0).unwrap().to_rfc3339()
            });
            let standing =
                [Standing::Complete, Standing::Partial, Standing::Stale, Standing::NotEnriched][*standing as usize];
            let place = Placement {
                owner: owner.as_deref(),
                environment: env.as_deref(),
                criticality: crit.as_deref(),
                ou_path: path.as_deref(),
            };
            counts.count(&finding(Some(label), seen.as_deref()), &place, standing);
        }
        counts
    }

    fn sum(groups: &BTreeMap<String, Tally>) -> u64 {
        groups.values().map(Tally::total).sum()
    }

    proptest! {
        /// The counts of a pass add up to the findings it examined, by every grouping, at every
        /// depth, bounded or not, counted in one part or in two merged.
        #[test]
        fn counts_add_up_to_the_findings_examined(items in proptest::collection::vec(generated(), 0..300), top in 0usize..8, split in 0usize..300, depth in 1usize..6) {
            let n = items.len() as u64;
            let counts = count_all(&items);
            prop_assert_eq!(counts.total, n);
            prop_assert_eq!(counts.complete + counts.partial + counts.stale + counts.not_enriched, n);
            for groups in [&counts.by_owner, &counts.by_environment, &counts.by_criticality, &counts.by_ou_path] {
                prop_assert_eq!(sum(groups), n);
            }
            prop_assert_eq!(sum(&counts.by_ou_depth(Some(depth))), n);
            for by in [Grouping::Owner, Grouping::Environment, Grouping::Criticality, Grouping::Ou] {
                prop_assert_eq!(counts.rows(by, Some(depth)).iter().map(|(_, t)| t.total()).sum::<u64>(), n);
            }
            let critical = items.iter().filter(|i| i.4 == 0).count() as u64;
            prop_assert_eq!(counts.open(Severity::Critical), critical);

            let bounded = counts.clone().bounded(top);
            prop_assert!(bounded.by_owner.len() <= top + 2);
            prop_assert_eq!(sum(&bounded.by_owner), n);
            prop_assert_eq!(bounded.unowned(), counts.unowned());
            prop_assert_eq!(bounded.open(Severity::Critical), critical);
            let oldest = |c: &PostureCounts| c.by_owner.values().filter_map(|t| t.oldest_critical).min();
            prop_assert_eq!(oldest(&bounded), oldest(&counts));

            let split = split.min(items.len());
            let mut parts = count_all(&items[..split]);
            parts.merge(count_all(&items[split..]));
            prop_assert_eq!(parts, counts);
        }
    }
}
