//! Job planning: one investigation per actor and overlapping window, the findings that share
//! them joined, within Detective's scope limit. Pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::core::event::Candidate;
use crate::core::finding::{Finding, FindingId};
use crate::core::investigation::{JobRequest, MAX_SCOPE_SECONDS};
use crate::core::select::iam::{Entity, Unresolvable, entities};
use crate::core::select::policy::{Asks, Criteria, Trigger, priority, trigger};
use crate::core::select::sequence::{AttackSequence, attack_sequence, is_signal_of};
use crate::core::time::parse_timestamp_millis;

/// A finding's window: from the lookback before its first observation (snapped to the UTC
/// day, so that later batches seeing the same actor the same day join the same job) to its
/// last observation.
fn window(finding: &Finding, lookback_hours: i64, now_millis: i64) -> (i64, i64) {
    let start = scope_start(finding, lookback_hours, now_millis).div_euclid(86_400) * 86_400;
    let last = [&finding.last_observed_at, &finding.updated_at, &finding.first_observed_at]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(parse_timestamp_millis))
        .unwrap_or(now_millis)
        .min(now_millis)
        / 1000;
    (start, last.max(start))
}

/// What selection decided for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// One request per actor and window, with the candidates it was made from.
    pub jobs: Vec<(JobRequest, Vec<usize>)>,
    pub findings_selected: usize,
    /// Of those, asked for by a person (custom action or `investigate=true`).
    pub explicit: usize,
    pub unresolved: Vec<(usize, Unresolvable)>,
    /// Findings that joined a job another finding of the batch also asked for.
    pub findings_joined: usize,
}

struct Item {
    start: i64,
    end: i64,
    finding: FindingId,
    candidate: usize,
    priority: u8,
}

/// Chooses the investigations of a batch: findings that share an entity and an overlapping
/// window join one job, whose window is widened to cover them all within
/// [`MAX_SCOPE_SECONDS`]; an attack sequence's actors are investigated once each, and the
/// sequence's signal findings join the actors' jobs instead of starting their own.
///
/// `eligible` may hold several copies of a finding; the latest (by `UpdatedAt`) stands for
/// it, and `asks` carries what every copy asked for.
pub fn plan_jobs(
    candidates: &[Candidate],
    eligible: &[usize],
    asks: &HashMap<FindingId, Asks>,
    criteria: &Criteria,
    lookback_hours: i64,
    now_millis: i64,
) -> Selection {
    let mut chosen: BTreeMap<FindingId, usize> = BTreeMap::new();
    for &i in eligible {
        let finding = &candidates[i].finding;
        let slot = chosen.entry(finding.identifier()).or_insert(i);
        if finding.updated_at_millis() > candidates[*slot].finding.updated_at_millis() {
            *slot = i;
        }
    }
    let empty = Asks::default();
    let mut selection = Selection::default();
    let mut selected: Vec<(usize, Trigger)> = Vec::new();
    let mut sequences: Vec<AttackSequence> = Vec::new();
    for (id, &i) in &chosen {
        let finding = &candidates[i].finding;
        let Some(trigger) = trigger(finding, asks.get(id).unwrap_or(&empty), criteria) else {
            continue;
        };
        selection.findings_selected += 1;
        selection.explicit += usize::from(trigger.is_explicit());
        sequences.extend(attack_sequence(finding));
        selected.push((i, trigger));
    }

    let mut by_entity: BTreeMap<Entity, Vec<Item>> = BTreeMap::new();
    for (i, trigger) in selected {
        let finding = &candidates[i].finding;
        let (mut found, unresolved) = entities(finding);
        if let Some(sequence) = attack_sequence(finding) {
            found.extend(sequence.actors);
        }
        // A signal of a sequence in this batch is investigated as the sequence's actors.
        let actors: BTreeSet<Entity> = sequences
            .iter()
            .filter(|s| !s.actors.is_empty() && is_signal_of(finding, &s.signals))
            .flat_map(|s| s.actors.iter().cloned())
            .collect();
        if !actors.is_empty() {
            found = actors;
        }
        selection.unresolved.extend(unresolved.into_iter().map(|u| (i, u)));
        let (start, end) = window(finding, lookback_hours, now_millis);
        for entity in found {
            by_entity.entry(entity).or_default().push(Item {
                start,
                end,
                finding: finding.identifier(),
                candidate: i,
                priority: priority(finding, trigger),
            });
        }
    }

    for (entity, mut items) in by_entity {
        items.sort_by(|a, b| (a.start, a.end, &a.finding).cmp(&(b.start, b.end, &b.finding)));
        let mut current: Option<(JobRequest, i64, Vec<usize>)> = None;
        for item in items {
            if let Some((request, end, members)) = &mut current {
                let widened = (*end).max(item.end);
                if item.start <= *end && widened - request.scope_start <= MAX_SCOPE_SECONDS {
                    *end = widened;
                    request.priority = request.priority.max(item.priority);
                    if request.findings.insert(item.finding) {
                        selection.findings_joined += 1;
                    }
                    members.push(item.candidate);
                    continue;
                }
            }
            selection.jobs.extend(current.take().map(|(request, _, members)| (request, members)));
            let request = JobRequest {
                entity_arn: entity.arn.clone(),
                scope_start: item.start,
                findings: BTreeSet::from([item.finding]),
                priority: item.priority,
            };
            current = Some((request, item.end, vec![item.candidate]));
        }
        selection.jobs.extend(current.map(|(request, _, members)| (request, members)));
    }
    selection
}

/// The scope window's start: the lookback before the hour of the finding's first observation.
/// Whole hours make the job key the same on every replay of the finding.
pub fn scope_start(finding: &Finding, lookback_hours: i64, now_millis: i64) -> i64 {
    let observed = [&finding.first_observed_at, &finding.created_at, &finding.updated_at]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(parse_timestamp_millis))
        .unwrap_or(now_millis)
        .min(now_millis);
    let hour = observed.div_euclid(3_600_000) * 3600;
    hour - lookback_hours * 3600
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::EventKind;
    use crate::core::outcome::FindingOutcome;
    use crate::core::select::policy::may_investigate;
    use crate::core::select::test_support::{NOW, candidate, finding, guardduty, imported, plan};
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn findings_of_one_actor_with_overlapping_windows_join_one_job() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let bob = "arn:aws:iam::111122223333:user/bob";
        let c = vec![
            imported(0, guardduty("a1", alice, "2026-01-03T01:10:00Z", "2026-01-03T02:00:00Z", "HIGH")),
            imported(1, guardduty("a2", alice, "2026-01-03T09:40:00Z", "2026-01-03T10:00:00Z", "MEDIUM")),
            imported(2, guardduty("a3", alice, "2026-01-04T03:00:00Z", "2026-01-04T04:00:00Z", "CRITICAL")),
            imported(3, guardduty("b1", bob, "2026-01-03T01:10:00Z", "2026-01-03T02:00:00Z", "HIGH")),
        ];
        let selection = plan(&c);
        assert_eq!(selection.findings_selected, 4);
        let jobs: Vec<(&str, usize, u8)> =
            selection.jobs.iter().map(|(r, _)| (r.entity_arn.as_str(), r.findings.len(), r.priority)).collect();
        assert_eq!(jobs, vec![(alice, 3, 4), (bob, 1, 3)], "three hours apart and a day later: one job for alice");
        assert_eq!(selection.findings_joined, 2);
        let (alice_job, _) = &selection.jobs[0];
        assert_eq!(alice_job.scope_start, 1_767_312_000, "the lookback before the first finding, by UTC day");
    }

    #[test]
    fn windows_that_do_not_overlap_or_outgrow_the_scope_limit_stay_apart() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let c = vec![
            imported(0, guardduty("old", alice, "2025-11-01T00:00:00Z", "2025-11-01T01:00:00Z", "HIGH")),
            imported(1, guardduty("new", alice, "2026-01-04T00:00:00Z", "2026-01-04T01:00:00Z", "HIGH")),
        ];
        let selection = plan(&c);
        assert_eq!(selection.jobs.len(), 2);
        assert_eq!(selection.findings_joined, 0);
        let long = vec![
            imported(0, guardduty("long", alice, "2025-11-01T00:00:00Z", "2026-01-04T00:00:00Z", "HIGH")),
            imported(1, guardduty("late", alice, "2026-01-03T00:00:00Z", "2026-01-04T01:00:00Z", "HIGH")),
        ];
        assert_eq!(plan(&long).jobs.len(), 2, "a joined window would exceed {MAX_SCOPE_SECONDS} s");
    }

    /// The copies of one finding a batch can carry: the Imported event, its redelivery, an
    /// automation rule's `investigate=true` update, and the custom action.
    fn copies() -> Vec<Candidate> {
        let role = "arn:aws:iam::111122223333:role/app";
        let inspector = |id: &str, updated: &str, fields: serde_json::Value| {
            finding(
                json!([{"Type": "AwsIamRole", "Id": role}]),
                json!({"Id": id, "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/inspector",
                       "FirstObservedAt": "2026-01-04T00:00:00Z", "UpdatedAt": updated, "UserDefinedFields": fields}),
            )
        };
        let action = EventKind::CustomAction { action_name: "investigate".into() };
        vec![
            candidate(0, inspector("x", "2026-01-04T01:00:00Z", json!({})), EventKind::Imported),
            candidate(1, inspector("x", "2026-01-04T01:00:00Z", json!({})), EventKind::Imported),
            candidate(2, inspector("x", "2026-01-04T01:00:00Z", json!({})), action.clone()),
            candidate(3, inspector("y", "2026-01-04T01:00:00Z", json!({})), EventKind::Imported),
            candidate(4, inspector("y", "2026-01-04T02:00:00Z", json!({"investigate": "true"})), EventKind::Imported),
            candidate(5, inspector("y", "2026-01-04T02:00:00Z", json!({"investigate": "true"})), EventKind::Imported),
            candidate(6, inspector("z", "2026-01-04T01:00:00Z", json!({"findingEnriched": "True"})), action),
            candidate(
                7,
                inspector("z", "2026-01-04T01:00:00Z", json!({"findingEnriched": "True"})),
                EventKind::Imported,
            ),
        ]
    }

    /// The jobs a batch asks for, as the handler computes them (triage, then the kept and the
    /// still-investigable skipped findings), without the batch positions.
    fn jobs_of(batch: &[Candidate]) -> (Vec<JobRequest>, usize, BTreeSet<String>) {
        let triage = crate::core::plan::triage(batch);
        let mut eligible = triage.kept.clone();
        eligible.extend(
            triage
                .skipped
                .iter()
                .filter(|(_, r)| may_investigate(&FindingOutcome::Skipped(r.clone())))
                .map(|(i, _)| *i),
        );
        let kept: BTreeSet<String> = triage.kept.iter().map(|&i| batch[i].finding.id.clone()).collect();
        let selection = plan_jobs(batch, &eligible, &triage.asks, &Criteria::default(), 24, NOW);
        (selection.jobs.into_iter().map(|(r, _)| r).collect(), selection.explicit, kept)
    }

    #[test]
    fn explicit_requests_survive_dedup() {
        let (jobs, explicit, kept) = jobs_of(&copies());
        assert_eq!(jobs.len(), 1);
        let ids: Vec<&str> = jobs[0].findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["x", "y", "z"]);
        assert_eq!(explicit, 3, "inspector findings are investigated only because someone asked");
        assert!(kept.contains("z"), "the custom action re-enriches an already enriched finding");
    }

    proptest::proptest! {
        #[test]
        fn any_interleaving_of_copies_and_duplicates_gives_the_same_jobs(
            order in Just((0..8).collect::<Vec<usize>>()).prop_shuffle(),
            extra in proptest::collection::vec(0usize..8, 0..6),
        ) {
            let all = copies();
            let batch: Vec<Candidate> = order
                .iter()
                .chain(extra.iter())
                .enumerate()
                .map(|(record, &i)| Candidate { record, ..all[i].clone() })
                .collect();
            proptest::prop_assert_eq!(jobs_of(&batch), jobs_of(&all));
        }
    }
}
